"""DeepMimic humanoid clips (shipped inside pybullet) and their retargeting onto SMPL-24.

A clip is JSON ``{"Loop": ..., "Frames": [[44 numbers], ...]}``; a frame holds its duration, the root position
(metres, Y up), the root quaternion (w, x, y, z), local quaternions of chest, neck, hips, ankles and shoulders, and
knee/elbow angles about local z. The humanoid (humanoid.urdf scaled by 0.25) faces +X with its right along +Z.

Retargeting: forward kinematics on the DeepMimic tree, axis change C = Ry(-90 deg) to SMPL's frame (faces +Z,
left +X), every SMPL joint takes the global rotation of a DeepMimic joint (``SMPL_SOURCE``) times a constant rest
correction that turns SMPL's rest bone onto DeepMimic's, so that the bone directions match, local =
parent_global^T global, and the root translation is scaled by the leg-length ratio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..rotations import normalize_quat, quat_to_matrix, rot_y, rotation_between, slerp_quats
from ..skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, joint_index

__all__ = ["DM_JOINTS", "Clip", "default_clip_paths", "read_clip", "resample", "forward_kinematics",
           "dm_rest_positions", "rest_corrections", "retarget_to_smpl", "AXIS_CHANGE"]  # fmt: skip

DM_JOINTS = ("root", "chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder", "right_elbow",
             "right_wrist", "left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow",
             "left_wrist")  # fmt: skip
DM_PARENTS = {"root": None, "chest": "root", "neck": "chest", "right_hip": "root", "right_knee": "right_hip",
              "right_ankle": "right_knee", "right_shoulder": "chest", "right_elbow": "right_shoulder",
              "right_wrist": "right_elbow", "left_hip": "root", "left_knee": "left_hip",
              "left_ankle": "left_knee", "left_shoulder": "chest", "left_elbow": "left_shoulder",
              "left_wrist": "left_elbow"}  # fmt: skip
_S = 0.25  # humanoid.urdf is scaled by 0.25 in DeepMimic
DM_OFFSETS = {  # joint origin in its parent's frame at rest (humanoid.urdf * 0.25)
    "root": (0, 0, 0), "chest": (0, 0.944604 * _S, 0), "neck": (0, 0.895576 * _S, 0),
    "right_hip": (0, 0, 0.339548 * _S), "right_knee": (0, -1.686184 * _S, 0), "right_ankle": (0, -1.639480 * _S, 0),
    "right_shoulder": (-0.0962 * _S, 0.974 * _S, 0.73244 * _S), "right_elbow": (0, -1.099152 * _S, 0),
    "right_wrist": (0, -1.035788 * _S, 0), "left_hip": (0, 0, -0.339548 * _S),
    "left_knee": (0, -1.686184 * _S, 0), "left_ankle": (0, -1.639480 * _S, 0),
    "left_shoulder": (-0.0962 * _S, 0.974 * _S, -0.73244 * _S), "left_elbow": (0, -1.099152 * _S, 0),
    "left_wrist": (0, -1.035788 * _S, 0),
}  # fmt: skip
# Frame layout after [duration, root xyz, root quat]: (joint, kind, first column). Wrists are fixed joints.
_LAYOUT = (("chest", "quat", 8), ("neck", "quat", 12), ("right_hip", "quat", 16), ("right_knee", "angle", 20),
           ("right_ankle", "quat", 21), ("right_shoulder", "quat", 25), ("right_elbow", "angle", 29),
           ("left_hip", "quat", 30), ("left_knee", "angle", 34), ("left_ankle", "quat", 35),
           ("left_shoulder", "quat", 39), ("left_elbow", "angle", 43))  # fmt: skip
FRAME_WIDTH = 44
AXIS_CHANGE = rot_y(-np.pi / 2)  # DeepMimic (faces +X, right +Z) -> SMPL (faces +Z, left +X)

# SMPL joint <- DeepMimic joint whose global rotation drives it.
SMPL_SOURCE = {"pelvis": "root", "spine1": "root", "spine2": "chest", "spine3": "chest", "left_collar": "chest",
               "right_collar": "chest", "neck": "neck", "head": "neck", "left_foot": "left_ankle",
               "right_foot": "right_ankle", "left_hand": "left_wrist", "right_hand": "right_wrist"}  # fmt: skip
for _n in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"):
    for _side in ("left", "right"):
        SMPL_SOURCE[f"{_side}_{_n}"] = f"{_side}_{_n}"
# Rest correction per SMPL joint: (SMPL child whose bone is aligned, DeepMimic bone (from, to) or "up"), or the
# SMPL joint whose correction it copies. Pelvis, ankles and feet keep SMPL's rest orientation (upright, flat).
BONE_MATCH = {"spine1": ("spine2", ("root", "chest")), "spine2": ("spine3", ("chest", "neck")),
              "spine3": ("neck", ("chest", "neck")), "neck": ("head", "up")}  # fmt: skip
for _side in ("left", "right"):
    BONE_MATCH |= {f"{_side}_hip": (f"{_side}_knee", (f"{_side}_hip", f"{_side}_knee")),
                   f"{_side}_knee": (f"{_side}_ankle", (f"{_side}_knee", f"{_side}_ankle")),
                   f"{_side}_shoulder": (f"{_side}_elbow", (f"{_side}_shoulder", f"{_side}_elbow")),
                   f"{_side}_elbow": (f"{_side}_wrist", (f"{_side}_elbow", f"{_side}_wrist")),
                   f"{_side}_wrist": (f"{_side}_hand", (f"{_side}_elbow", f"{_side}_wrist"))}  # fmt: skip
COPY_CORRECTION = {"head": "neck", "left_collar": "spine3", "right_collar": "spine3", "left_hand": "left_wrist",
                   "right_hand": "right_wrist"}  # fmt: skip


@dataclass(frozen=True)
class Clip:
    """A DeepMimic clip with N frames.

    Attributes:
        name: clip name ("walk" for humanoid3d_walk.txt).
        times: [N] seconds from the first frame, increasing.
        root_pos: [N, 3] root position, DeepMimic frame (Y up), metres.
        local_quats: [N, 15, 4] unit (w, x, y, z) local rotation of every ``DM_JOINTS`` joint (root: global).
        loop: True if the clip is meant to wrap ("Loop": "wrap").
    """

    name: str
    times: np.ndarray
    root_pos: np.ndarray
    local_quats: np.ndarray
    loop: bool = False

    def __post_init__(self):
        n = self.times.shape[0]
        if n < 2 or self.root_pos.shape != (n, 3) or self.local_quats.shape != (n, len(DM_JOINTS), 4):
            raise ValueError(f"clip {self.name!r}: inconsistent shapes {self.times.shape}, {self.root_pos.shape}, "
                             f"{self.local_quats.shape} (need >= 2 frames)")  # fmt: skip
        if not (np.diff(self.times) > 0).all():
            raise ValueError(f"clip {self.name!r}: frame times must increase")

    @property
    def duration(self) -> float:
        return float(self.times[-1])


def default_clip_paths() -> list[Path]:
    """The 15 ``humanoid3d_*.txt`` clips shipped in pybullet_data (sorted by name)."""
    try:
        import pybullet_data
    except ImportError as e:
        raise ImportError(f"the DeepMimic clips come with pybullet: pip install 'genneg[motion]' ({e})") from e
    paths = sorted((Path(pybullet_data.getDataPath()) / "data" / "motions").glob("humanoid3d_*.txt"))
    if not paths:
        raise FileNotFoundError(f"no humanoid3d_*.txt clips under {pybullet_data.getDataPath()}/data/motions")
    return paths


def _clip_name(path: Path) -> str:
    return path.stem.removeprefix("humanoid3d_")


def _frames_array(path: Path) -> tuple[np.ndarray, bool]:
    if not path.is_file():
        raise FileNotFoundError(f"DeepMimic clip not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a DeepMimic clip (invalid JSON, truncated file?): {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("Frames"), list):
        raise ValueError(f"{path}: not a DeepMimic clip (expected a JSON object with a 'Frames' list)")
    rows = doc["Frames"]
    if len(rows) < 2 or any(not isinstance(r, list) or len(r) != FRAME_WIDTH for r in rows):
        raise ValueError(f"{path}: a DeepMimic clip needs >= 2 frames of {FRAME_WIDTH} numbers each")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for r in rows for v in r):
        raise ValueError(f"{path}: frames must hold numbers only (found strings, booleans or nested values)")
    frames = np.asarray(rows, dtype=float)
    if not np.isfinite(frames).all():
        raise ValueError(f"{path}: frames contain NaN or infinite values")
    return frames, doc.get("Loop") == "wrap"


def read_clip(path: str | Path) -> Clip:
    """Parses a DeepMimic clip; quaternions are normalised (some clips store non-unit ones)."""
    path = Path(path)
    frames, loop = _frames_array(path)
    durations = frames[:-1, 0]
    if (durations <= 0).any():
        raise ValueError(f"{path}: every frame but the last needs a positive duration (column 0)")
    quats = np.zeros((len(frames), len(DM_JOINTS), 4))
    quats[..., 0] = 1.0
    quats[:, 0] = frames[:, 4:8]
    for joint, kind, col in _LAYOUT:
        j = DM_JOINTS.index(joint)
        if kind == "quat":
            quats[:, j] = frames[:, col : col + 4]
        else:  # revolute about local z
            quats[:, j, 0], quats[:, j, 3] = np.cos(frames[:, col] / 2), np.sin(frames[:, col] / 2)
    quats = normalize_quat(quats, f"{path}: quaternion")
    times = np.concatenate([[0.0], np.cumsum(durations)])
    return Clip(_clip_name(path), times, frames[:, 1:4].copy(), quats, loop)


def resample(clip: Clip, fps: float) -> Clip:
    """The clip at ``fps`` frames per second: root positions linearly, rotations by slerp."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    new_times = np.arange(0.0, clip.duration + 1e-9, 1.0 / fps)
    if len(new_times) < 2:
        raise ValueError(f"clip {clip.name!r} ({clip.duration:.3f} s) is shorter than two frames at {fps} fps")
    root = np.stack([np.interp(new_times, clip.times, clip.root_pos[:, k]) for k in range(3)], -1)
    quats = np.stack([slerp_quats(clip.times, clip.local_quats[:, j], new_times) for j in range(len(DM_JOINTS))], 1)
    return Clip(clip.name, new_times, root, quats, clip.loop)


def _dm_parent_index() -> list[int]:
    return [-1 if DM_PARENTS[n] is None else DM_JOINTS.index(DM_PARENTS[n]) for n in DM_JOINTS]


def forward_kinematics(local_quats: np.ndarray, root_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global rotations [N, 15, 3, 3] and joint positions [N, 15, 3] of the DeepMimic humanoid (its own frame).

    Args:
        local_quats: [N, 15, 4] (w, x, y, z) local rotations (root: global).
        root_pos: [N, 3] root positions.
    """
    local = quat_to_matrix(local_quats)
    glob = np.empty_like(local)
    pos = np.empty(local.shape[:2] + (3,))
    for j, p in enumerate(_dm_parent_index()):  # DM_JOINTS lists parents before children
        if p < 0:
            glob[:, j], pos[:, j] = local[:, j], root_pos
        else:
            glob[:, j] = glob[:, p] @ local[:, j]
            pos[:, j] = pos[:, p] + glob[:, p] @ np.asarray(DM_OFFSETS[DM_JOINTS[j]], float)
    return glob, pos


def dm_rest_positions() -> np.ndarray:
    """[15, 3] DeepMimic joints at rest (identity rotations, root at the origin), DeepMimic frame."""
    q = np.zeros((1, len(DM_JOINTS), 4))
    q[..., 0] = 1.0
    return forward_kinematics(q, np.zeros((1, 3)))[1][0]


def rest_corrections(smpl_rest: np.ndarray) -> np.ndarray:
    """[24, 3, 3] constant rotations K_j such that C G_dm C^T K_j turns SMPL bones onto DeepMimic ones."""
    dm = dm_rest_positions() @ AXIS_CHANGE.T
    out = np.repeat(np.eye(3)[None], NUM_JOINTS, 0)
    for name, (child, bone) in BONE_MATCH.items():
        d_smpl = smpl_rest[joint_index(child)] - smpl_rest[joint_index(name)]
        d_dm = (np.array([0.0, 1.0, 0.0]) if bone == "up"
                else dm[DM_JOINTS.index(bone[1])] - dm[DM_JOINTS.index(bone[0])])
        out[joint_index(name)] = rotation_between(d_smpl, d_dm)
    for name, source in COPY_CORRECTION.items():
        out[joint_index(name)] = out[joint_index(source)]
    return out


def _leg_length(points: np.ndarray, hip: int, knee: int, ankle: int) -> float:
    return float(np.linalg.norm(points[hip] - points[knee]) + np.linalg.norm(points[knee] - points[ankle]))


def retarget_to_smpl(clip: Clip, smpl_rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-24 motion from a DeepMimic clip, in SMPL's frame (Y up, faces +Z), not yet grounded.

    Args:
        clip: N frames.
        smpl_rest: [24, 3] rest joints of the target body.

    Returns:
        root [N, 3] pelvis positions (metres) and local [N, 24, 3, 3] rotations (pelvis: global).
    """
    g_dm, p_dm = forward_kinematics(clip.local_quats, clip.root_pos)
    src = [DM_JOINTS.index(SMPL_SOURCE[n]) for n in JOINT_NAMES]
    glob = AXIS_CHANGE @ g_dm[:, src] @ AXIS_CHANGE.T @ rest_corrections(smpl_rest)  # [N, 24, 3, 3]
    local = glob.copy()
    local[:, 1:] = np.swapaxes(glob[:, PARENTS[1:]], -1, -2) @ glob[:, 1:]
    dm_rest = dm_rest_positions()
    scale = _leg_length(smpl_rest, *(joint_index(n) for n in ("left_hip", "left_knee", "left_ankle"))) / _leg_length(
        dm_rest, *(DM_JOINTS.index(n) for n in ("left_hip", "left_knee", "left_ankle"))
    )
    hips_mid = smpl_rest[[joint_index("left_hip"), joint_index("right_hip")]].mean(0)
    # DeepMimic's root sits between the hips: put SMPL's hip midpoint there, the pelvis joint above it.
    root = scale * p_dm[:, 0] @ AXIS_CHANGE.T + glob[:, 0] @ (smpl_rest[0] - hips_mid)
    return root, local
