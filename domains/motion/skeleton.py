"""SMPL's 24-joint kinematic tree: names, parents, approximate neutral rest joints, left/right pairs.

Coordinates follow SMPL: metres, +Y up, +Z forward (the body faces +Z), +X is the body's left.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "JOINT_NAMES",
    "PARENT_NAMES",
    "PARENTS",
    "NUM_JOINTS",
    "REST_JOINTS",
    "TOE_JOINTS",
    "joint_index",
    "mirror_permutation",
]

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)  # fmt: skip
NUM_JOINTS = len(JOINT_NAMES)

PARENT_NAMES: dict[str, str | None] = {
    "pelvis": None, "left_hip": "pelvis", "right_hip": "pelvis", "spine1": "pelvis",
    "left_knee": "left_hip", "right_knee": "right_hip", "spine2": "spine1", "left_ankle": "left_knee",
    "right_ankle": "right_knee", "spine3": "spine2", "left_foot": "left_ankle", "right_foot": "right_ankle",
    "neck": "spine3", "left_collar": "spine3", "right_collar": "spine3", "head": "neck",
    "left_shoulder": "left_collar", "right_shoulder": "right_collar", "left_elbow": "left_shoulder",
    "right_elbow": "right_shoulder", "left_wrist": "left_elbow", "right_wrist": "right_elbow",
    "left_hand": "left_wrist", "right_hand": "right_wrist",
}  # fmt: skip


def joint_index(name: str) -> int:
    """Index of a SMPL joint by name (raises ValueError naming the known joints)."""
    try:
        return JOINT_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown SMPL joint {name!r}; known: {', '.join(JOINT_NAMES)}") from None


PARENTS = np.array([-1 if PARENT_NAMES[n] is None else joint_index(PARENT_NAMES[n]) for n in JOINT_NAMES])

# Approximate SMPL neutral rest joints (metres; Y up, +Z forward, +X the body's left), symmetric by construction:
# pelvis, legs, neck, head and arms rounded from the neutral SMPL model, the spine and collar joints placed by hand
# between their neighbours. The exact values only shape the proxy body.
_REST_CENTRE = {
    "pelvis": (0.0, -0.223, 0.028), "spine1": (0.0, -0.103, 0.012), "spine2": (0.0, 0.020, 0.003),
    "spine3": (0.0, 0.071, 0.029), "neck": (0.0, 0.289, -0.012), "head": (0.0, 0.380, 0.044),
}  # fmt: skip
_REST_SIDE = {  # left side (+X); the right side mirrors x
    "hip": (0.070, -0.314, 0.024), "knee": (0.103, -0.680, 0.017), "ankle": (0.089, -1.075, -0.026),
    "foot": (0.115, -1.130, 0.095), "collar": (0.080, 0.197, -0.003), "shoulder": (0.172, 0.226, -0.019),
    "elbow": (0.437, 0.211, -0.044), "wrist": (0.700, 0.222, -0.036), "hand": (0.787, 0.213, -0.046),
}  # fmt: skip


def _rest_joints() -> np.ndarray:
    out = np.zeros((NUM_JOINTS, 3))
    for i, name in enumerate(JOINT_NAMES):
        if name in _REST_CENTRE:
            out[i] = _REST_CENTRE[name]
        else:
            side, part = name.split("_", 1)
            x, y, z = _REST_SIDE[part]
            out[i] = (x if side == "left" else -x, y, z)
    return out


REST_JOINTS = _rest_joints()  # [24, 3]
TOE_JOINTS = ("left_foot", "right_foot")  # SMPL 10, 11: the "toe" joints of the GMD skating rule


def mirror_permutation() -> np.ndarray:
    """[24] index map that swaps every left joint with its right twin (identity on the centre line)."""
    perm = []
    for name in JOINT_NAMES:
        if name.startswith("left_"):
            name = "right_" + name[5:]
        elif name.startswith("right_"):
            name = "left_" + name[6:]
        perm.append(joint_index(name))
    return np.array(perm)
