"""Rotation helpers on numpy arrays (batched over leading axes): quaternions, axis-angle, 6D, matrices.

Quaternions are (w, x, y, z) as in DeepMimic. The 6D representation is the first two columns of the rotation
matrix (Zhou et al. 2019, "On the continuity of rotation representations").
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

__all__ = [
    "quat_to_matrix",
    "normalize_quat",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_6d",
    "sixd_to_matrix",
    "rotation_between",
    "rot_y",
    "slerp_quats",
    "slerp_matrices",
]


def normalize_quat(q: np.ndarray, what: str = "quaternion") -> np.ndarray:
    """Unit quaternions [..., 4]; raises ValueError on (near) zero norms or non-finite values."""
    q = np.asarray(q, float)
    if q.shape[-1] != 4:
        raise ValueError(f"{what} must have 4 components on its last axis, got shape {q.shape}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.isfinite(q).all() or (norm < 1e-6).any():
        raise ValueError(f"{what} contains a zero-length or non-finite quaternion")
    return q / norm


def _wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(w, x, y, z) quaternions [..., 4], normalised first -> rotation matrices [..., 3, 3]."""
    q = normalize_quat(q)
    return Rotation.from_quat(_wxyz_to_xyzw(q).reshape(-1, 4)).as_matrix().reshape(q.shape[:-1] + (3, 3))


def axis_angle_to_matrix(v: np.ndarray) -> np.ndarray:
    """Axis-angle vectors [..., 3] (radians) -> rotation matrices [..., 3, 3]."""
    v = np.asarray(v, float)
    return Rotation.from_rotvec(v.reshape(-1, 3)).as_matrix().reshape(v.shape[:-1] + (3, 3))


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> axis-angle vectors [..., 3] with angle in [0, pi]."""
    m = np.asarray(m, float)
    return Rotation.from_matrix(m.reshape(-1, 3, 3)).as_rotvec().reshape(m.shape[:-2] + (3,))


def matrix_to_6d(m: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> 6D features [..., 6] (first column, then second column)."""
    m = np.asarray(m)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def sixd_to_matrix(d6: np.ndarray) -> np.ndarray:
    """6D features [..., 6] -> rotation matrices [..., 3, 3] by Gram-Schmidt (any non-degenerate input)."""
    d6 = np.asarray(d6, float)
    if d6.shape[-1] != 6:
        raise ValueError(f"6D rotations must have 6 features on the last axis, got shape {d6.shape}")
    a, b = d6[..., :3], d6[..., 3:]
    x = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-8)
    b = b - (x * b).sum(-1, keepdims=True) * x
    y = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-8)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation [3, 3] taking direction a [3] onto direction b [3]."""
    a = np.asarray(a, float) / np.linalg.norm(a)
    b = np.asarray(b, float) / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return axis_angle_to_matrix(np.pi * perp / np.linalg.norm(perp))
    return axis_angle_to_matrix(axis / s * np.arctan2(s, c))


def rot_y(angle: np.ndarray | float) -> np.ndarray:
    """Rotations about +Y by ``angle`` radians: [..., 3, 3]."""
    angle = np.asarray(angle, float)
    c, s, z, o = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def slerp_quats(times: np.ndarray, q: np.ndarray, new_times: np.ndarray) -> np.ndarray:
    """Spherical interpolation of (w, x, y, z) quaternions [N, 4] at ``times`` [N] onto ``new_times`` [M]."""
    rot = Rotation.from_quat(_wxyz_to_xyzw(normalize_quat(q)))
    out = Slerp(times, rot)(new_times).as_quat()
    return np.concatenate([out[..., 3:], out[..., :3]], axis=-1)


def slerp_matrices(times: np.ndarray, m: np.ndarray, new_times: np.ndarray) -> np.ndarray:
    """Spherical interpolation of rotation matrices [N, 3, 3] at ``times`` [N] onto ``new_times`` [M]."""
    return Slerp(times, Rotation.from_matrix(m))(new_times).as_matrix()
