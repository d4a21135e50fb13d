"""Interrupted data generation: SUMO scene generation killed (SIGKILL, whole process group) after its first network
is done, then run again, gives the same data as an uninterrupted run and does not simulate the finished network
again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sumo")
pytest.importorskip("libsumo")

from genneg.domains.traffic.data.store import load_scenes  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SCRIPT = """
import sys
from genneg.domains.traffic.data import generate_scenes, sumo_preset

if __name__ == "__main__":
    generate_scenes(sys.argv[1], sumo_preset("tiny", snapshots=4, workers=2))
"""
SPLITS = ("train", "val", "test")


def _generate(script: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(out)], env=ENV, cwd=Path(__file__).parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def test_killed_scene_generation_resumes_network_by_network(tmp_path):
    script = tmp_path / "generate.py"
    script.write_text(SCRIPT)
    _wait(_generate(script, tmp_path / "straight"))
    proc = _generate(script, tmp_path / "killed")
    t0 = time.monotonic()
    while not list((tmp_path / "killed").glob("sumo-*/networks/*.scenes.npz")):
        assert proc.poll() is None, f"generation ended before a network was done:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() - t0 < 300
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its SUMO workers
    proc.wait()
    (folder,) = (tmp_path / "killed").glob("sumo-*")
    assert not (folder / "manifest.json").exists(), "killed too late: the data set was complete"
    finished = {p: p.stat().st_mtime_ns for p in folder.glob("networks/*.scenes.npz")}
    finished_nets = {p.with_name(p.name.replace(".scenes.npz", ".net.xml")) for p in finished}
    net_times = {p: p.stat().st_mtime_ns for p in finished_nets}
    _wait(_generate(script, tmp_path / "killed"))
    for p, t in {**finished, **net_times}.items():
        assert p.stat().st_mtime_ns == t, f"{p.name} was generated again after the kill"
    (reference,) = (tmp_path / "straight").glob("sumo-*")
    assert reference.name == folder.name
    for split in SPLITS:
        a, b = load_scenes(reference, split), load_scenes(folder, split)
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), f"{split} scenes: {k} differs from the uninterrupted run"
    drop = lambda m: {k: v for k, v in m.items() if k not in ("seconds", "valid_scenes_per_second")}  # noqa: E731
    assert drop(json.loads((reference / "manifest.json").read_text())) == drop(
        json.loads((folder / "manifest.json").read_text()))
    assert not [p.name for p in folder.rglob("*") if ".tmp" in p.name]
