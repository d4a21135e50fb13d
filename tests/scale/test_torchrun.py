"""`torchrun --nproc_per_node 2 -m genneg ...` on 2 CPU processes (gloo): DDP training with rank-0 files and logs that
resumes each rank's stream, and sampling split across ranks that gives the very samples of a single process.
(Three torchrun launches; the per-rank pieces are unit-tested in test_devices.py.)"""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from genneg.checkpoint import load_state, load_weights

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
_BIN = Path(sys.executable).parent / "torchrun"  # the console script; the same entry point as the module below
TORCHRUN = [*([str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "torch.distributed.run"]),
            "--standalone", "--nproc_per_node", "2", "-m", "genneg"]
TRAIN = ["train", "toy", "--preset", "tiny", "--device", "cpu", "--quiet", "--set", "base.lr_decay=\"constant\"",
         "--set", "base.batch_size=64", "--set", "base.checkpoint_every=0"]


def launch(*args, torchrun=True):
    proc = subprocess.run([*(TORCHRUN if torchrun else [sys.executable, "-m", "genneg"]), *args], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """20 steps on 2 ranks, then continued to 40 with --resume (two torchrun launches)."""
    run = tmp_path_factory.mktemp("ddp") / "run"
    first = launch(*TRAIN, "--set", "base.steps=20", "--run-dir", str(run))
    at20 = load_state(run / "base.state.pt")
    cfg = json.loads((run / "config.json").read_text())
    cfg["base"]["steps"] = 40  # a resumed run reads its config.json: continue the finished 20 steps to 40
    (run / "config.json").write_text(json.dumps(cfg))
    launch(*TRAIN, "--run-dir", str(run), "--resume")
    return run, first, at20


def test_ddp_training_has_one_writer_and_resumes_each_ranks_stream(ddp_run):
    run, first, at20 = ddp_run
    assert first.count("wrote") == 1, "every rank printed: logs must come from rank 0 only"
    assert at20["world_size"] == 2 and len(at20["rank_rng"]) == 2  # every rank's generator is checkpointed
    assert not torch.equal(at20["rank_rng"][0], at20["rank_rng"][1]), "the ranks drew the same batches"
    at40 = load_state(run / "base.state.pt")
    assert at40["step"] == 40 and not torch.equal(at40["rank_rng"][0], at20["rank_rng"][0])
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["stage"] == "base"]
    curve = [r["step"] for r in records if r["stage"] == "base_curve"]  # the held-out learning curve's points
    assert steps == [20, 40] and curve == [20, 40], "stats.jsonl must have one writer (rank 0)"
    weights, _ = load_weights(run / "base.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not list(run.glob(".*.tmp"))


def test_sampling_split_across_ranks_equals_one_process(ddp_run, tmp_path):
    """Rank r draws batches r, r + 2, ...; rank 0 gathers and writes: the very samples one process writes."""
    from genneg.generate import sample_to_disk
    from genneg.stages import load_stage

    run, _, _ = ddp_run
    out = launch("sample", "--run-dir", str(run), "--num-samples", "700", "--batch-size", "128", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path / "two.npz"))
    assert out.count("wrote 700 samples") == 1
    cfg, domain, denoiser, _ = load_stage(run, "base")
    sampler = replace(cfg.sampler, batch_size=128)
    sample_to_disk(denoiser, domain, 700, sampler, tmp_path / "one.npz", oracle=domain.oracle(), seed=0)
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert sorted(two.files) == sorted(one.files) and two["samples"].shape == (700, 2)
    assert all(np.array_equal(two[k], one[k]) for k in one.files)
