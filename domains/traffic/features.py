"""Normalised features of traffic scenes: vehicle boxes <-> model features, map polylines, the scene table.

Vehicle features (``net.VEHICLE_FEATURES``): ``(x, y) / POSITION_SCALE``, ``cos yaw``, ``sin yaw``,
``(length - LENGTH_MEAN) / LENGTH_SCALE``, ``(width - WIDTH_MEAN) / WIDTH_SCALE``: every feature is of order one on
SUMO passenger cars. Decoding reads the heading as ``atan2(sin, cos)`` (the pair need not be unit-norm) and clamps
sizes to ``MIN_SIZE`` so the oracles always see a proper box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["POSITION_SCALE", "encode_boxes", "decode_boxes", "encode_polylines", "SceneTable", "subsample_map"]

POSITION_SCALE = 25.0  # metres per unit: a 50 m scene radius maps to 2
LENGTH_MEAN, LENGTH_SCALE = 4.5, 1.0
WIDTH_MEAN, WIDTH_SCALE = 1.8, 0.25
LANE_WIDTH_SCALE = 4.0
MIN_SIZE = 0.1  # metres


def encode_boxes(boxes: np.ndarray, defined: np.ndarray) -> Tensor:
    """Boxes ``[S, N, 5]`` (x, y, yaw, length, width; metres, radians) -> features ``[S, N, 6]`` (0 on padding)."""
    b = np.asarray(boxes, np.float64)
    feats = np.stack([b[..., 0] / POSITION_SCALE, b[..., 1] / POSITION_SCALE, np.cos(b[..., 2]), np.sin(b[..., 2]),
                      (b[..., 3] - LENGTH_MEAN) / LENGTH_SCALE, (b[..., 4] - WIDTH_MEAN) / WIDTH_SCALE], -1)
    return torch.as_tensor(feats * np.asarray(defined, bool)[..., None], dtype=torch.float32)


def decode_boxes(x0: Tensor) -> Tensor:
    """Features ``[..., 6]`` -> boxes ``[..., 5]`` in metres and radians (differentiable; sizes >= MIN_SIZE)."""
    xy = x0[..., :2] * POSITION_SCALE
    yaw = torch.atan2(x0[..., 3], x0[..., 2])
    length = (x0[..., 4] * LENGTH_SCALE + LENGTH_MEAN).clamp_min(MIN_SIZE)
    width = (x0[..., 5] * WIDTH_SCALE + WIDTH_MEAN).clamp_min(MIN_SIZE)
    return torch.cat([xy, yaw[..., None], length[..., None], width[..., None]], -1)


def encode_polylines(polylines: np.ndarray, defined: np.ndarray) -> Tensor:
    """Map polylines ``[S, L, P, 5]`` (x, y, dx, dy, width) -> normalised ``[S, L, P, 5]`` (0 on padding)."""
    p = np.asarray(polylines, np.float32).copy()
    p[..., :2] /= POSITION_SCALE
    p[..., 4] /= LANE_WIDTH_SCALE
    return torch.as_tensor(p * np.asarray(defined, bool)[..., None, None])


def subsample_map(polylines: np.ndarray, defined: np.ndarray, lines: int, points: int):
    """Keeps the ``lines`` nearest lane pieces (they are stored nearest first) and ``points`` evenly spaced points
    of each (end points kept). Returns ``(polylines [S, lines, points, 5], defined [S, lines])``."""
    l_have, p_have = polylines.shape[1:3]
    if lines > l_have or points > p_have or lines < 1 or points < 2:
        raise ValueError(f"cannot take {lines} lines x {points} points from a map stored as {l_have} x {p_have} "
                         f"(need 1 <= lines <= {l_have}, 2 <= points <= {p_have})")
    idx = np.unique(np.round(np.linspace(0, p_have - 1, points)).astype(int))
    return polylines[:, :lines][:, :, idx], defined[:, :lines]


@dataclass(frozen=True)
class SceneTable:
    """Every scene of every split, indexed by a global scene id (what ``cond["scene"]`` holds).

    Attributes:
        boxes: [S, N, 5] float32 data boxes (scene frame); defined: [S, N] bool.
        polylines: [S, L, P, 5] float32 lane pieces (scene frame, metres); map_defined: [S, L] bool.
        areas: [S] object, the drivable-area crops (Shapely, scene frame).
        origin: [S, 3] world (x, y, yaw) of each scene frame; network: [S] str, the network's name.
        split_ranges: {split: (start, stop)} of the global ids.
        network_files: {network name: path of its SUMO network file}.
    """

    boxes: np.ndarray
    defined: np.ndarray
    polylines: np.ndarray
    map_defined: np.ndarray
    areas: np.ndarray
    origin: np.ndarray
    network: np.ndarray
    split_ranges: dict
    network_files: dict

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def ids(self, split: str) -> np.ndarray:
        if split not in self.split_ranges:
            raise ValueError(f"unknown split {split!r}; choose one of {list(self.split_ranges)}")
        start, stop = self.split_ranges[split]
        if stop == start:
            raise ValueError(f"split {split!r} holds no scene")
        return np.arange(start, stop)

    def lookup(self, scene) -> np.ndarray:
        """Validated int64 scene ids ``[B]`` from a tensor or array."""
        ids = np.asarray(scene.detach().cpu().numpy() if isinstance(scene, Tensor) else scene).astype(np.int64)
        if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= len(self))):
            raise ValueError(f"scene ids must be a 1-D array in [0, {len(self)}), got shape {ids.shape}")
        return ids

    def cond(self, ids: np.ndarray, lines: int, points: int) -> dict[str, Tensor]:
        """The model's condition for the given scenes (a dict of tensors only, so the engine can slice it)."""
        poly, mdef = subsample_map(self.polylines[ids], self.map_defined[ids], lines, points)
        return {"defined": torch.as_tensor(self.defined[ids]), "map": encode_polylines(poly, mdef),
                "map_defined": torch.as_tensor(mdef), "scene": torch.as_tensor(ids, dtype=torch.int64)}
