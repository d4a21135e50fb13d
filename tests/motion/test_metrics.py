"""Motion evaluation: the measures on hand-built heights and joint tracks, the condition sets, the grounding
reference, and the comparison GIF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genneg.domains.motion.metrics import (bootstrap_interval, diversity_per_clip, nearest_distances,
                                           trajectory_distances)
from genneg.oracles.motion import physdiff_lowest_metrics


def _toes(heights: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """[1, T, 2, 3] toe joints at the given heights [T, 2] and x positions [T, 2] (z = 0)."""
    return np.stack([xs, heights, np.zeros_like(xs)], -1)[None]


def test_physdiff_metrics_on_hand_built_heights_and_toes():
    lowest = np.array([[-0.010, 0.020, 0.000, -0.030]])  # penetrate 10 and 30 mm, float 20 mm
    heights = np.array([[0.01, 0.30], [0.01, 0.30], [0.20, 0.01], [0.02, 0.01]])  # left toe, right toe
    xs = np.array([[0.0, 0.0], [0.1, 0.5], [0.1, 0.5], [0.1, 0.8]])
    m = physdiff_lowest_metrics(lowest, _toes(heights, xs))
    assert m["penetrate_mm"][0] == pytest.approx((10 + 30) / 4)
    assert m["float_mm"][0] == pytest.approx(20 / 4)
    # transitions: 0->1 the left toe in contact both frames moves 100 mm; 1->2 no toe in contact in both;
    # 2->3 the right toe in contact both frames moves 300 mm
    assert m["skate_mm"][0] == pytest.approx((100 + 0 + 300) / 3)
    assert m["phys_err_mm"][0] == pytest.approx(10 + 5 + 400 / 3)
    defined = np.array([[True, True, False, False]])  # padding is never measured
    m = physdiff_lowest_metrics(lowest, _toes(heights, xs), defined=defined)
    assert (m["penetrate_mm"][0], m["float_mm"][0], m["skate_mm"][0]) == pytest.approx((5, 10, 100))
    with pytest.raises(ValueError):
        physdiff_lowest_metrics(lowest, _toes(heights, xs)[:, :3])


def _tracks(offsets, frames=4, joints=24):
    """Windows whose every joint sits at x = offset in every frame: distances between them are known."""
    out = np.zeros((len(offsets), frames, joints, 3))
    out[..., 0] = np.asarray(offsets, float)[:, None, None]
    return out


def test_trajectory_distances_match_a_slow_reference_and_use_common_frames():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5, 24, 3)), rng.normal(size=(4, 5, 24, 3))
    da, db = rng.random((3, 5)) < 0.7, rng.random((4, 5)) < 0.7
    da[:, 0] = db[:, 0] = True
    d = trajectory_distances(a, da, b, db)
    for i in range(3):
        for j in range(4):
            both = da[i] & db[j]
            ref = np.sqrt(np.mean(np.sum((a[i, both] - b[j, both]) ** 2, -1)))
            assert d[i, j] == pytest.approx(ref, rel=1e-9)
    assert np.isnan(trajectory_distances(a[:1], ~da[:1] & False, b[:1], db[:1]))[0, 0]


def test_diversity_per_clip_and_nearest_training_window_on_known_tracks():
    joints = _tracks([0.0, 1.0, 2.0, 5.0, 5.5])
    defined = np.ones(joints.shape[:2], bool)
    label = np.array([0, 0, 0, 1, 1])
    div = diversity_per_clip(joints, defined, label)
    assert div["value"] == pytest.approx((4 / 3 + 0.5) / 2)  # clip 0: distances 1, 2, 1; clip 1: 0.5
    assert div["lo"] <= div["value"] <= div["hi"]
    assert np.isnan(diversity_per_clip(joints[:1], defined[:1], label[:1])["value"])  # no clip with two samples
    reference = {"joints": _tracks([0.25, 5.5, 9.0]), "defined": np.ones((3, 4), bool), "label": np.array([0, 1, 2])}
    near = nearest_distances(joints, defined, label, reference)
    np.testing.assert_allclose(near, [0.25, 0.75, 1.75, 0.5, 0.0])  # only windows of the same clip count
    assert np.isnan(nearest_distances(joints[:1], defined[:1], np.array([7]), reference)).all()


def test_bootstrap_interval_brackets_the_statistic():
    v = np.random.default_rng(1).normal(3.0, 1.0, 400)
    m = bootstrap_interval(v)
    assert m["value"] == pytest.approx(v.mean()) and m["lo"] < m["value"] < m["hi"] and m["hi"] - m["lo"] < 0.4
    q = bootstrap_interval(v, lambda x, axis: np.quantile(x, 0.9, axis=axis))
    assert q["value"] == pytest.approx(np.quantile(v, 0.9)) and q["lo"] <= q["value"] <= q["hi"]
    assert bootstrap_interval(np.full(10, 2.0)) == {"value": 2.0, "lo": 2.0, "hi": 2.0}


# --------------------------------------------------------------------------------------------- on the domain
pytest.importorskip("smplx")
pytest.importorskip("pybullet")


def test_domain_metrics_of_real_windows(domain):
    from genneg.evaluate import domain_metrics

    x0, cond = domain.dataset("test")
    samples = domain.decode(x0, cond)
    result = domain.oracle()(samples, cond)
    m = domain_metrics(domain, samples, cond, result, "test")  # the engine's checks: names, finite values
    assert {"physdiff_penetrate_mm", "physdiff_float_mm", "physdiff_skate_mm", "physdiff_phys_err_mm",
            "gmd_skating_ratio", "worst_depth_median_mm", "worst_depth_p90_mm", "diversity_per_clip_m",
            "nearest_train_m", "invalid_full_length_pct", "invalid_short_masks_pct"} <= set(m)  # fmt: skip
    assert m["physdiff_penetrate_mm"]["value"] < 2 and m["worst_depth_p90_mm"]["value"] < 30  # real data
    assert all(v["lo"] <= v["value"] <= v["hi"] for v in m.values())
    # a window compared with the training windows of its own clip: a training window itself is at distance 0
    train_x0, train_cond = domain.dataset("train")
    uncut = np.flatnonzero(~domain.data["cut"][domain.data["split"] == "train"])[:20]
    pick = {k: v[uncut] for k, v in train_cond.items()}
    near = domain.metrics(domain.decode(train_x0[uncut], pick), pick, None, "train")["nearest_train_m"]
    assert near["value"] < 1e-3


def test_condition_sets(domain, cache_dir):
    from genneg.domains.motion import make_domain

    n_clips = len(domain.label_names)
    full = domain.conditions(3 * n_clips + 2, "test:full", 0)
    assert full["defined"].all()
    counts = np.bincount(full["label"].numpy(), minlength=n_clips)
    assert counts.min() == 3 and counts.max() == 4 and counts.sum() == 3 * n_clips + 2  # balanced over clips
    idx = domain._split("test:masks")
    masks = domain.conditions(2 * len(idx), "test:masks", 0)  # every test window's own mask, twice each
    got = sorted((int(lab), int(m.sum())) for lab, m in zip(masks["label"], masks["defined"]))
    want = sorted(2 * [(int(domain.data["label"][i]), int(domain.data["length"][i])) for i in idx])
    assert got == want and not masks["defined"].all()  # the short test windows of the untiled clips are in it
    plain = domain.conditions(64, "test", 3)  # without a set: the domain's setting, "windows" by default
    for k, v in domain.conditions(64, "test:windows", 3).items():
        assert torch.equal(plain[k], v)
    as_full = make_domain(cache_dir=str(cache_dir), conditions="full")
    assert as_full.conditions(20, "test", 0)["defined"].all()
    x0, cond = domain.dataset("test:full")
    assert cond["defined"].all() and len(x0) < len(domain.dataset("test")[0])
    with pytest.raises(ValueError, match="split"):
        domain.conditions(4, "test:everything", 0)
    with pytest.raises(ValueError, match="condition set"):
        make_domain(cache_dir=str(cache_dir), conditions="all")


def test_grounding_removes_penetration_and_can_add_floating(domain):
    from genneg.domains.motion.calibration import oracle_inputs
    from genneg.domains.motion.grounding import ground_samples

    x0, cond = domain.dataset("val:full")
    real = domain.decode(x0, cond)
    sunk_features = real["features"].copy()
    sunk_features[..., 1] -= 0.2 * np.linspace(0, 1, sunk_features.shape[1])  # sinking ever deeper
    sunk = domain.decode(domain.normalise(sunk_features, cond["defined"].numpy()), cond)
    oracle = domain.oracle()
    assert oracle(sunk, cond).reasons["penetration"].mean() > 0.5
    for per in ("frame", "window"):
        grounded = ground_samples(sunk, per)
        r = oracle(grounded, cond)
        assert not r.reasons["penetration"].any()
        assert grounded["lowest_height"].min() > -1e-6
        # the shifted arrays are what posing the shifted features gives
        again = oracle_inputs(domain.skinned, torch.as_tensor(grounded["features"]), cond["defined"].numpy())
        np.testing.assert_allclose(again["lowest_height"], grounded["lowest_height"], atol=1e-5)
        np.testing.assert_allclose(again["joints"], grounded["joints"], atol=1e-5)
    per_frame, per_window = ground_samples(sunk, "frame"), ground_samples(sunk, "window")
    assert np.abs(per_frame["lowest_height"]).max() < 1e-6  # every frame on the floor: no flight left either
    floats = [physdiff_lowest_metrics(s["lowest_height"], s["toes"])["float_mm"].mean() for s in (real, per_window)]
    assert floats[1] > floats[0] + 20  # lifting a window by its deepest frame raises its other frames
    with pytest.raises(ValueError, match="per"):
        ground_samples(sunk, "clip")


def test_compare_gif_animates_the_same_label_and_noise(domain, tmp_path):
    from PIL import Image

    from genneg.config import SamplerConfig
    from genneg.domains.motion.export import compare_gif

    x0, cond = domain.dataset("train:full")
    target = x0[:1]
    sunk_features = domain.physical(target).numpy()
    sunk_features[..., 1] -= 0.5
    sunk = domain.normalise(sunk_features, np.ones((1, domain.frames), bool))
    models = {"base": lambda x, s, c: sunk.expand(len(x), -1, -1),
              "Gen-neG": lambda x, s, c: target.expand(len(x), -1, -1)}  # fmt: skip
    path = tmp_path / "compare.gif"
    verdicts = compare_gif(path, domain, models, int(cond["label"][0]), SamplerConfig(steps=2), frames=3, dpi=30)
    assert verdicts == {"base": False, "Gen-neG": True}
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size[0] > im.size[1]  # two panels side by side


def test_export_run_picks_samples_of_one_clip():
    from genneg.domains.motion.export import _pick

    defined = np.ones((6, 4), bool)
    defined[0, 2:] = False
    results = {"base": {"s_defined": defined, "valid": np.array([0, 1, 0, 0, 1, 0], bool),
                        "s_label": np.array([3, 3, 1, 3, 3, 1])}}  # fmt: skip
    assert _pick(results, "base", 2).tolist() == [2, 3]  # invalid first, longest windows first
    assert _pick(results, "base", 3, label=3).tolist() == [3, 0, 1]  # only clip 3: invalid ones, then valid


def test_gif_frames_are_red_where_the_lowest_vertex_penetrates():
    from genneg.domains.motion.plot import MotionPanel, _panel_flags
    from genneg.domains.motion.skeleton import REST_JOINTS

    joints = np.repeat(REST_JOINTS[None], 3, 0) + np.array([0.0, 3.0, 0.0])  # joints well above the floor
    panel = MotionPanel(joints, lowest=np.array([0.0, -0.1, 0.01]))  # but the skin goes 10 cm under in frame 1
    assert _panel_flags(panel, 20.0)["penetration"].tolist() == [False, True, False]
    assert not _panel_flags(MotionPanel(joints), 20.0)["penetration"].any()  # judged on the joints alone
