"""Motion features: canonical root translation + 24 joint rotations in 6D, and their inverse.

A frame is 3 + 24 * 6 = 147 numbers: the pelvis position (metres, Y up; the window's first frame at x = z = 0 and
facing +Z) then ``matrix_to_6d`` of every joint's local rotation (the pelvis's is global), in ``JOINT_NAMES`` order.
"""

from __future__ import annotations

import numpy as np

from ..rotations import matrix_to_6d, matrix_to_axis_angle, rot_y, sixd_to_matrix
from ..skeleton import NUM_JOINTS, mirror_permutation

__all__ = ["FRAME_FEATURES", "ROOT_FEATURES", "encode", "decode", "heading", "canonicalize", "mirror"]

ROOT_FEATURES = 3
FRAME_FEATURES = ROOT_FEATURES + NUM_JOINTS * 6
_MIRROR = np.diag([-1.0, 1.0, 1.0])


def _check_motion(root: np.ndarray, local: np.ndarray) -> None:
    if root.ndim < 2 or root.shape[-1] != 3 or local.shape != root.shape[:-1] + (NUM_JOINTS, 3, 3):
        raise ValueError(f"expected root [..., T, 3] and rotations [..., T, 24, 3, 3], got {root.shape}, {local.shape}")
    if not (np.isfinite(root).all() and np.isfinite(local).all()):
        raise ValueError("motion contains NaN or infinite values")


def encode(root: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Features [..., T, 147] from pelvis positions [..., T, 3] and local rotations [..., T, 24, 3, 3]."""
    _check_motion(root, local)
    six = matrix_to_6d(local).reshape(local.shape[:-3] + (NUM_JOINTS * 6,))
    return np.concatenate([root, six], axis=-1).astype(np.float32)


def decode(features: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode`, for any (e.g. generated) features [..., T, 147].

    Returns:
        ``root`` [..., T, 3], ``rotations`` [..., T, 24, 3, 3], and for smplx ``global_orient`` [..., T, 3] and
        ``body_pose`` [..., T, 69] (axis-angle).
    """
    features = np.asarray(features, float)
    if features.ndim < 2 or features.shape[-1] != FRAME_FEATURES:
        raise ValueError(f"motion features must have shape [..., T, {FRAME_FEATURES}], got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("motion features contain NaN or infinite values")
    rot = sixd_to_matrix(features[..., ROOT_FEATURES:].reshape(features.shape[:-1] + (NUM_JOINTS, 6)))
    aa = matrix_to_axis_angle(rot)
    return {
        "root": features[..., :ROOT_FEATURES],
        "rotations": rot,
        "global_orient": aa[..., 0, :],
        "body_pose": aa[..., 1:, :].reshape(aa.shape[:-2] + ((NUM_JOINTS - 1) * 3,)),
    }


def heading(pelvis_rot: np.ndarray) -> np.ndarray:
    """Yaw [...] (radians about +Y, 0 = facing +Z) of pelvis rotations [..., 3, 3].

    Uses the pelvis's forward axis unless it points mostly up or down (lying on the back, mid-flip); then the
    forward direction implied by its left axis, which is horizontal in those poses.
    """
    fwd = pelvis_rot[..., :, 2]
    left = pelvis_rot[..., :, 0]
    alt = np.stack([-left[..., 2], np.zeros_like(left[..., 0]), left[..., 0]], -1)  # left x up
    use_fwd = np.hypot(fwd[..., 0], fwd[..., 2]) > 0.5
    d = np.where(use_fwd[..., None], fwd, alt)
    return np.arctan2(d[..., 0], d[..., 2])


def canonicalize(root: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moves a motion [T] so its first frame's pelvis is at x = z = 0 facing +Z (heights unchanged)."""
    _check_motion(root, local)
    turn = rot_y(-heading(local[0, 0]))
    root = (root - np.array([root[0, 0], 0.0, root[0, 2]])) @ turn.T
    local = local.copy()
    local[:, 0] = turn @ local[:, 0]
    return root, local


def mirror(root: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-right mirror image (x -> -x, left and right joints swapped) of a motion [..., T]."""
    _check_motion(root, local)
    return root * np.array([-1.0, 1.0, 1.0]), _MIRROR @ local[..., mirror_permutation(), :, :] @ _MIRROR
