"""Interrupted work: real `genneg` processes killed with SIGKILL at many points, then resumed.

Each test kills a subprocess (its whole process group, as a job scheduler or the OOM killer would) when a given file
appears or after a seeded random delay, resumes it, and checks that

- the resumed results equal an uninterrupted run's bit for bit (weights, drawn and labelled samples, evaluation
  samples, every metric except wall times);
- nothing past the last checkpoint is redone: finished stages keep their files untouched, cached samples are not
  redrawn, and a train state checkpointed at step s resumes after s;
- every file under its final name is whole after a kill, and no temporary file survives the resumed run.

The toy domain with the ``tiny`` preset, shrunk further, keeps a whole run at about 15 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from genneg.checkpoint import load_state, load_weights
from reliability_helpers import finish, start, toy_command

# Kill points of one run, in pipeline order: (what is running when the file appears, the file).
FILE_KILL_POINTS = [
    ("base training, after its first checkpoint", "base.state.pt"),
    ("base evaluation", "base.safetensors"),
    ("round 1 sampling", "samples_base.npz"),
    ("round 1 labelling / classifier training", "labelled_round1.safetensors"),
    ("round 1 classifier training, after a checkpoint", "classifier1.state.pt"),
    ("round 1 evaluation", "classifier1.safetensors"),
    ("distillation, after the teacher samples", "distilled.teacher_samples.safetensors"),
    ("distillation training, after a checkpoint", "distilled.state.pt"),
    ("discriminator baseline, after its model samples", "drawn_discriminator.safetensors"),
]
RANDOM_KILLS = 3  # kills after seeded random delays, each in a fresh resumed process
RANDOM_SEED = 8
TIMING_KEYS = {"seconds", "seconds_per_1000", "valid_per_second"}
# train state file -> the progress-bar name its steps are logged under in stats.jsonl
STATE_STAGE = {"base": "base", "classifier1": "round 1", "classifier2": "round 2", "distilled": "distil",
               "no_is": "no_is", "discriminator": "discriminator"}
# a stage recorded in state.json -> the files it finished (which a resumed run must leave untouched)
STAGE_FILES = {"base": ["base.safetensors", "samples_base.npz"],
               "round1": ["classifier1.safetensors", "labelled_round1.safetensors", "samples_round1.npz"],
               "round2": ["classifier2.safetensors", "labelled_round2.safetensors", "samples_round2.npz"],
               "distilled": ["distilled.safetensors", "distilled.teacher_samples.safetensors", "samples_distilled.npz"],
               "no_is": ["no_is.safetensors", "samples_no_is.npz"],
               "discriminator": ["discriminator.safetensors", "drawn_discriminator.safetensors"]}


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the process and any workers it spawned
    proc.wait()


class Snapshot:
    """What a killed run left behind: files (with their modification times), finished stages, train-state steps."""

    def __init__(self, seed_dir: Path, run_dir: Path):
        self.files = {p.name: p.stat().st_mtime_ns for p in seed_dir.iterdir()} if seed_dir.is_dir() else {}
        state = seed_dir / "state.json"
        self.stages = json.loads(state.read_text())["stages"] if state.is_file() else {}
        self.steps = {p.name.removesuffix(".state.pt"): int(load_state(p)["step"]) for p in seed_dir.glob("*.state.pt")}
        stats = run_dir / "stats.jsonl"
        self.stats_offset = stats.stat().st_size if stats.is_file() else 0
        self.labelled = {n for n in self.files
                         if n.startswith("labelled_") and "valid" in load_weights(seed_dir / n)[0]}


def _check_nothing_redone(before: Snapshot, seed_dir: Path, run_dir: Path) -> None:
    """The process that ran after ``before`` redid no checkpointed work."""
    if not seed_dir.is_dir():
        return
    after = {p.name: p.stat().st_mtime_ns for p in seed_dir.iterdir()}
    for stage, record in before.stages.items():
        now = json.loads((seed_dir / "state.json").read_text())["stages"][stage]
        assert now == record, f"finished stage {stage!r} was redone"
        for name in STAGE_FILES.get(stage, []):
            assert after.get(name) == before.files[name], f"{name} of finished stage {stage!r} was rewritten"
    kept = [n for n in before.files
            if n.startswith(("drawn_", "labelled_")) or n.endswith(".teacher_samples.safetensors")]
    for name in kept:
        if not name.startswith("labelled_") or name in before.labelled:
            assert after[name] == before.files[name], f"cached samples {name} were drawn again"
    stats = run_dir / "stats.jsonl"
    lines = stats.read_bytes()[before.stats_offset:].decode().splitlines() if stats.is_file() else []
    logged = [json.loads(line) for line in lines if line.strip()]
    for name, step in before.steps.items():
        redone = [r["step"] for r in logged
                  if r.get("stage") == STATE_STAGE.get(name) and "step" in r and r["step"] <= step]
        assert not redone, f"{name} was checkpointed at step {step} but steps {redone[:3]} were trained again"


def _check_whole(seed_dir: Path) -> None:
    """After a kill: every file under its final name is complete (a write is a temporary file, then a rename)."""
    for p in seed_dir.glob("*"):
        if p.name.startswith(".") or ".tmp" in p.name:
            continue  # a stray temporary of a write the kill interrupted; the next write of its target removes it
        if p.suffix == ".safetensors":
            load_weights(p)
        elif p.suffix == ".pt":
            load_state(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".npz":
            with np.load(p) as z:
                [z[k] for k in z.files]


def _check_no_strays(run_dir: Path) -> None:
    strays = [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert not strays, f"temporary files survived the resumed run: {strays}"


def _strip_timings(obj):
    if isinstance(obj, dict):
        return {k: _strip_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip_timings(v) for v in obj]
    return obj


def assert_same_results(reference: Path, resumed: Path) -> None:
    names = sorted(p.name for p in reference.iterdir() if p.suffix in (".safetensors", ".npz"))
    assert names == sorted(p.name for p in resumed.iterdir() if p.suffix in (".safetensors", ".npz"))
    for name in names:
        if name.endswith(".safetensors"):
            (a, meta_a), (b, meta_b) = load_weights(reference / name), load_weights(resumed / name)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{name} differs"
            assert _strip_timings(meta_a) == _strip_timings(meta_b), f"{name}: metadata differs"
        else:
            with np.load(reference / name) as a, np.load(resumed / name) as b:
                assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), f"{name} differs"
    for name in ("base", "classifier1", "classifier2", "distilled", "no_is", "discriminator"):
        a, b = load_state(reference / f"{name}.state.pt"), load_state(resumed / f"{name}.state.pt")
        assert a["step"] == b["step"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    state_a = json.loads((reference / "state.json").read_text())["stages"]
    state_b = json.loads((resumed / "state.json").read_text())["stages"]
    assert _strip_timings(state_a) == _strip_timings(state_b)


def _run_until(run: Path, resume: bool, name: str, what: str) -> None:
    """Starts (or resumes) the run and kills it as soon as ``name`` appears in the seed folder."""
    path = run / "seed0" / name
    assert not path.exists(), f"kill point {what!r} ({name}) was passed before this process started"
    proc = start(toy_command(run, resume))
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {name} appeared ({what}):\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() - t0 < 300, f"{name} did not appear"
        time.sleep(0.005)
    _kill(proc)
    assert not (run / "report.md").exists(), f"killed too late at {what!r}"


def test_killed_at_every_stage_resumes_to_the_same_results(toy_reference, tmp_path):
    """One run killed at each of FILE_KILL_POINTS in turn: every resumed process is killed at the next point."""
    run, seed_dir = tmp_path / "run", tmp_path / "run" / "seed0"
    before = None
    for i, (what, name) in enumerate(FILE_KILL_POINTS):
        _run_until(run, i > 0, name, what)
        if before is not None:
            _check_nothing_redone(before, seed_dir, run)
        _check_whole(seed_dir)
        before = Snapshot(seed_dir, run)
    finish(start(toy_command(run, resume=True)))
    _check_nothing_redone(before, seed_dir, run)
    _check_no_strays(run)
    assert_same_results(toy_reference, seed_dir)


def test_killed_after_random_delays_resumes_to_the_same_results(toy_reference, tmp_path):
    """Kills after seeded random delays of 30 to 50 % of an uninterrupted run's wall time, so the delays follow the
    machine's speed: every process gets past start-up and some work done, and the first two kills always land before
    the run can end (each resumed process does at most half of the work again). The wall time is measured here, just
    before the kills: a machine shared with other tests (pytest-xdist workers) runs at another speed than when the
    session's reference ran."""
    run, seed_dir = tmp_path / "run", tmp_path / "run" / "seed0"
    t0 = time.monotonic()
    finish(start(toy_command(tmp_path / "paced", resume=False)))
    wall = time.monotonic() - t0
    rng = random.Random(RANDOM_SEED)
    before, kills = None, 0
    for i in range(RANDOM_KILLS):
        proc = start(toy_command(run, i > 0))
        time.sleep(rng.uniform(0.3, 0.5) * wall)
        if proc.poll() is not None:
            finish(proc)  # finished before the delay ran out: fine, nothing left to kill
            break
        _kill(proc)
        kills += 1
        if before is not None:
            _check_nothing_redone(before, seed_dir, run)
        _check_whole(seed_dir)
        before = Snapshot(seed_dir, run)
    else:
        finish(start(toy_command(run, resume=True)))
    assert kills >= 2, f"only {kills} of the random kills hit a running process"
    if before is not None:
        _check_nothing_redone(before, seed_dir, run)
    _check_no_strays(run)
    assert_same_results(toy_reference, seed_dir)
