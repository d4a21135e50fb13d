"""Generating and loading some splits only: the held-out networks alone, in the same cache folder and files as the
full data set, which a later full generation reuses; a domain opened for the test split never asks for another."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("sumo")
pytest.importorskip("libsumo")

from genneg.domains.traffic import TrafficDomain  # noqa: E402
from genneg.domains.traffic.data import generate_scenes, load_scenes, read_manifest, sumo_preset  # noqa: E402
from genneg.domains.traffic.data.store import is_generated  # noqa: E402

SPLITS = ("train", "val", "test")
MAP = {"map_lines": 96, "map_points": 5}


def _networks(folder):
    return sorted(p.name.replace(".scenes.npz", "") for p in folder.glob("networks/*.scenes.npz"))


@pytest.fixture(scope="module")
def test_only(tmp_path_factory):
    """A cache root holding the ``tiny`` data's test split only, generated through the domain."""
    root = tmp_path_factory.mktemp("test-only")
    folder = TrafficDomain(preset="tiny", data_dir=root, splits=("test",)).prepare_data()
    return root, folder


def test_a_split_alone_is_simulated_and_marked_and_the_others_are_not(test_only, tiny_data_dir):
    root, folder = test_only
    assert _networks(folder) == ["test-00-random"]  # no train or val network was simulated
    assert (folder / "manifest.test.json").is_file() and not (folder / "manifest.json").exists()
    cfg = sumo_preset("tiny")
    assert is_generated(root, cfg, ("test",)) and not is_generated(root, cfg) and not is_generated(root, cfg, ["val"])
    reference = generate_scenes(tiny_data_dir, cfg)  # the full data set (cached by the session fixture)
    assert reference.name == folder.name  # the same cache folder name: the same config
    a, b = load_scenes(reference, "test"), load_scenes(folder, "test")
    for k in ("boxes", "defined", "origin", "time", "network_name"):
        assert np.array_equal(a[k], b[k]), f"test scenes: {k} differs from the full data set's"
    with pytest.raises(FileNotFoundError, match=r"split\(s\) \['train'\].*manifest.train.json"):
        load_scenes(folder, "train")
    assert read_manifest(folder, ["test"])["scenes_per_split"] == {"test": len(a["boxes"])}
    with pytest.raises(ValueError, match="non-empty subset"):
        generate_scenes(root, cfg, splits=("dev",))
    with pytest.raises(ValueError, match="the string 'test'"):
        generate_scenes(root, cfg, splits="test")


def test_a_full_generation_reuses_the_split_and_equals_a_full_run(tiny_data_dir, tmp_path):
    cfg = sumo_preset("tiny")
    copy = generate_scenes(tmp_path / "cache", cfg, splits=["test"])
    kept = {p: p.stat().st_mtime_ns for p in copy.glob("networks/test-*")}
    seen = []
    assert generate_scenes(tmp_path / "cache", cfg, lambda name, stats: seen.append(name)) == copy
    assert {p: p.stat().st_mtime_ns for p in copy.glob("networks/test-*")} == kept  # not simulated again
    assert sorted(seen) == _networks(copy) == ["test-00-random", "train-00-grid", "val-00-spider"]
    reference = tiny_data_dir / copy.name
    for split in SPLITS:
        a, b = load_scenes(reference, split), load_scenes(copy, split)
        for k in a:
            assert np.array_equal(a[k], b[k]), f"{split} scenes: {k} differs from a full run's"
    drop = lambda m: {k: v for k, v in m.items() if k not in ("seconds", "valid_scenes_per_second")}  # noqa: E731
    full = json.loads((copy / "manifest.json").read_text())
    assert drop(full) == drop(json.loads((reference / "manifest.json").read_text()))
    assert is_generated(tmp_path / "cache", cfg) and is_generated(tmp_path / "cache", cfg, ("val",))


def test_a_test_only_domain_serves_the_test_split_as_the_full_one_and_refuses_the_others(test_only, tiny_domain):
    from genneg.domain import get_domain

    root, folder = test_only
    domain = get_domain("traffic", preset="tiny", data_dir=root, splits=("test",), **MAP)
    assert domain.data_ready() and not get_domain("traffic", preset="tiny", data_dir=root, **MAP).data_ready()
    x0, cond = domain.dataset("test")
    y0, full = tiny_domain.dataset("test")
    assert x0.equal(y0) and all(cond[k].equal(full[k]) for k in cond if k != "scene")
    offset = tiny_domain.table.split_ranges["test"][0]  # scene ids run over the domain's splits only
    assert (cond["scene"] + offset).equal(full["scene"])
    a, b = domain.conditions(16, "test", 3), tiny_domain.conditions(16, "test", 3)
    assert all(a[k].equal(b[k]) for k in a if k != "scene") and (a["scene"] + offset).equal(b["scene"])
    for ask in (lambda: domain.dataset("train"), lambda: domain.conditions(4, "val"),
                lambda: domain.coverage("train"), lambda: domain.reference_features("val")):
        with pytest.raises(ValueError, match=r"opened for the split\(s\) \['test'\] only, not '(train|val)'"):
            ask()
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        domain.dataset("dev")
    for bad in ((), ("dev",), "test"):
        with pytest.raises(ValueError, match="splits must be"):
            TrafficDomain(preset="tiny", data_dir=root, splits=bad)
    assert _networks(folder) == ["test-00-random"]  # nothing asked for the other splits' data


def test_the_data_command_generates_one_split(test_only, tmp_path, monkeypatch, capsys):
    from genneg.cli import main

    root, folder = test_only
    cache = tmp_path / "genneg"
    shutil.copytree(folder, cache / "traffic" / folder.name)
    monkeypatch.setenv("GENNEG_CACHE", str(cache))
    assert main(["data", "traffic", "--preset", "tiny", "--split", "test", "--quiet"]) == 0
    assert "(split test)" in capsys.readouterr().out
    assert _networks(cache / "traffic" / folder.name) == ["test-00-random"]  # --split was obeyed: nothing else made
    assert main(["data", "traffic", "--preset", "tiny", "--split", "dev", "--quiet"]) == 2
    assert "non-empty subset" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--split is not supported"):
        main(["data", "motion", "--preset", "tiny", "--split", "test", "--quiet"])
