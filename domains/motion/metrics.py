"""Evaluation measures of generated motion (``MotionDomain.metrics``), from what ``decode`` already computed.

Every measure is a function of the lowest-vertex heights ``[B, T]``, the joints ``[B, T, 24, 3]`` and the frame mask
that the labelling fast path hands the oracles; none poses a mesh, so a few thousand windows take about a second.

- PhysDiff's Penetrate / Float / Skate / Phys-Err in mm (``genneg.oracles.motion.physdiff_lowest_metrics``) and GMD's
  skating ratio: the mean over samples, with a bootstrap interval over samples;
- the worst-frame depth (deepest lowest vertex of a window, mm; negative when it never reaches the floor): median
  and 90th percentile, bootstrapped;
- diversity per clip: the mean distance between the joint trajectories of two samples of the same clip label,
  averaged over the clips, with the U-statistic's standard error (Hoeffding: 2·sd of each sample's mean distance to
  the others / √n per clip);
- the distance to the nearest training window of the same clip (so a model that replays the mocap shows it),
  mean over samples with a bootstrap interval.

The distance between two windows is the root-mean-square distance of their joints (metres) over the frames both
define. Windows are canonicalised (``data.representation``), so it compares motions, not places.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from genneg.rng import numpy_rng
from genneg.stats import wilson_interval
from genneg.oracles.motion import physdiff_lowest_metrics, skating_ratio

__all__ = ["bootstrap_interval", "trajectory_distances", "diversity_per_clip", "nearest_distances", "motion_metrics"]

Z95 = 1.959963984540054


def bootstrap_interval(values: np.ndarray, stat: Callable = np.mean, *, draws: int = 1000, seed: int = 0,
                       level: float = 0.95) -> dict[str, float]:  # fmt: skip
    """``{"value", "lo", "hi"}``: ``stat`` of values [n] and its percentile bootstrap interval over the samples.

    ``stat`` must reduce along ``axis=1`` (``np.mean``, ``np.median``, ``lambda v, axis: np.quantile(v, 0.9, axis)``).
    """
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"bootstrap_interval needs a non-empty [n] array, got shape {values.shape}")
    idx = numpy_rng(seed, "motion-metrics", "bootstrap").integers(0, len(values), (draws, len(values)))
    boot = stat(values[idx], axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"value": float(stat(values[None], axis=1)[0]), "lo": float(lo), "hi": float(hi)}


def _p90(v, axis):
    return np.quantile(v, 0.9, axis=axis)


def trajectory_distances(a: np.ndarray, a_defined: np.ndarray, b: np.ndarray, b_defined: np.ndarray) -> np.ndarray:
    """[n, m] RMS joint distance (metres) between windows a [n, T, J, 3] and b [m, T, J, 3] over the frames both
    define (``*_defined`` [n, T] / [m, T]); NaN for a pair without a common frame. Matrix products, no [n, m, T]."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    ma, mb = torch.as_tensor(a_defined, dtype=torch.float64), torch.as_tensor(b_defined, dtype=torch.float64)
    joints = a.shape[2]
    a2, b2 = a.square().sum((2, 3)) * ma, b.square().sum((2, 3)) * mb  # [n, T], [m, T]
    cross = torch.einsum("itjk,utjk->iu", a * ma[..., None, None], b * mb[..., None, None])
    sq = a2 @ mb.T + ma @ b2.T - 2 * cross  # Σ over common frames of Σ_j |a - b|²
    frames = ma @ mb.T
    d = (sq.clamp_min(0) / (frames * joints).clamp_min(1)).sqrt()
    return torch.where(frames > 0, d, torch.nan).numpy()


def diversity_per_clip(joints: np.ndarray, defined: np.ndarray, label: np.ndarray, *, max_per_clip: int = 256,
                       seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Mean pairwise trajectory distance among the samples of each clip label, averaged over the clips that have
    at least two samples (at most ``max_per_clip`` of each, chosen by seed), with a 95 % normal interval from the
    U-statistic's standard error. ``{"value", "lo", "hi"}`` in metres (NaN when no clip has two samples)."""
    rng = numpy_rng(seed, "motion-metrics", "diversity")
    means, variances = [], []
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        if len(idx) < 2:
            continue
        idx = rng.choice(idx, min(len(idx), max_per_clip), replace=False)
        d = trajectory_distances(joints[idx], defined[idx], joints[idx], defined[idx])
        np.fill_diagonal(d, np.nan)
        per_sample = np.nanmean(d, axis=1)  # each sample's mean distance to the others
        means.append(float(np.nanmean(d)))
        variances.append(4 * np.nanvar(per_sample, ddof=1) / len(idx) if len(idx) > 2 else 0.0)
    if not means:
        return {"value": float("nan"), "lo": float("nan"), "hi": float("nan")}
    value, se = float(np.mean(means)), float(np.sqrt(np.sum(variances)) / len(means))
    return {"value": value, "lo": value - Z95 * se, "hi": value + Z95 * se}


def nearest_distances(joints: np.ndarray, defined: np.ndarray, label: np.ndarray, reference: dict) -> np.ndarray:
    """[B] trajectory distance (metres) of each sample to the nearest ``reference`` window of its clip label
    (``reference``: ``joints`` [N, T, 24, 3], ``defined`` [N, T], ``label`` [N]); NaN where the clip has none."""
    out = np.full(len(label), np.nan)
    for c in np.unique(label):
        idx, ref = np.flatnonzero(label == c), np.flatnonzero(reference["label"] == c)
        if len(ref):
            d = trajectory_distances(joints[idx], defined[idx], reference["joints"][ref], reference["defined"][ref])
            out[idx] = np.nanmin(np.where(np.isnan(d), np.inf, d), axis=1)
    return np.where(np.isinf(out), np.nan, out)


def _rate(flags: np.ndarray, judged: np.ndarray) -> dict[str, float]:
    n, k = int(judged.sum()), int((flags & judged).sum())
    lo, hi = wilson_interval(k, n)
    return {"value": 100.0 * k / n, "lo": 100.0 * lo, "hi": 100.0 * hi}


def motion_metrics(samples: dict, result, reference: dict | None, fps: float = 20.0, *, seed: int = 0) -> dict:
    """Every measure of the module docstring for decoded samples (``MotionDomain.decode``) and their verdicts.

    Args:
        result: the oracle's ``OracleResult`` (or None): adds the invalid rate (%, Wilson) of the samples on
            full-length conditions and of those on shorter masks, apart, where both kinds are present.
        reference: the training windows (``nearest_distances``), or None to skip the nearest-window distance.

    Returns:
        ``{name: {"value", "lo", "hi"}}`` (``genneg.evaluate.domain_metrics``' layout); names end in their unit.
    """
    low, toes = np.asarray(samples["lowest_height"]), np.asarray(samples["toes"])
    defined, label = np.asarray(samples["defined"], bool), np.asarray(samples["label"])
    joints = np.asarray(samples["joints"])
    out = {}
    for k, v in physdiff_lowest_metrics(low, toes, fps, defined).items():
        out[f"physdiff_{k}"] = bootstrap_interval(v, seed=seed)
    out["gmd_skating_ratio"] = bootstrap_interval(skating_ratio(toes, fps, defined), seed=seed)
    depth = -1000.0 * np.where(defined, low, np.inf).min(1)
    out["worst_depth_median_mm"] = bootstrap_interval(depth, np.median, seed=seed)
    out["worst_depth_p90_mm"] = bootstrap_interval(depth, _p90, seed=seed)
    div = diversity_per_clip(joints, defined, label, seed=seed)
    if np.isfinite(div["value"]):
        out["diversity_per_clip_m"] = div
    if reference is not None:
        near = nearest_distances(joints, defined, label, reference)
        if np.isfinite(near).any():
            out["nearest_train_m"] = bootstrap_interval(near[np.isfinite(near)], seed=seed)
    if result is not None:
        full = defined.all(1)
        judged, invalid = np.asarray(result.defined, bool), ~np.asarray(result.valid, bool)
        if (judged & full).any() and (judged & ~full).any():
            out["invalid_full_length_pct"] = _rate(invalid, judged & full)
            out["invalid_short_masks_pct"] = _rate(invalid, judged & ~full)
    return out
