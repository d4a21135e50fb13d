"""Oracle inputs from real motion, and the calibration of the motion oracles' thresholds on them."""

from __future__ import annotations

import numpy as np

from .data.representation import decode
from .data.windows import WindowConfig, build_windows
from .skeleton import TOE_JOINTS, joint_index

__all__ = ["pose_features", "real_samples", "recalibrate"]


def pose_features(features: np.ndarray, mask: np.ndarray, body, fps: float = 20.0) -> dict[str, np.ndarray]:
    """Poses motion features with a body, for the oracles.

    Args:
        features: [B, T, 147] (``representation.encode`` layout).
        mask: [B, T] bool, True on real frames (others are not posed: their vertices are zeros).
        body: a ``body.Body``.

    Returns:
        ``vertices`` [B, T, V, 3], ``joints`` [B, T, 24, 3], ``toes`` [B, T, 2, 3] (float32), ``defined`` [B, T],
        ``fps``, and ``body`` (its name, e.g. "proxy-smpl").
    """
    features, mask = np.asarray(features), np.asarray(mask, bool)
    if features.ndim != 3 or mask.shape != features.shape[:2]:
        raise ValueError(f"expected features [B, T, F] and mask [B, T], got {features.shape}, {mask.shape}")
    b, t = mask.shape
    dec = decode(features[mask][:, None])  # only real frames: [n, 1, ...]
    out = body.forward(dec["global_orient"][:, 0], dec["body_pose"][:, 0], dec["root"][:, 0] - body.rest_joints[0])
    vertices = np.zeros((b, t, body.num_vertices, 3), np.float32)
    joints = np.zeros((b, t) + out.joints.shape[1:], np.float32)
    vertices[mask], joints[mask] = out.vertices, out.joints
    toes = joints[:, :, [joint_index(n) for n in TOE_JOINTS]]
    return {"vertices": vertices, "joints": joints, "toes": toes, "defined": mask, "fps": np.array(fps),
            "body": np.array(body.name)}  # fmt: skip


def real_samples(cfg: WindowConfig = WindowConfig(), body=None, split: str | None = None) -> dict[str, np.ndarray]:
    """Every real window (or one split's) posed with ``body`` (default: the configured/proxy body)."""
    if body is None:
        from .body import load_body

        body = load_body()
    data = build_windows(cfg, body)
    keep = np.ones(len(data["split"]), bool) if split is None else data["split"] == split
    samples = pose_features(data["features"][keep], data["mask"][keep], body, cfg.fps)
    samples["clip"] = data["clip"][keep]
    return samples


def recalibrate(cfg: WindowConfig = WindowConfig(), body=None, pass_rate: float = 0.99, float_mm: float = 30.0):
    """Recomputes the motion oracles' thresholds on real windows: (MotionThresholds, report dict)."""
    from oracles.motion import calibrate_thresholds

    s = real_samples(cfg, body)
    thresholds, report = calibrate_thresholds(s["vertices"], s["toes"], cfg.fps, s["defined"], pass_rate=pass_rate,
                                              float_mm=float_mm)  # fmt: skip
    report["body"] = str(s["body"])
    return thresholds, report
