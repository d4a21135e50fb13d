"""AMASS motion files (``.npz`` with ``poses``, ``trans``, ``betas``, ``mocap_framerate``; Z up) as SMPL-24 motion.

AMASS stores SMPL-H (156 pose numbers: 52 joints) or SMPL-X (165) parameters; the first 22 joints are SMPL's
body joints, SMPL's two hand joints get the identity. A 72-number pose is plain SMPL. The world is rotated from
AMASS's Z up to SMPL's Y up (x, y, z) -> (x, z, -y).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genneg.checkpoint import read_npz

from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle, slerp_matrices
from ..skeleton import NUM_JOINTS

__all__ = ["Z_UP_TO_Y_UP", "AmassMotion", "load_amass", "to_smplx_inputs"]

Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # Rx(-90 deg)
_BODY_JOINTS_SMPLH = 22
_POSE_WIDTHS = {72: NUM_JOINTS, 156: _BODY_JOINTS_SMPLH, 165: _BODY_JOINTS_SMPLH}


@dataclass(frozen=True)
class AmassMotion:
    """An AMASS sequence in SMPL's frame at ``fps``.

    Attributes:
        root: [N, 3] pelvis positions (metres, Y up): ``Z_UP_TO_Y_UP @ (trans + pelvis_rest)``.
        local: [N, 24, 3, 3] local joint rotations (pelvis: global, Y up).
        betas: [S] shape coefficients as stored.
        fps: frame rate of ``root`` / ``local``.
        gender: as stored ("neutral" if absent).
    """

    root: np.ndarray
    local: np.ndarray
    betas: np.ndarray
    fps: float
    gender: str = "neutral"

    def __post_init__(self):
        n = self.root.shape[0]
        if self.root.shape != (n, 3) or self.local.shape != (n, NUM_JOINTS, 3, 3):
            raise ValueError(f"inconsistent AMASS motion shapes {self.root.shape}, {self.local.shape}")


def _read(path: Path) -> dict[str, np.ndarray]:
    data = read_npz(path, "AMASS", ("poses", "trans", "mocap_framerate"))
    if any(data[k].dtype.kind not in "fiu" for k in ("poses", "trans", "mocap_framerate")):
        raise ValueError(f"{path}: poses, trans and mocap_framerate must be numeric arrays")
    poses, trans = np.asarray(data["poses"], float), np.asarray(data["trans"], float)
    if poses.ndim != 2 or poses.shape[1] not in _POSE_WIDTHS:
        raise ValueError(f"{path}: poses must be [N, 72 | 156 | 165], got {poses.shape}")
    if trans.shape != (poses.shape[0], 3) or poses.shape[0] < 2:
        raise ValueError(f"{path}: trans must be [N, 3] with N = {poses.shape[0]} >= 2 frames, got {trans.shape}")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all()):
        raise ValueError(f"{path}: poses or trans contain NaN or infinite values")
    if data["mocap_framerate"].size != 1 or not 0 < float(data["mocap_framerate"].reshape(())) < np.inf:
        raise ValueError(f"{path}: mocap_framerate must be one positive number, got {data['mocap_framerate']}")
    return data


def _resample(times, root, local, new_times):
    root = np.stack([np.interp(new_times, times, root[:, k]) for k in range(3)], -1)
    local = np.stack([slerp_matrices(times, local[:, j], new_times) for j in range(NUM_JOINTS)], 1)
    return root, local


def load_amass(path: str | Path, fps: float = 20.0, pelvis_rest: np.ndarray | None = None) -> AmassMotion:
    """Reads an AMASS ``.npz`` and resamples it to ``fps``.

    Args:
        pelvis_rest: [3] the body's rest pelvis joint (``Body.rest_joints[0]``), which smplx rotates about
            before adding ``trans``; zeros if None (then ``root`` is ``trans`` in the Y-up frame).
    """
    if not 0 < fps < np.inf:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    data = _read(path)
    poses = np.asarray(data["poses"], float)
    n, used = poses.shape[0], _POSE_WIDTHS[poses.shape[1]]
    local = np.repeat(np.eye(3)[None, None], n, 0).repeat(NUM_JOINTS, 1)
    local[:, :used] = axis_angle_to_matrix(poses[:, : used * 3].reshape(n, used, 3))
    local[:, 0] = Z_UP_TO_Y_UP @ local[:, 0]
    offset = np.zeros(3) if pelvis_rest is None else np.asarray(pelvis_rest, float)
    root = (np.asarray(data["trans"], float) + offset) @ Z_UP_TO_Y_UP.T
    src_fps = float(data["mocap_framerate"].reshape(()))
    times = np.arange(n) / src_fps
    # arange can overshoot the last time by an ulp (e.g. 12 * 0.05 > 0.6), which Slerp rejects: clip it
    new_times = np.minimum(np.arange(0.0, times[-1] + 1e-9, 1.0 / fps), times[-1])
    root, local = _resample(times, root, local, new_times)
    gender = str(data["gender"]) if "gender" in data else "neutral"
    return AmassMotion(root, local, np.asarray(data.get("betas", np.zeros(0)), float), fps, gender)


def to_smplx_inputs(motion: AmassMotion, pelvis_rest: np.ndarray) -> dict[str, np.ndarray]:
    """``global_orient`` [N, 3], ``body_pose`` [N, 69], ``transl`` [N, 3] for ``Body.forward``."""
    aa = matrix_to_axis_angle(motion.local)
    return {"global_orient": aa[:, 0], "body_pose": aa[:, 1:].reshape(len(aa), -1),
            "transl": motion.root - np.asarray(pelvis_rest, float)}  # fmt: skip
