"""The pretrained path as a user runs it: train → model folder → `genneg run --base` → sample any stage."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["--preset", "tiny", "--quiet"]
ROUNDS = ["--set", "eval.num_samples=400", "--set", "eval.num_nll=100", "--set", "genneg.samples_per_round=1000",
          "--set", "genneg.distil_samples=600", "--set", "distil.steps=60", "--set", "classifier.steps=150",
          "--set", 'genneg.baselines=["rejection"]']


def genneg(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "genneg", *args], capture_output=True, text=True, env=ENV,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"genneg {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def refused(proc, *words):
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


def test_train_card_run_from_it_and_sample_every_stage(tmp_path):
    train, model, run = tmp_path / "train", tmp_path / "pretrained" / "toy-tiny", tmp_path / "run"
    genneg("train", "toy", *TINY, "--set", "base.steps=100", "--eval-every", "50", "--threads", "1",
           "--run-dir", str(train))
    genneg("export-model", "--run-dir", str(train), "--out", str(model))
    card = json.loads((model / "card.json").read_text())
    assert card["metrics"]["step"] == 100 and (model / "curve.png").stat().st_size > 0

    out = genneg("run", "toy", *TINY, *ROUNDS, "--base", str(model), "--run-dir", str(run)).stdout
    assert "report:" in out
    state = json.loads((run / "seed0" / "state.json").read_text())
    assert not (run / "seed0" / "base.state.pt").exists()  # the base was not trained here
    assert state["stages"]["base"]["pretrained"] == str(model)
    assert (run / "seed0" / "base.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
    assert state["stages"]["round2"]["metrics"]["infraction"] != state["stages"]["base"]["metrics"]["infraction"]

    # a stacked round loads as the run evaluated it: `genneg eval` reproduces its recorded metrics
    genneg("eval", "--run-dir", str(run), "--stage", "round2", "--out", str(tmp_path / "round2.json"), "--quiet")
    assert json.loads((tmp_path / "round2.json").read_text())["infraction"] == \
        state["stages"]["round2"]["metrics"]["infraction"]
    for stage in ("round2", "distilled"):
        genneg("sample", "--run-dir", str(run), "--stage", stage, "--n", "50", "--out", str(tmp_path / f"{stage}.npz"),
               "--quiet")
        assert np.load(tmp_path / f"{stage}.npz")["samples"].shape == (50, 2)

    # the pretrained folder itself samples, reproducibly by --seed, and is never written to
    files = sorted(p.name for p in model.iterdir())
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        genneg("sample", "--run-dir", str(model), "--n", "60", "--seed", seed, "--out", str(tmp_path / f"{name}.npz"),
               "--quiet")
    a, b, c = (np.load(tmp_path / f"{n}.npz")["samples"] for n in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    genneg("eval", "--run-dir", str(model), "--out", str(tmp_path / "base.json"), "--quiet")
    assert json.loads((tmp_path / "base.json").read_text())["infraction"] == card["metrics"]["infraction"]
    assert sorted(p.name for p in model.iterdir()) == files

    # refused: another architecture, corrupted weights, a stage a pretrained folder does not have
    refused(genneg("run", "toy", *TINY, "--set", "net.width=32", "--base", str(model), "--run-dir",
                   str(tmp_path / "other"), check=False), "architecture.net", "genneg train toy --preset tiny")
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    raw = bytearray((bad / "model.safetensors").read_bytes())
    raw[-1] ^= 0x01
    (bad / "model.safetensors").write_bytes(bytes(raw))
    refused(genneg("sample", "--run-dir", str(bad), "--n", "5", "--out", str(tmp_path / "x.npz"), check=False),
            "sha256", "corrupted")
    refused(genneg("sample", "--run-dir", str(model), "--stage", "round1", "--n", "5", "--out",
                   str(tmp_path / "x.npz"), check=False), "only stage is 'base'")
    refused(genneg("sample", "--run-dir", str(run), "--stage", "round3", "--n", "5", "--out",
                   str(tmp_path / "x.npz"), check=False), "unknown stage 'round3'", "round2")

    # the run's distilled student as a model folder: its card holds the run's rows of the base and of the student
    student = tmp_path / "pretrained" / "toy-tiny-genneg"
    genneg("export-model", "--run-dir", str(run), "--stage", "distilled", "--out", str(student))
    card = json.loads((student / "card.json").read_text())
    assert sorted(p.name for p in student.iterdir()) == ["card.json", "card.md", "figures", "model.safetensors",
                                                         "report.md", "results.json"]
    assert card["stage"] == "distilled" and card["from"]["base"] == str(model)
    assert card["from"]["base_sha256"] == json.loads((model / "card.json").read_text())["weights"]["sha256"]
    assert card["metrics"]["infraction"] == state["stages"]["distilled"]["metrics"]["infraction"]
    assert card["metrics"]["base"]["infraction"] == state["stages"]["base"]["metrics"]["infraction"]
    assert [r["stage"] for r in card["genneg"]["rounds"]] == ["round1", "round2"]
    assert card["training"]["machine"] and "(at export)" not in card["training"]["code_commit"][0]
    assert card["reproduce"].startswith("genneg run toy --preset tiny --set ") and f"--base {model}" in \
        card["reproduce"] and card["reproduce"].endswith(f"--stage distilled --out pretrained/{student.name}")
    assert "| invalid (any reason) |" in (student / "card.md").read_text()
    # it samples as its own stage, what the run's distilled stage samples
    genneg("sample", "--run-dir", str(student), "--n", "40", "--seed", "3", "--out", str(tmp_path / "s1.npz"),
           "--quiet")
    genneg("sample", "--run-dir", str(run), "--stage", "distilled", "--n", "40", "--seed", "3", "--out",
           str(tmp_path / "s2.npz"), "--quiet")
    assert np.array_equal(np.load(tmp_path / "s1.npz")["samples"], np.load(tmp_path / "s2.npz")["samples"])
    # exported with another sampler: both columns measured with it, on the run's conditions and noise
    churn = tmp_path / "pretrained" / "toy-tiny-genneg-churn"
    genneg("export-model", "--run-dir", str(run), "--stage", "distilled", "--out", str(churn), "--sampler",
           "stochastic:6")
    card2 = json.loads((churn / "card.json").read_text())
    assert card2["metrics"]["run"]["infraction"] == card["metrics"]["infraction"]
    assert card2["metrics"]["run"]["base"]["infraction"] == card["metrics"]["base"]["infraction"]
    assert card2["metrics"]["nll"] == card["metrics"]["nll"] and card2["config"]["sampler"]["steps"] == 6
    genneg("eval", "--run-dir", str(churn), "--out", str(tmp_path / "d.json"), "--quiet")
    genneg("eval", "--run-dir", str(run), "--stage", "base", "--sampler", "stochastic:6", "--out",
           str(tmp_path / "b.json"), "--quiet")
    assert json.loads((tmp_path / "d.json").read_text())["infraction"] == card2["metrics"]["infraction"]
    assert json.loads((tmp_path / "b.json").read_text())["infraction"] == card2["metrics"]["base"]["infraction"]
    assert "With the run's sampler" in (churn / "card.md").read_text()
    refused(genneg("sample", "--run-dir", str(student), "--stage", "base", "--n", "5", "--out",
                   str(tmp_path / "x.npz"), check=False), "only stage is 'distilled'")
    refused(genneg("export-model", "--run-dir", str(run), "--stage", "distilled", "--out", str(student),
                   check=False), "already exists", "--force")
    refused(genneg("export-model", "--run-dir", str(train), "--stage", "distilled", "--out",
                   str(tmp_path / "nope"), check=False), "has not finished its 'distilled' stage")
