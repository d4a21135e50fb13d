"""The `genneg` command as a user runs it: help, clear errors, killed-and-resumed training and runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genneg.checkpoint import load_state, load_weights

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["--preset", "tiny", "--quiet"]


def genneg(*args, check=True, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "genneg", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"genneg {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_shows_runnable_examples():
    out = genneg("--help").stdout
    assert "genneg run toy --preset default --seeds 3" in out and "--resume" in out
    assert "examples:" in genneg("train", "--help").stdout


@pytest.mark.parametrize("args, msg", [
    (["train", "toy", "--preset", "nope", "--run-dir", "x"], "unknown preset 'nope'"),
    (["train", "nope", "--run-dir", "x"], "unknown domain 'nope'"),
    (["train", "toy", "--preset", "tiny", "--set", "base.nope=1", "--run-dir", "x"], "unknown config field"),
    (["train", "toy", "--preset", "tiny", "--set", "base.steps=0", "--run-dir", "x"], "steps must be >= 1"),
    (["eval", "--run-dir", "does/not/exist"], "no config.json"),
    (["eval", "--run-dir", "does/not/exist", "--sampler", "euler:8"], "--sampler: reads KIND[:STEPS]"),
    (["sample", "--run-dir", "x", "--out", "x.npz", "--sampler", "heun:0"], "--sampler: reads KIND[:STEPS]"),
])
def test_bad_input_gets_a_clear_error(tmp_path, args, msg):
    proc = genneg(*args, check=False)
    assert proc.returncode != 0
    assert msg in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def _kill_when(path: Path, proc: subprocess.Popen, timeout: float = 300):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"process ended before {path.name} appeared:\n{proc.stderr.read()}"
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_training_resumes_bit_for_bit(tmp_path):
    args = ["train", "toy", *TINY, "--set", "base.steps=240", "--set", "base.checkpoint_every=60", "--eval-every", "30",
            "--set", "eval.num_samples=200", "--set", "eval.num_nll=50"]
    genneg(*args, "--run-dir", str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "genneg", *args, "--run-dir", str(killed)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(killed / "base.state.pt", proc)
    assert not (killed / "base.safetensors").exists(), "killed too late: training had already finished"
    # a kill may land mid-write and leave a temporary behind; what matters is that the named checkpoint is whole
    load_state(killed / "base.state.pt")
    genneg(*args, "--run-dir", str(killed), "--resume")
    a, _ = load_weights(tmp_path / "straight" / "base.safetensors")
    b, _ = load_weights(killed / "base.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the learning curve survives the kill: one point per step, each equal to the uninterrupted run's
    timing = ("wall_seconds", "seconds_per_1000", "valid_per_second")
    curves = [[{k: v for k, v in p.items() if k not in timing}
               for p in json.loads((d / "curve.json").read_text())["points"]]
              for d in (tmp_path / "straight", killed)]
    assert [p["step"] for p in curves[1]] == list(range(30, 241, 30)) and curves[0] == curves[1]
    sessions = json.loads((killed / "train.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["last_step"] == 240


def test_train_sample_eval(tmp_path):
    run = tmp_path / "run"
    genneg("train", "toy", *TINY, "--set", "base.steps=100", "--run-dir", str(run))
    out = genneg("eval", "--run-dir", str(run), "--quiet").stdout
    assert "infraction" in out and "NLL bound" in out and "white_cell" in out
    metrics = json.loads((run / "eval_base.json").read_text())
    assert 0 <= metrics["infraction"]["total"]["rate"] <= 1 and metrics["nll"]["se"] > 0
    assert metrics["split"] == "test"
    out = genneg("eval", "--run-dir", str(run), "--split", "train", "--quiet").stdout  # the generalisation gap
    assert "(train, heun" in out
    train = json.loads((run / "eval_base_train.json").read_text())
    assert train["split"] == "train" and train["nll"]["mean"] != metrics["nll"]["mean"]  # other held-out points
    # another sampler: its own file, the same conditions and NLL points (the bound does not depend on the sampler)
    out = genneg("eval", "--run-dir", str(run), "--sampler", "stochastic:6", "--quiet").stdout
    assert "(test, stochastic6)" in out
    churned = json.loads((run / "eval_base_stochastic6.json").read_text())
    assert churned["sampler"] == {"kind": "stochastic", "steps": 6} and metrics["sampler"]["kind"] == "heun"
    assert churned["nll"] == metrics["nll"]
    genneg("sample", "--run-dir", str(run), "--n", "50", "--out", str(tmp_path / "s.npz"), "--quiet")
    import numpy as np

    z = np.load(tmp_path / "s.npz")
    assert z["samples"].shape == (50, 2) and z["valid"].dtype == bool
    genneg("sample", "--run-dir", str(run), "--n", "50", "--out", str(tmp_path / "c.npz"), "--sampler", "stochastic",
           "--quiet")
    churned = np.load(tmp_path / "c.npz")["samples"]  # the same initial noise, then churn: other samples
    assert churned.shape == (50, 2) and np.isfinite(churned).all() and not np.allclose(churned, z["samples"])
    assert any(json.loads(line)["stage"] == "base" for line in (run / "stats.jsonl").read_text().splitlines())
    proc = genneg("train", "toy", *TINY, "--run-dir", str(run), check=False)
    assert proc.returncode != 0 and "--resume" in proc.stderr  # nothing a user made is overwritten


def test_interrupted_run_resumes_at_the_stage_where_it_stopped(tmp_path):
    small = ["--set", "eval.num_samples=400", "--set", "eval.num_nll=100", "--set", "genneg.samples_per_round=600",
             "--set", "genneg.distil_samples=600", "--set", "distil.steps=60", "--set", "classifier.steps=60",
             "--set", "base.steps=150"]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "genneg", "run", "toy", *TINY, *small, "--run-dir", str(run)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(run / "seed0" / "classifier1.safetensors", proc)
    state = json.loads((run / "seed0" / "state.json").read_text())
    assert "base" in state["stages"] and "distilled" not in state["stages"]
    base_seconds = state["stages"]["base"]["seconds"]
    out = genneg("run", "toy", *TINY, *small, "--run-dir", str(run), "--resume").stdout
    assert "report:" in out
    state = json.loads((run / "seed0" / "state.json").read_text())
    assert state["stages"]["base"]["seconds"] == base_seconds  # finished stages are not redone
    results = json.loads((run / "results.json").read_text())
    rows = results["aggregate"]["rows"]
    for stage in ["base", "round1", "round2", "distilled", "rejection", "no_is", "time_independent",
                  "discriminator", "penalty"]:
        assert stage in rows, stage
    assert (run / "report.md").exists() and (run / "figures" / "samples.png").exists()
    assert (run / "figures" / "infraction_vs_nll.png").exists()


def test_seeds_run_in_parallel_workers(tmp_path):
    small = ["--set", "eval.num_samples=300", "--set", "eval.num_nll=50", "--set", "genneg.samples_per_round=400",
             "--set", "genneg.distil_samples=300", "--set", "distil.steps=30", "--set", "classifier.steps=30",
             "--set", "base.steps=60", "--set", 'genneg.baselines=["rejection"]']
    run = tmp_path / "run"
    genneg("run", "toy", *TINY, *small, "--seeds", "2", "--workers", "2", "--run-dir", str(run))
    results = json.loads((run / "results.json").read_text())
    assert sorted(results["per_seed"]) == ["0", "1"]
    assert results["aggregate"]["rows"]["base"]["seeds"] == 2
    assert results["per_seed"]["0"]["base"]["metrics"] != results["per_seed"]["1"]["base"]["metrics"]
