"""benchmarks/gpu_check.py runs on the CPU in its tiny setting, so it is ready when a GPU is at hand."""

import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_every_loop_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = _load().main(["--device", "cpu", "--tiny", "--steps", "12", "--samples", "256", "--domains", "toy",
                           "--skip-tests", "--out", str(out)])
    parts = [r["part"] for r in result["rows"]]
    assert parts == ["base training", "sampling (base)", "round 1 (sample, label, classifier)", "distillation"]
    assert all(r["rate"] > 0 and math.isfinite(r["rate"]) for r in result["rows"])
    assert json.loads(out.read_text())["device"] == "cpu"


def test_gpu_check_skips_what_would_start_after_its_budget(tmp_path):
    result = _load().main(["--device", "cpu", "--tiny", "--steps", "5", "--samples", "64", "--domains", "toy",
                           "--skip-tests", "--budget", "0", "--out", str(tmp_path / "g.json")])
    assert [r.get("skipped") for r in result["rows"]] == ["time budget spent"]
