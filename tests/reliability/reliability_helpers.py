"""Shared by the reliability tests: the small toy run that kill tests interrupt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# `genneg run toy --preset tiny`, shrunk so that a whole run (every stage and baseline) takes ~15 s on 2 CPU cores
SMALL = [
    "--preset", "tiny", "--quiet",
    "--set", "base.steps=100", "--set", "base.checkpoint_every=50",
    "--set", "classifier.steps=40", "--set", "classifier.checkpoint_every=20",
    "--set", "distil.steps=40", "--set", "distil.checkpoint_every=20",
    "--set", "genneg.samples_per_round=500", "--set", "genneg.distil_samples=400",
    "--set", "eval.num_samples=200", "--set", "eval.num_nll=50",
    "--set", 'genneg.baselines=["rejection","no_is","discriminator","penalty"]',
]  # fmt: skip


def toy_command(run_dir: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "genneg", "run", "toy", *SMALL, "--run-dir", str(run_dir)] + (
        ["--resume"] if resume else [])


def start(cmd: list[str]) -> subprocess.Popen:
    """A subprocess in its own process group (so a kill reaches any workers it spawned)."""
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=Path(__file__).parents[2])


def finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"genneg failed (exit {proc.returncode}):\n{out[-2000:]}\n{err[-3000:]}"

