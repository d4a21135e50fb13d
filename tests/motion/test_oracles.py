"""Motion oracles and metrics: hand-built motions, slow references, real data calibration, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from genneg.oracle import get_oracle
from genneg.labelling import label
from genneg.oracles.motion import (
    CALIBRATION_REPORT,
    DEFAULT_THRESHOLDS,
    MotionThresholds,
    calibrate_thresholds,
    longest_run,
    motion_infractions,
    motion_oracle,
    physdiff_metrics,
    skating_ratio,
)



def as_batch(out) -> dict[str, np.ndarray]:
    """A one-motion oracle batch from a BodyOutput."""
    from genneg.domains.motion.skeleton import TOE_JOINTS, joint_index

    return {"vertices": out.vertices[None], "toes": out.joints[None][:, :, [joint_index(n) for n in TOE_JOINTS]]}


def _slow_skating_ratio(toes, fps):
    """Loop transcription of GMD's calculate_skating_ratio (scipy uniform_filter1d, mode='constant')."""
    uniform_filter1d = pytest.importorskip("scipy.ndimage").uniform_filter1d

    feet = np.transpose(toes, (0, 2, 3, 1))  # [B, 2, 3, T]
    vel = np.linalg.norm(feet[:, :, [0, 2], 1:] - feet[:, :, [0, 2], :-1], axis=2) * fps
    avg = uniform_filter1d(vel, axis=-1, size=5, mode="constant", origin=0)
    h = feet[:, :, 1, :]
    contact = (h[:, :, :-1] < 0.05) & (h[:, :, 1:] < 0.05)
    skating = contact & (vel > 0.5) & (avg > 0.5)
    return np.logical_or(skating[:, 0], skating[:, 1]).sum(1) / skating.shape[-1]


def _slow_physdiff(v):
    pen, flo, ska = [], [], []
    for t in range(v.shape[0]):
        y = v[t, :, 1]
        pen.append(-y[y < 0].mean() * 1000 if (y < 0).any() else 0.0)
        flo.append(y.min() * 1000 if y.min() > 0 else 0.0)
        if t + 1 < v.shape[0]:
            c = (y <= 0) & (v[t + 1, :, 1] <= 0)
            d = np.linalg.norm(v[t + 1, c][:, [0, 2]] - v[t, c][:, [0, 2]], axis=1)
            ska.append(d.mean() * 1000 if c.any() else 0.0)
    return np.mean(pen), np.mean(flo), np.mean(ska)


def test_metrics_match_slow_references():
    rng = np.random.default_rng(0)
    v = rng.normal(0, 0.05, (3, 12, 30, 3))
    v[1, :, :, 1] += 0.2  # one motion entirely above the floor
    m = physdiff_metrics(v, 20.0)
    for b in range(3):
        np.testing.assert_allclose([m["penetrate_mm"][b], m["float_mm"][b], m["skate_mm"][b]], _slow_physdiff(v[b]))
    assert m["penetrate_mm"][1] == 0 and m["float_mm"][1] > 0 and m["skate_mm"][1] == 0
    toes = rng.normal(0, 0.04, (6, 30, 2, 3)).cumsum(1) * [1, 0.2, 1]
    toes[..., 1] = np.abs(toes[..., 1])
    np.testing.assert_allclose(skating_ratio(toes, 20.0), _slow_skating_ratio(toes, 20.0))
    assert skating_ratio(toes, 20.0).max() > 0


def test_hand_built_metrics():
    v = np.zeros((1, 4, 2, 3))
    v[0, :, 0, 1] = -0.01  # a vertex 10 mm under the floor, still
    v[0, :, 1, 1] = -0.03  # another 30 mm under, sliding 2 cm per frame along x
    v[0, :, 1, 0] = 0.02 * np.arange(4)
    m = physdiff_metrics(v, 20.0)
    np.testing.assert_allclose([m["penetrate_mm"][0], m["float_mm"][0], m["skate_mm"][0]], [20.0, 0.0, 10.0])
    assert longest_run(np.array([[1, 1, 0, 1, 1, 1, 0], [0] * 7], bool)).tolist() == [3, 0]


def test_masks_ignore_padding():
    v = np.zeros((1, 6, 2, 3))
    v[0, 4:, :, 1] = -5.0  # padding frames deep underground must not count
    defined = np.array([[1, 1, 1, 1, 0, 0]], bool)
    toes = np.zeros((1, 6, 2, 3))
    toes[0, 4:, :, 0] = 50.0
    flags = motion_infractions(v, toes, 20.0, defined)
    assert not any(f[0] for f in flags.values())
    assert physdiff_metrics(v, 20.0, defined)["penetrate_mm"][0] == 0
    assert skating_ratio(toes, 20.0, defined)[0] == 0


def test_bad_inputs_are_rejected():
    ok = np.zeros((1, 5, 4, 3))
    with pytest.raises(ValueError, match="NaN"):
        physdiff_metrics(np.full((1, 5, 4, 3), np.nan))
    with pytest.raises(ValueError, match=r"\[B, T, N, 3\]"):
        physdiff_metrics(np.zeros((5, 4, 3)))
    with pytest.raises(ValueError, match="2 points per frame"):
        skating_ratio(np.zeros((1, 5, 3, 3)))
    with pytest.raises(ValueError, match="defined"):
        physdiff_metrics(ok, 20.0, np.ones((1, 4), bool))
    with pytest.raises(ValueError, match="at least one defined frame"):
        physdiff_metrics(ok, 20.0, np.zeros((1, 5), bool))
    with pytest.raises(ValueError, match="fps"):
        skating_ratio(np.zeros((1, 5, 2, 3)), fps=0)
    with pytest.raises(ValueError, match="skating_ratio"):
        MotionThresholds(10.0, 1.5, 30.0, 1.0)
    with pytest.raises(KeyError, match="lowest_height"):
        motion_oracle()({"joints": np.zeros((1, 5, 24, 3))})


def test_real_walk_passes_and_altered_copies_are_flagged(walk):
    _, _, out = walk
    real = as_batch(out)
    assert not any(f[0] for f in motion_infractions(real["vertices"], real["toes"], 20.0).values())
    sunk = {k: v - [0, 0.1, 0] for k, v in real.items()}  # 10 cm into the floor
    drift = np.arange(len(out.vertices))[None, :, None, None] * np.array([0.06, 0.0, 0.0])  # 1.2 m/s along x
    slid = {k: v + drift for k, v in real.items()}
    flags = {name: motion_infractions(b["vertices"], b["toes"], 20.0) for name, b in (("sunk", sunk), ("slid", slid))}
    assert flags["sunk"]["penetration"][0] and flags["slid"]["skating"][0]
    assert not flags["slid"]["penetration"][0] and not flags["slid"]["float"][0]


def test_hovering_copy_is_flagged_but_real_flight_is_not(real):
    long_windows = np.flatnonzero(real["defined"].all(1) & (real["clip"] == "walk"))
    assert len(long_windows) >= 4
    i = long_windows[0]
    batch = {"lowest_height": real["lowest_height"][[i, i]].copy(), "toes": real["toes"][[i, i]].copy()}
    batch["lowest_height"][1] += 0.5
    batch["toes"][1, :, :, 1] += 0.5
    flags = motion_infractions(batch["lowest_height"], batch["toes"], 20.0)
    assert flags["float"].tolist() == [False, True]
    assert not flags["penetration"].any()


def test_thresholds_are_calibrated_on_train_windows_only(real):
    train = real["split"] == "train"
    args = (real["lowest_height"][train], real["toes"][train], 20.0, real["defined"][train])
    for reason, f in motion_infractions(*args).items():
        assert f.mean() <= 0.01, reason
    thresholds, report = calibrate_thresholds(*args)
    assert thresholds == DEFAULT_THRESHOLDS  # the documented constants are what calibration gives today
    assert report["pass_rate"]["all"] >= 0.99 and report["motions"] == CALIBRATION_REPORT["motions"]
    sunk = real["lowest_height"].copy()
    sunk[~train] -= 1.0  # held-out windows a metre deep: they must not move any threshold
    assert calibrate_thresholds(sunk[train], *args[1:])[0] == thresholds


def test_recalibrate_fits_train_and_reports_every_heldout_margin(body):
    from genneg.domains.motion.calibration import real_samples, recalibrate
    from genneg.domains.motion.data.windows import WindowConfig

    cfg = WindowConfig(clips=("walk", "kick"), stride=4, prefix_fraction=0.0)
    thresholds, report = recalibrate(cfg, body)
    s = real_samples(cfg, body)
    train = s["split"] == "train"
    assert thresholds == calibrate_thresholds(s["lowest_height"][train], s["toes"][train], 20.0,
                                              s["defined"][train])[0]  # fmt: skip
    held = report["heldout"]
    assert len(held["split"]) == (~train).sum() and set(held["split"]) == {"val", "test"}
    flags = motion_infractions(s["lowest_height"][~train], s["toes"][~train], 20.0, s["defined"][~train], thresholds)
    assert ((held["penetration_mm"] < 0) == flags["penetration"]).all()
    assert ((held["skating_ratio"] < 0) == flags["skating"]).all()
    assert ((held["flight_s"] < -1e-9) == flags["float"]).all()


def test_registered_oracles_and_labelling(real):
    n = 6
    samples = {"lowest_height": real["lowest_height"][:n].copy(), "toes": real["toes"][:n],
               "defined": real["defined"][:n]}  # fmt: skip
    samples["lowest_height"][2] -= 0.5
    samples["lowest_height"][4, 0] = np.nan
    result = label(get_oracle("physical", domain="motion"), samples, batch_size=3)
    assert result.defined.tolist() == [True, True, True, True, False, True]
    assert result.reasons["penetration"].tolist() == [False, False, True, False, False, False]
    assert set(result.reasons) == {"penetration", "skating", "float"}
    single = get_oracle("motion:skating")({"lowest_height": real["lowest_height"][:n], "joints": real["joints"][:n]})
    assert list(single.reasons) == ["skating"] and single.valid.all()
    with pytest.raises(KeyError, match="toes"):
        motion_oracle()({"lowest_height": samples["lowest_height"], "joints": real["joints"][:n, :, :10]})


def test_oracle_throughput(real):
    v, toes, d = real["lowest_height"], real["toes"], real["defined"]
    oracle = motion_oracle()
    oracle({"lowest_height": v, "toes": toes, "defined": d})  # warm up
    start = time.perf_counter()
    for _ in range(3):
        oracle({"lowest_height": v, "toes": toes, "defined": d})
    frames_per_s = 3 * v.shape[0] * v.shape[1] / (time.perf_counter() - start)
    assert frames_per_s >= 5000, frames_per_s


def test_penetrating_frames_are_the_frames_that_decide_penetration():
    from genneg.oracles.motion import MotionThresholds, motion_infractions, motion_oracle, penetrating_frames

    lowest = np.array([[0.0, -0.010, -0.031, 0.02], [0.0, -0.029, 0.0, -0.5], [0.01, 0.02, 0.0, 0.0]])
    defined = np.array([[True, True, True, True], [True, True, True, False], [True, True, True, True]])
    frames = penetrating_frames(lowest, defined, 30.0)
    assert frames.tolist() == [[False, False, True, False], [False, False, False, False], [False] * 4]
    toes = np.zeros((3, 4, 2, 3))
    t = MotionThresholds(penetration_mm=30.0, skating_ratio=0.08, float_mm=200.0, max_flight_s=0.4)
    assert np.array_equal(frames.any(1), motion_infractions(lowest, toes, 20.0, defined, t)["penetration"])
    r = motion_oracle(t)({"lowest_height": lowest, "toes": toes, "defined": defined})
    assert np.array_equal(r.elements["penetration"], frames) and np.array_equal(r.element_defined, defined)
    assert list(r.elements) == ["penetration"]  # skating and float are decided by the whole window
