"""Oracle inputs from motion features, and the calibration of the motion oracles' thresholds on real windows.

Thresholds are fitted on the *training* windows only; the held-out (val and test) windows are then measured against
them, each with its margin per reason, so a held-out window never sets a threshold.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .data.representation import ROOT_FEATURES, decode
from .data.windows import WindowConfig, build_windows
from .kinematics import sixd_to_matrix
from .skeleton import NUM_JOINTS, TOE_JOINTS, joint_index

__all__ = ["CALIBRATION_WINDOWS", "oracle_inputs", "pose_features", "real_samples", "heldout_margins", "recalibrate"]

# The windows the thresholds are fitted on: every train window at stride 1, uncut (the presets' data).
CALIBRATION_WINDOWS = WindowConfig(stride=1, prefix_fraction=0.0)
TOE_INDICES = [joint_index(n) for n in TOE_JOINTS]
_CHUNK = 4096  # frames posed at once


@torch.no_grad()
def oracle_inputs(skinned, features: torch.Tensor, defined: np.ndarray) -> dict[str, np.ndarray]:
    """What the motion oracles read, for physical features [B, T, 147] posed on ``skinned`` (a SkinnedBody).

    Returns:
        ``lowest_height`` [B, T] (the whole mesh's lowest vertex, metres), ``joints`` [B, T, 24, 3], ``toes``
        [B, T, 2, 3] (``TOE_JOINTS``), ``defined`` [B, T]; zeros on padded frames.
    """
    defined = np.asarray(defined, bool)
    flat = features.detach().cpu().float()[torch.as_tensor(defined)]  # [n, 147] defined frames only
    lowest, joints = [], []
    for s in range(0, flat.shape[0], _CHUNK):
        part = flat[s : s + _CHUNK]
        rot = sixd_to_matrix(part[:, ROOT_FEATURES:].unflatten(-1, (NUM_JOINTS, 6)))
        lowest.append(skinned.lowest_heights(rot, part[:, :ROOT_FEATURES]))
        joints.append(skinned.joints(rot, part[:, :ROOT_FEATURES]))
    b, t = defined.shape
    out_low, out_j = np.zeros((b, t), np.float32), np.zeros((b, t, NUM_JOINTS, 3), np.float32)
    if flat.shape[0]:
        out_low[defined], out_j[defined] = torch.cat(lowest).numpy(), torch.cat(joints).numpy()
    return {"lowest_height": out_low, "joints": out_j, "toes": out_j[:, :, TOE_INDICES], "defined": defined}


def pose_features(features: np.ndarray, mask: np.ndarray, body, fps: float = 20.0) -> dict[str, np.ndarray]:
    """Poses motion features with smplx (the slow reference for the torch kinematics): full meshes.

    Returns:
        ``vertices`` [B, T, V, 3], ``joints`` [B, T, 24, 3], ``toes`` [B, T, 2, 3] (float32), ``defined`` [B, T],
        ``fps``, and ``body`` (its name, e.g. "proxy-smpl"); padded frames are zeros.
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
    return {"vertices": vertices, "joints": joints, "toes": joints[:, :, TOE_INDICES], "defined": mask,
            "fps": np.array(fps), "body": np.array(body.name)}  # fmt: skip


def real_samples(cfg: WindowConfig = CALIBRATION_WINDOWS, body=None, split: str | None = None) -> dict[str, np.ndarray]:
    """Every real window (or one split's) as oracle inputs, with its ``clip``, ``split`` and ``start``."""
    from .kinematics import SkinnedBody

    if body is None:
        from .body import load_body

        body = load_body()
    data = build_windows(cfg, body)
    keep = np.ones(len(data["split"]), bool) if split is None else data["split"] == split
    samples = oracle_inputs(SkinnedBody(body), torch.as_tensor(data["features"][keep]), data["mask"][keep])
    samples.update(clip=data["clip"][keep], split=data["split"][keep], start=data["start"][keep])
    return samples


def heldout_margins(samples: dict, thresholds, fps: float = 20.0) -> dict[str, np.ndarray]:
    """Margin of every window to each threshold (positive = passes): ``penetration_mm``, ``skating_ratio``,
    ``flight_s``, [N] each."""
    from genneg.oracles.motion import motion_statistics

    s = motion_statistics(samples["lowest_height"], samples["toes"], fps, samples["defined"],
                          float_mm=thresholds.float_mm)  # fmt: skip
    return {"penetration_mm": thresholds.penetration_mm - s["max_depth_mm"],
            "skating_ratio": thresholds.skating_ratio - s["skating_ratio"],
            "flight_s": thresholds.max_flight_s - s["longest_flight_s"]}  # fmt: skip


def recalibrate(cfg: WindowConfig = CALIBRATION_WINDOWS, body=None, pass_rate: float = 0.99, float_mm: float = 200.0):
    """Fits the motion oracles' thresholds on the train windows of ``cfg`` (uncut) and measures the held-out ones.

    Returns:
        (MotionThresholds, report): the calibration report of ``genneg.oracles.motion.calibrate_thresholds`` plus
        ``heldout``: the val/test windows' ``clip``, ``split``, ``start`` and margins (``heldout_margins``).
    """
    from genneg.oracles.motion import calibrate_thresholds

    s = real_samples(replace(cfg, prefix_fraction=0.0), body)
    train = s["split"] == "train"
    thresholds, report = calibrate_thresholds(s["lowest_height"][train], s["toes"][train], cfg.fps,
                                              s["defined"][train], pass_rate=pass_rate, float_mm=float_mm)  # fmt: skip
    held = {k: v[~train] for k, v in s.items()}
    report["heldout"] = {"clip": held["clip"], "split": held["split"], "start": held["start"],
                         **heldout_margins(held, thresholds, cfg.fps)}  # fmt: skip
    return thresholds, report
