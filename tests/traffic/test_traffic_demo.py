"""`genneg demo traffic` on a tiny model folder: the test split only, one row per model on the same conditions and
noise, the SUMO hand-off, the figure grid and the report; bad model folders are refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("sumo")
pytest.importorskip("libsumo")

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = ["--preset", "tiny", "--set", "base.steps=20", "--set", "eval.num_samples=16", "--set", "eval.num_nll=8",
              "--eval-every", "0", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def tiny_model(tiny_data_dir, tmp_path_factory):
    """A tiny traffic base trained for 20 steps and written as a model folder (``genneg export-model``)."""
    from genneg.cli import main

    tmp = tmp_path_factory.mktemp("demo-model")
    (tmp / "cache").mkdir()
    (tmp / "cache" / "traffic").symlink_to(tiny_data_dir)  # $GENNEG_CACHE/traffic: the full tiny data
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENNEG_CACHE", str(tmp / "cache"))
        assert main(["train", "traffic", *TINY_TRAIN, "--run-dir", str(tmp / "run")]) == 0
        assert main(["export-model", "--run-dir", str(tmp / "run"), "--out", str(tmp / "traffic-tiny")]) == 0
    return tmp / "traffic-tiny"


@pytest.fixture
def test_cache(tiny_data_dir, tmp_path):
    """A traffic cache root holding nothing but the test network's scene file (no split marker yet): the demo must
    make the test split from it and never ask for the others."""
    (full,) = tiny_data_dir.glob("sumo-tiny-*")
    nets = tmp_path / "genneg" / "traffic" / full.name / "networks"
    nets.mkdir(parents=True)
    for p in full.glob("networks/test-*"):
        shutil.copy2(p, nets / p.name)
    return tmp_path / "genneg" / "traffic"


def _scene_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("*/networks/*.scenes.npz"))


def test_the_demo_writes_one_row_per_model_on_the_same_draw(tiny_model, test_cache, tmp_path):
    import matplotlib.image

    from genneg.domains.traffic.demo import DATA_LABEL, run_demo

    twin = tmp_path / "traffic-tiny-twin"  # the same weights under another label
    shutil.copytree(tiny_model, twin)
    lines = []
    report = run_demo([tiny_model, twin], tmp_path / "out", optional=[tmp_path / "traffic-tiny-genneg"],
                      num_samples=24, handoff=2, columns=2, seconds=2.0, workers=1, data_dir=test_cache,
                      progress=lines.append)
    assert report == tmp_path / "out" / "report.md"
    assert any("generating the SUMO scenes of the 1 held-out test networks" in ln for ln in lines)
    assert _scene_files(test_cache) == ["test-00-random.scenes.npz"]  # no train or val network was asked for
    record = json.loads((tmp_path / "out" / "demo.json").read_text())
    labels = [r["label"] for r in record["rows"]]
    assert labels == ["traffic-tiny", "traffic-tiny-twin", DATA_LABEL]
    assert record["split"] == "test" and record["networks"] == ["test-00-random"] and record["num_samples"] == 24
    assert record["absent"] == [str(tmp_path / "traffic-tiny-genneg")]
    a, b, data = record["rows"]
    assert a["infraction"]["n"] == 24 and a["infraction"]["total"]["count"] > 0  # a 20-step base infracts
    # the same weights on the same conditions and noise: the same scenes, so every number agrees (as JSON: the
    # bootstrap bounds of a one-network split are NaN)
    same = lambda key: json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True)  # noqa: E731
    assert same("infraction") and same("domain") and same("handoff") and a["domain"]["invalid_per_scene"]["value"] > 0
    assert data["infraction"]["total"]["count"] == 0 and data["domain"]["invalid_per_vehicle"]["value"] == 0
    for row in record["rows"]:
        h = row["handoff"]
        assert h["scenes"] == 2 and h["vehicles"] == data["handoff"]["vehicles"] >= 2 and not h["failed"]
        assert set(h["rates"]) == {"placed", "scenes_with_collision", "vehicles_in_collision", "teleported"}
    assert data["handoff"]["rates"]["placed"]["rate"] == 1.0  # real scenes: SUMO places every vehicle
    text = report.read_text()
    for label in labels:
        assert f"| {label} | " in text
    assert "## SUMO hand-off" in text and "![scenes](scenes.png)" in text and "traffic-tiny-genneg" in text
    assert f"`{twin}` (the base denoiser, " in text and a["model"]["stage"] == "base" and data["model"] is None
    image = matplotlib.image.imread(tmp_path / "out" / "scenes.png")
    assert image.shape[:2] == (930, 580)  # 3 rows (2 models and the data) of 2 maps, 3.1 x 2.9 inches at 100 dpi


def test_bad_model_folders_are_refused_by_name(tiny_model, tmp_path):
    from genneg.domains.traffic.demo import run_demo

    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no pretrained model folder nowhere/traffic-cpu"):
        run_demo(["nowhere/traffic-cpu"], out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty is no model folder: it holds no card\.json"):
        run_demo([tmp_path / "empty"], out)
    with pytest.raises(ValueError, match=r"toy-default holds a 'toy' model .* takes traffic model folders"):
        run_demo([tiny_model, ROOT / "pretrained" / "toy-default"], out)
    other = tmp_path / "traffic-other"
    shutil.copytree(tiny_model, other)
    card = json.loads((other / "card.json").read_text())
    card["data"]["config"]["max_vehicles"] = 3
    (other / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="traffic-other was trained on other data"):
        run_demo([tiny_model, other], out)
    with pytest.raises(ValueError, match="two model folders are named 'traffic-tiny'"):
        run_demo([tiny_model, str(tiny_model)], out)
    with pytest.raises(ValueError, match="at least one model folder"):
        run_demo([], out)
    with pytest.raises(ValueError, match=r"handoff must be in \[0, num_samples=4\], got 5"):
        run_demo([tiny_model], out, num_samples=4, handoff=5)
    assert not out.exists()  # refused before anything was written


def test_the_demo_command_prints_the_report_path(tiny_model, test_cache, tmp_path, monkeypatch, capsys):
    from genneg.cli import main

    monkeypatch.setenv("GENNEG_CACHE", str(test_cache.parent))
    out = tmp_path / "demo"
    assert main(["demo", "traffic", "--model", str(tiny_model), "--out", str(out), "--n", "8", "--handoff", "0",
                 "--columns", "1", "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.md'}" in printed and "| traffic-tiny | " in printed
    assert "## SUMO hand-off" not in printed and (out / "scenes.png").is_file()
    assert main(["demo", "traffic", "--model", "nowhere/traffic-cpu", "--out", str(out)]) == 2
    assert "nowhere/traffic-cpu" in capsys.readouterr().err
    assert main(["demo", "traffic", "--model", str(ROOT / "pretrained" / "toy-default"), "--out", str(out)]) == 2
    assert "holds a 'toy' model" in capsys.readouterr().err


def test_a_domain_without_a_demo_is_refused_by_name():
    from genneg.cli import main

    with pytest.raises(SystemExit, match="domain 'toy' has no demo"):
        main(["demo", "toy"])
