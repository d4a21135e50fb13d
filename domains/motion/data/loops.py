"""Looping clips (DeepMimic ``"Loop": "wrap"``): loop closure, tiling into several cycles, and the join check.

DeepMimic's convention: a looping clip's last frame is the same instant of the cycle as its first, moved by the
cycle's displacement (a horizontal translation and a turn about the vertical). The next cycle therefore starts at
the clip's second frame, carried by that displacement. The mocap does not close exactly (some joints differ by up to
~60 degrees between the last and the first frame), so :func:`close_loop` spreads each joint's mismatch linearly over
the cycle first; :func:`join_ratio` then measures how continuous the joins of a tiled clip are.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from .deepmimic import Clip, forward_kinematics

__all__ = ["cycle_turn", "close_loop", "tile", "join_ratio"]


def _rot(q: np.ndarray) -> Rotation:
    """(w, x, y, z) quaternions [..., 4] as a scipy Rotation (flattened)."""
    q = np.asarray(q, float).reshape(-1, 4)
    return Rotation.from_quat(np.concatenate([q[:, 1:], q[:, :1]], -1))


def _quat(r: Rotation, shape: tuple[int, ...]) -> np.ndarray:
    q = r.as_quat()
    return np.concatenate([q[:, 3:], q[:, :3]], -1).reshape(shape)


def cycle_turn(clip: Clip) -> float:
    """The turn (radians about +Y) of the root between the first and the last frame of a clip."""
    d = (_rot(clip.local_quats[-1, 0]) * _rot(clip.local_quats[0, 0]).inv()).as_matrix()[0]
    return float(math.atan2(d[0, 2] - d[2, 0], d[0, 0] + d[2, 2]))


def close_loop(clip: Clip) -> tuple[Clip, float]:
    """A clip whose last frame equals its first carried by the cycle's displacement; and the largest correction.

    Every joint's rotation mismatch between the last frame and the (turned) first frame, and the root's height
    mismatch, are spread linearly in time over the cycle, so frame 0 is untouched and the last frame is corrected
    by the whole mismatch.

    Returns:
        (closed clip, largest per-joint correction in degrees).
    """
    if not clip.loop:
        raise ValueError(f"clip {clip.name!r} is not marked as looping ('Loop': 'wrap')")
    n, joints = clip.local_quats.shape[:2]
    turn = Rotation.from_rotvec([0.0, cycle_turn(clip), 0.0])
    first = _rot(clip.local_quats[0])
    first = Rotation.concatenate([turn * first[0], first[1:]])  # the root turns with the cycle, the others do not
    mismatch = (first * _rot(clip.local_quats[-1]).inv()).as_rotvec()  # [J, 3]
    w = (clip.times / clip.times[-1])[:, None, None]  # [N, 1, 1]
    fix = Rotation.from_rotvec((w * mismatch[None]).reshape(-1, 3))
    quats = _quat(fix * _rot(clip.local_quats), (n, joints, 4))
    root = clip.root_pos.copy()
    root[:, 1] += w[:, 0, 0] * (clip.root_pos[0, 1] - clip.root_pos[-1, 1])
    worst = float(np.degrees(np.linalg.norm(mismatch, axis=-1).max()))
    return replace(clip, root_pos=root, local_quats=quats), worst


def tile(clip: Clip, cycles: int) -> Clip:
    """``cycles`` consecutive cycles of a looping clip (the first is the clip itself).

    Cycle k + 1 is cycle k's frames after the first, turned about +Y by :func:`cycle_turn` and moved so that it
    starts where cycle k ends (heights unchanged).
    """
    if cycles < 1:
        raise ValueError(f"cycles must be >= 1, got {cycles}")
    if not clip.loop:
        raise ValueError(f"clip {clip.name!r} is not marked as looping ('Loop': 'wrap')")
    turn = Rotation.from_rotvec([0.0, cycle_turn(clip), 0.0])
    horizontal = np.array([1.0, 0.0, 1.0])
    offsets = (clip.root_pos[1:] - clip.root_pos[0]) * horizontal
    times, roots, quats = [clip.times], [clip.root_pos], [clip.local_quats]
    total = turn
    for _ in range(cycles - 1):  # cycle k + 1 is carried by turn^(k + 1)
        moved = total.apply(offsets) + roots[-1][-1] * horizontal
        moved[:, 1] = clip.root_pos[1:, 1]
        q = clip.local_quats[1:].copy()
        q[:, 0] = _quat(total * _rot(q[:, 0]), (len(q), 4))
        times.append(times[-1][-1] + clip.times[1:])
        roots.append(moved)
        quats.append(q)
        total = turn * total
    return replace(clip, times=np.concatenate(times), root_pos=np.concatenate(roots),
                   local_quats=np.concatenate(quats))  # fmt: skip


def join_ratio(clip: Clip) -> float:
    """How continuous the join of a looping clip is: the largest joint speed across the join of two cycles, over
    that joint's largest speed within the cycle (1 or less: the join is as smooth as the motion itself)."""
    n = len(clip.times)
    two = tile(clip, 2)
    _, pos = forward_kinematics(two.local_quats[: n + 1], two.root_pos[: n + 1])
    dt = np.diff(two.times[: n + 1])
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=-1) / dt[:, None]  # [n, J]
    return float((speed[n - 1] / np.maximum(speed[: n - 1].max(0), 1e-6)).max())
