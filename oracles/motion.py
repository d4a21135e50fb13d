"""Human-motion oracles: floor penetration, foot skating and floating, as pure vectorised numpy functions.

Units and frame: SMPL meshes in metres, +Y up, the floor is the plane y = 0. A batch holds B motions of T frames:
the height of each frame's lowest mesh vertex ``lowest_height[B, T]`` (or the vertices ``vertices[B, T, V, 3]``,
whose lowest is taken), the two toe joints ``toes[B, T, 2, 3]`` (SMPL ``left_foot``, ``right_foot``; or SMPL's 24
joints ``joints[B, T, 24, 3]``, of which ``SMPL_TOE_INDICES`` are taken), and an optional frame mask
``defined[B, T]`` (False = padding, never checked). The oracles read nothing else, so a domain's ``decode`` hands
them only these.

Continuous metrics (reported for generated and real data):

- :func:`physdiff_metrics` (UHC / PhysDiff, millimetres, per-frame values averaged over defined frames):
  ``penetrate_mm`` = mean depth of the vertices below the floor (UHC's penetration; 0 in a frame without any);
  ``float_mm`` = height of the lowest vertex when it is above the floor (PhysDiff's Float; 0 otherwise);
  ``skate_mm`` = mean horizontal displacement, between frames t and t + 1, of the vertices at or below the floor
  in both frames (UHC's skate; 0 for a transition without such contact).
- :func:`physdiff_lowest_metrics` (PhysDiff's own wording, millimetres, per-frame values averaged over defined
  frames): ``penetrate_mm`` = depth of the lowest mesh vertex when it is below the floor (0 otherwise);
  ``float_mm`` = height of the lowest mesh vertex when it is above the floor (0 otherwise); ``skate_mm`` = mean
  horizontal displacement, between frames t and t + 1, of the toe joints in contact with the ground (below
  ``contact_m``) in both frames (0 for a transition without such contact). It reads only what labelling computes.
- :func:`skating_ratio` (GMD / OmniControl): share of frame transitions in which a toe joint is below 5 cm in
  both frames and moves horizontally faster than 0.5 m/s, in the transition and in its centred 5-frame average.

Oracles (reasons ``penetration``, ``skating``, ``float``; registered as ``motion:penetration``, ``motion:skating``,
``motion:float`` and ``motion:physical`` for all three):

- penetration: some frame's lowest vertex is deeper than ``penetration_mm`` below the floor; its verdicts carry the
  per-frame flags (``OracleResult.elements``, :func:`penetrating_frames`) that a per-frame classifier learns from;
- skating: the GMD skating ratio exceeds ``skating_ratio``;
- float: the lowest vertex stays higher than ``float_mm`` above the floor for longer than ``max_flight_s``
  (real jumps and flips are airborne for less).

The thresholds in :data:`DEFAULT_THRESHOLDS` were calibrated with :func:`calibrate_thresholds` on the real
DeepMimic *training* windows retargeted to the proxy body (``genneg.domains.motion.calibration`` recomputes them and the
margins of the held-out windows); see there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from genneg.oracle import AllOf, FunctionOracle, OracleResult, register_oracle

__all__ = [
    "MotionThresholds",
    "penetrating_frames",
    "DEFAULT_THRESHOLDS",
    "physdiff_metrics",
    "physdiff_lowest_metrics",
    "skating_ratio",
    "lowest_heights",
    "longest_run",
    "motion_statistics",
    "motion_infractions",
    "infractions_of",
    "calibrate_thresholds",
    "motion_oracle",
    "CALIBRATION_REPORT",
]

GMD_HEIGHT_M = 0.05  # toe joint below 5 cm counts as on the ground
GMD_SPEED_MS = 0.5  # faster than 0.5 m/s counts as moving
GMD_WINDOW = 5  # frames of the centred speed average
SMPL_TOE_INDICES = (10, 11)  # left_foot, right_foot in SMPL's 24-joint order: GMD's toe joints


@dataclass(frozen=True)
class MotionThresholds:
    """Oracle thresholds.

    Attributes:
        penetration_mm: a frame whose lowest vertex is deeper than this below the floor is a penetration.
        skating_ratio: a motion whose GMD skating ratio exceeds this skates.
        float_mm: a frame whose lowest vertex is higher than this above the floor is airborne.
        max_flight_s: airborne for longer than this (seconds, consecutive frames) is floating.
    """

    penetration_mm: float
    skating_ratio: float
    float_mm: float
    max_flight_s: float

    def __post_init__(self):
        for name in ("penetration_mm", "float_mm", "max_flight_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)}")
        if not 0 <= self.skating_ratio <= 1:
            raise ValueError(f"skating_ratio must be in [0, 1], got {self.skating_ratio}")


def _check_defined(defined, shape: tuple[int, int]) -> np.ndarray:
    if defined is None:
        return np.ones(shape, bool)
    defined = np.asarray(defined)
    if defined.shape != shape:
        raise ValueError(f"defined (frame mask) must have shape {shape}, got {defined.shape}")
    if defined.dtype != bool:
        if defined.dtype.kind not in "biu" or not np.isin(defined, (0, 1)).all():
            raise ValueError(f"defined (frame mask) must be boolean, got dtype {defined.dtype}")
        defined = defined.astype(bool)
    if not defined.any(axis=1).all():
        raise ValueError("every motion needs at least one defined frame")
    return defined


def _check_points(points, what: str, n_points: int | None = None) -> np.ndarray:
    points = np.asarray(points)
    if points.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be a numeric array, got dtype {points.dtype}")
    if points.ndim != 4 or points.shape[-1] != 3 or min(points.shape) == 0:
        raise ValueError(f"{what} must have shape [B, T, N, 3] (non-empty), got {points.shape}")
    if n_points is not None and points.shape[2] != n_points:
        raise ValueError(f"{what} must hold {n_points} points per frame, got {points.shape[2]}")
    if not np.isfinite(points).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return points if points.dtype.kind == "f" else points.astype(np.float64)


def _masked_mean(values: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of values [B, T] where defined [B, T]; 0 where nothing is defined."""
    return np.where(defined, values, 0).sum(1) / np.maximum(defined.sum(1), 1)


def _check_fps(fps: float) -> float:
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    return float(fps)


def physdiff_metrics(vertices, fps: float = 20.0, defined=None) -> dict[str, np.ndarray]:
    """UHC / PhysDiff physics metrics of B motions, in millimetres (see the module docstring).

    Args:
        vertices: [B, T, V, 3] mesh vertices, metres, Y up, floor at y = 0.
        fps: frame rate; skate is a displacement per frame at this rate.
        defined: [B, T] frame mask (None = all frames).

    Returns:
        ``penetrate_mm``, ``float_mm``, ``skate_mm``: [B] float64, each the mean of a per-frame value.
    """
    _check_fps(fps)
    v = _check_points(vertices, "vertices")
    defined = _check_defined(defined, v.shape[:2])
    y = v[..., 1]  # [B, T, V]
    below = y < 0
    depth = np.where(below, -y, 0).sum(-1) / np.maximum(below.sum(-1), 1)  # [B, T]
    lowest = y.min(-1)
    contact = y <= 0
    both = contact[:, :-1] & contact[:, 1:]  # [B, T-1, V]
    step = np.hypot(v[:, 1:, :, 0] - v[:, :-1, :, 0], v[:, 1:, :, 2] - v[:, :-1, :, 2])
    skate = np.where(both, step, 0).sum(-1) / np.maximum(both.sum(-1), 1)  # [B, T-1]
    pairs = defined[:, :-1] & defined[:, 1:]
    return {
        "penetrate_mm": 1000.0 * _masked_mean(depth, defined),
        "float_mm": 1000.0 * _masked_mean(np.maximum(lowest, 0), defined),
        "skate_mm": 1000.0 * _masked_mean(skate, pairs),
    }


def physdiff_lowest_metrics(lowest, toes, fps: float = 20.0, defined=None, *,
                            contact_m: float = 0.05) -> dict[str, np.ndarray]:  # fmt: skip
    """PhysDiff's Penetrate, Float and Skate (Yuan et al. 2023, Sec. 5) of B motions, in millimetres, from the
    lowest-vertex heights and the toe joints (see the module docstring); Phys-Err is their sum.

    PhysDiff says "foot joints that contact the ground" without a height; a toe joint sits a few centimetres above
    the sole, so contact here is the GMD rule's: below ``contact_m`` (5 cm).

    Args:
        lowest: [B, T] height of each frame's lowest mesh vertex, metres, Y up, floor at y = 0.
        toes: [B, T, 2, 3] left and right toe joints, metres, Y up.
        defined: [B, T] frame mask (None = all frames).

    Returns:
        ``penetrate_mm``, ``float_mm``, ``skate_mm``, ``phys_err_mm``: [B] float64, each the mean of a per-frame
        (per-transition for skate) value over the defined frames.
    """
    _check_fps(fps)
    low = np.nan_to_num(lowest_heights(lowest, defined))  # [B, T], 0 on padding (masked below)
    toes = _check_points(toes, "toes", 2)
    defined = _check_defined(defined, low.shape)
    if toes.shape[:2] != low.shape:
        raise ValueError(f"toes {toes.shape} and lowest heights {low.shape} must cover the same [B, T]")
    h = toes[..., 1]  # [B, T, 2]
    contact = (h[:, :-1] < contact_m) & (h[:, 1:] < contact_m)  # [B, T-1, 2]
    step = np.hypot(toes[:, 1:, :, 0] - toes[:, :-1, :, 0], toes[:, 1:, :, 2] - toes[:, :-1, :, 2])
    skate = np.where(contact, step, 0).sum(-1) / np.maximum(contact.sum(-1), 1)  # [B, T-1]
    out = {
        "penetrate_mm": 1000.0 * _masked_mean(np.maximum(-low, 0), defined),
        "float_mm": 1000.0 * _masked_mean(np.maximum(low, 0), defined),
        "skate_mm": 1000.0 * _masked_mean(skate, defined[:, :-1] & defined[:, 1:]),
    }
    out["phys_err_mm"] = out["penetrate_mm"] + out["float_mm"] + out["skate_mm"]
    return out


def _centred_average(x: np.ndarray, size: int) -> np.ndarray:
    """Centred moving average along axis 1 with zero padding (scipy ``uniform_filter1d(mode='constant')``)."""
    left = size // 2
    pad = [(0, 0)] * x.ndim
    pad[1] = (left, size - 1 - left)
    c = np.cumsum(np.pad(x, pad), axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    return (c[:, size:] - c[:, :-size]) / size


def skating_ratio(toes, fps: float = 20.0, defined=None, *, height_m: float = GMD_HEIGHT_M,
                  speed_ms: float = GMD_SPEED_MS, window: int = GMD_WINDOW) -> np.ndarray:  # fmt: skip
    """GMD foot-skating ratio of B motions: skating transitions / defined transitions.

    Args:
        toes: [B, T, 2, 3] left and right toe joints (SMPL ``left_foot``, ``right_foot``), metres, Y up.
        fps: frame rate (speeds are displacement * fps).
        defined: [B, T] frame mask (None = all frames).

    Returns:
        [B] float64 in [0, 1] (0 for a motion with fewer than two consecutive defined frames).
    """
    fps = _check_fps(fps)
    toes = _check_points(toes, "toes", 2)
    defined = _check_defined(defined, toes.shape[:2])
    pairs = defined[:, :-1] & defined[:, 1:]  # [B, T-1]
    speed = fps * np.hypot(toes[:, 1:, :, 0] - toes[:, :-1, :, 0], toes[:, 1:, :, 2] - toes[:, :-1, :, 2])
    speed = np.where(pairs[..., None], speed, 0.0)  # [B, T-1, 2]
    average = _centred_average(speed, window)
    h = toes[..., 1]
    contact = (h[:, :-1] < height_m) & (h[:, 1:] < height_m)
    skating = (contact & (speed > speed_ms) & (average > speed_ms)).any(-1) & pairs
    return skating.sum(1) / np.maximum(pairs.sum(1), 1)


def lowest_heights(lowest, defined=None) -> np.ndarray:
    """[B, T] height of the lowest vertex of every frame (NaN where the frame is not defined).

    Args:
        lowest: [B, T] heights of each frame's lowest vertex, or the vertices [B, T, V, 3] (metres, Y up).
    """
    lowest = np.asarray(lowest)
    if lowest.ndim == 2:
        if lowest.dtype.kind not in "fiu" or min(lowest.shape) == 0 or not np.isfinite(lowest).all():
            raise ValueError(f"lowest heights must be a finite, non-empty numeric [B, T] array, got {lowest.shape}")
        low = lowest.astype(np.float64)
    else:
        low = _check_points(lowest, "vertices")[..., 1].min(-1)
    defined = _check_defined(defined, low.shape)
    return np.where(defined, low, np.nan)


def longest_run(flags: np.ndarray) -> np.ndarray:
    """[B] length of the longest run of consecutive True values along axis 1 of flags [B, T]."""
    flags = np.asarray(flags, bool)
    idx = np.arange(flags.shape[1])
    last_false = np.maximum.accumulate(np.where(flags, -1, idx), axis=1)
    return (idx - last_false).max(axis=1)


def motion_statistics(lowest, toes, fps: float = 20.0, defined=None, *, float_mm: float) -> dict[str, np.ndarray]:
    """Per-motion statistics the oracles threshold, from lowest heights [B, T] (or vertices) and toes [B, T, 2, 3].

    Returns:
        ``max_depth_mm`` [B]: deepest lowest vertex below the floor over defined frames (negative if it never
        reaches the floor); ``skating_ratio`` [B]; ``longest_flight_s`` [B]: longest run of consecutive defined
        frames whose lowest vertex is higher than ``float_mm``, in seconds.
    """
    fps = _check_fps(fps)
    low = lowest_heights(lowest, defined)  # [B, T], NaN where undefined
    airborne = np.nan_to_num(low, nan=-np.inf) > float_mm / 1000.0
    return {
        "max_depth_mm": -1000.0 * np.nanmin(low, axis=1),
        "skating_ratio": skating_ratio(toes, fps, defined),
        "longest_flight_s": longest_run(airborne) / fps,
    }


def motion_infractions(lowest, toes, fps: float = 20.0, defined=None,
                       thresholds: MotionThresholds | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Infraction flags ``penetration``, ``skating``, ``float``: bool [B] each (True = the motion commits it)."""
    t = thresholds or DEFAULT_THRESHOLDS
    return infractions_of(motion_statistics(lowest, toes, fps, defined, float_mm=t.float_mm), t)


def infractions_of(stats: Mapping[str, np.ndarray], t: MotionThresholds) -> dict[str, np.ndarray]:
    """Infraction flags from :func:`motion_statistics` under thresholds ``t``."""
    return {
        "penetration": stats["max_depth_mm"] > t.penetration_mm,
        "skating": stats["skating_ratio"] > t.skating_ratio,
        "float": stats["longest_flight_s"] > t.max_flight_s + 1e-9,
    }


def _round_up(x: float, step: float) -> float:
    return round(math.ceil(round(x / step, 9)) * step, 6)


def calibrate_thresholds(lowest, toes, fps: float = 20.0, defined=None, *, pass_rate: float = 0.99,
                         float_mm: float = 200.0) -> tuple[MotionThresholds, dict]:  # fmt: skip
    """Thresholds that at least ``pass_rate`` of the given (real) motions pass, per oracle.

    Each threshold is the ``pass_rate`` quantile of its statistic over the motions (an observed value, so the
    rate holds exactly), rounded up to a round number: 1 mm, 0.01 of skating ratio, one frame of flight.
    ``float_mm`` (the airborne height) is a design choice, not fitted (see :data:`DEFAULT_THRESHOLDS`).

    Returns:
        (thresholds, report) where report holds the statistics' maxima and the pass rates (per oracle and all).
    """
    if not 0 < pass_rate <= 1:
        raise ValueError(f"pass_rate must be in (0, 1], got {pass_rate}")
    fps = _check_fps(fps)
    stats = motion_statistics(lowest, toes, fps, defined, float_mm=float_mm)

    def q(name):
        return float(np.quantile(stats[name], pass_rate, method="higher"))

    thresholds = MotionThresholds(
        penetration_mm=max(_round_up(q("max_depth_mm"), 1.0), 0.0),
        skating_ratio=min(_round_up(q("skating_ratio"), 0.01), 1.0),
        float_mm=float(float_mm),
        max_flight_s=_round_up(q("longest_flight_s"), 1.0 / fps),
    )
    flags = infractions_of(stats, thresholds)
    report = {
        "motions": int(len(stats["skating_ratio"])),
        "max": {k: float(np.max(v)) for k, v in stats.items()},
        "pass_rate": {k: float(1 - v.mean()) for k, v in flags.items()},
    }
    report["pass_rate"]["all"] = float(1 - np.logical_or.reduce(list(flags.values())).mean())
    return thresholds, report


# Calibrated with calibrate_thresholds(pass_rate=0.99, float_mm=200) on the 1,368 real *train* windows of
# genneg.domains.motion.calibration.CALIBRATION_WINDOWS (stride 1, uncut, mirrored copies included; 43,896 frames) on
# proxy-smpl-v2; recompute with genneg.domains.motion.calibration.recalibrate(), which also reports the held-out
# windows' margins. Penetration is set by the deepest train frames (29.9 mm), skating by the 1 % most skating
# windows (max 0.103), flight by the jumps. Airborne means 20 cm up: the retargeted cartwheel and crawl keep their
# lowest vertex 3-15 cm above the floor for whole windows (the DeepMimic humanoid's hands reach the floor where the
# proxy's do not).
DEFAULT_THRESHOLDS = MotionThresholds(penetration_mm=30.0, skating_ratio=0.08, float_mm=200.0, max_flight_s=0.4)
CALIBRATION_REPORT = {
    "body": "proxy-smpl", "motions": 1368, "split": "train", "pass_rate": 0.99,
    "max": {"max_depth_mm": 29.946, "skating_ratio": 0.103, "longest_flight_s": 0.4},
    "pass_rate_measured": {"penetration": 1.0, "skating": 0.9956, "float": 1.0, "all": 0.9956},
}  # fmt: skip


def _field(samples, cond, *names):
    for source in (samples, cond):
        if isinstance(source, Mapping):
            for name in names:
                if name in source and source[name] is not None:
                    return source[name]
    return None


def _unpack(samples, cond) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """(lowest heights or vertices, toes, defined, fps) from decoded samples (a mapping); ``defined`` and ``fps``
    fall back to the condition mapping."""
    if not isinstance(samples, Mapping):
        raise TypeError("motion oracles take a mapping with 'lowest_height' (or 'vertices') and 'toes' (or SMPL "
                        f"'joints'), got {type(samples).__name__}")
    lowest = _field(samples, None, "lowest_height", "vertices")
    if lowest is None:
        raise KeyError("motion samples need 'lowest_height' [B, T] or 'vertices' [B, T, V, 3]")
    toes = _field(samples, None, "toes")
    if toes is None:
        joints = _field(samples, None, "joints")
        if joints is None or np.ndim(joints) != 4 or np.shape(joints)[2] != 24:
            raise KeyError("motion samples need 'toes' [B, T, 2, 3] or SMPL 'joints' [B, T, 24, 3]")
        toes = np.asarray(joints)[:, :, list(SMPL_TOE_INDICES)]
    fps = _field(samples, cond, "fps")
    if fps is not None and np.asarray(fps).size != 1:
        raise ValueError(f"motion samples' fps must be one number for the batch, got shape {np.asarray(fps).shape}")
    fps = 20.0 if fps is None else float(np.asarray(fps).reshape(()))
    return lowest, toes, _field(samples, cond, "defined", "mask"), fps


def penetrating_frames(lowest, defined=None, penetration_mm: float = DEFAULT_THRESHOLDS.penetration_mm) -> np.ndarray:
    """bool [B, T]: the defined frames whose lowest vertex is deeper than ``penetration_mm`` below the floor. A motion
    commits ``penetration`` exactly when one of its frames does (its deepest frame decides)."""
    low = lowest_heights(lowest, defined)
    return np.nan_to_num(-1000.0 * low, nan=-np.inf) > penetration_mm


def _single(reason: str, thresholds: MotionThresholds | None):
    def valid(samples, cond=None):
        lowest, toes, defined, fps = _unpack(samples, cond)
        bad = motion_infractions(lowest, toes, fps, defined, thresholds)[reason]
        if reason != "penetration":
            return ~bad
        # per-frame flags (the elements of a motion) for a per-frame penetration classifier
        t = thresholds or DEFAULT_THRESHOLDS
        frames = penetrating_frames(lowest, defined, t.penetration_mm)
        exists = np.ones(frames.shape, bool) if defined is None else np.asarray(defined, bool)
        return OracleResult(~bad, {reason: bad}, elements={reason: frames}, element_defined=exists)

    return valid


def motion_oracle(thresholds: MotionThresholds | None = None, reasons=("penetration", "skating", "float")) -> AllOf:
    """The motion oracle: one FunctionOracle per reason, combined (valid = no infraction).

    Its name is "motion", or with thresholds other than the defaults "motion[penetration_mm=300.0, ...]" (the
    fields that differ), so labels cached under one setting are never read back under another."""
    unknown = set(reasons) - {"penetration", "skating", "float"}
    if unknown or not reasons:
        raise ValueError(f"unknown motion oracle reasons {sorted(unknown)}; use penetration, skating, float")
    parts = [FunctionOracle(r, _single(r, thresholds)) for r in reasons]
    t = thresholds or DEFAULT_THRESHOLDS
    changed = [f"{k}={getattr(t, k)}" for k in MotionThresholds.__dataclass_fields__
               if getattr(t, k) != getattr(DEFAULT_THRESHOLDS, k)]  # fmt: skip
    name = "motion" if list(reasons) == ["penetration", "skating", "float"] else "motion:" + "+".join(reasons)
    return AllOf(parts, name=name + (f"[{', '.join(changed)}]" if changed else ""))


for _reason in ("penetration", "skating", "float"):
    register_oracle(f"motion:{_reason}", lambda r=_reason: FunctionOracle(r, _single(r, None)), overwrite=True)
register_oracle("motion:physical", motion_oracle, overwrite=True)
