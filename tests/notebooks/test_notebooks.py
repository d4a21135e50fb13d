"""The notebooks: committed without outputs, in step with notebooks/build_notebooks.py, and executed end to end.

Each notebook runs in a fresh kernel of this interpreter (kernel name ``python3``, pinned to ``sys.executable``
through a temporary kernelspec) with ``GENNEG_NOTEBOOK_FAST=1``, which switches it to tiny settings. The time each
takes is printed in the session summary.
"""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
PICTURES = {"01_toy_walkthrough.ipynb": 5, "02_traffic_scenes.ipynb": 2, "03_motion.ipynb": 3,  # at least, each
            "04_your_own_oracle.ipynb": 1}
EXPECTED = sorted(PICTURES)


def test_the_four_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {cell.id} has outputs"
        assert "execution" not in cell.metadata, f"{path.name}: cell {cell.id} carries execution timing"


def test_notebooks_match_their_generator():
    spec = importlib.util.spec_from_file_location("build_notebooks", FOLDER / "build_notebooks.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert sorted(build.NOTEBOOKS) == EXPECTED
    for name, cells in build.NOTEBOOKS.items():
        built, committed = build.build(cells), nbformat.read(FOLDER / name, as_version=4)
        assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells], (
            f"{name} differs from notebooks/build_notebooks.py: run `python notebooks/build_notebooks.py`")


@pytest.fixture
def kernel_env(tmp_path, genneg_cache, monkeypatch):
    """A ``python3`` kernelspec that runs this interpreter, first on JUPYTER_PATH; fast mode; one thread."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "genneg tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("GENNEG_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("GENNEG_CACHE", str(genneg_cache))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))  # the notebooks' run folders (tempfile.mkdtemp) land here
    return work


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path, kernel_env, record_property):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(kernel_env)}})
    start = time.perf_counter()
    client.execute()
    record_property("notebook_seconds", (path.name, time.perf_counter() - start))  # reaches the controller too
    executable = "".join(o.get("text", "") for o in nb.cells[-1].outputs).strip()
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)
    images = sum("image/png" in o.get("data", {}) or "image/gif" in o.get("data", {})
                 for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= PICTURES[path.name], f"{path.name} showed {images} pictures, expected {PICTURES[path.name]}"
