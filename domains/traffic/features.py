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

__all__ = ["POSITION_SCALE", "encode_boxes", "decode_boxes", "encode_polylines", "SceneTable", "LazyAreas"]

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
    """Map polylines ``[S, L, P, 6]`` (``map.POLYLINE_FIELDS``) -> normalised float16 ``[S, L, P, 6]`` (0 on padding).

    Half precision keeps a large training set's map in memory (positions to ~5 cm, far below a lane's width); the
    networks compute in float32."""
    p = np.asarray(polylines, np.float32).copy()
    p[..., :2] /= POSITION_SCALE
    p[..., 4] /= LANE_WIDTH_SCALE
    return torch.as_tensor(p * np.asarray(defined, bool)[..., None, None]).to(torch.float16)


class LazyAreas:
    """Drivable-area crops of scenes (scene frame), cut from their network's area on first use and kept.

    Indexing with an array of scene ids gives an object array of Shapely geometries (what ``offroad`` takes).
    """

    def __init__(self, road_maps: list, network: np.ndarray, origin: np.ndarray, half: float):
        self.road_maps, self.network, self.origin, self.half = road_maps, network, origin, float(half)
        self._cache: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.network)

    def __getitem__(self, ids):
        scalar = np.ndim(ids) == 0
        ids = np.atleast_1d(np.asarray(ids, np.int64))
        for i in np.unique(ids):
            if int(i) not in self._cache:
                road, (x, y, yaw) = self.road_maps[self.network[i]], self.origin[i]
                self._cache[int(i)] = road.area_crop((x, y), yaw, self.half)
        out = np.empty(len(ids), object)
        out[:] = [self._cache[int(i)] for i in ids]
        return out[0] if scalar else out


@dataclass(frozen=True)
class SceneTable:
    """Every scene of every split, indexed by a global scene id (what ``cond["scene"]`` holds).

    Attributes:
        boxes: [S, N, 5] float32 data boxes (scene frame; slot 0 is the ego, at the origin facing +x);
            defined: [S, N] bool.
        segments: every network's lane segments (``map.LaneSegments``, concatenated, map frames);
            segment_idx: [S, L] the segments each scene sees (nearest first, -1 = padding).
        areas: ``LazyAreas``, the drivable-area crops (Shapely, scene frame) by scene id.
        origin: [S, 3] world (x, y, yaw) of each scene frame; network: [S] str, the network's name.
        split_ranges: {split: (start, stop)} of the global ids.
        network_files: {network name: path of its SUMO network file}.
    """

    boxes: np.ndarray
    defined: np.ndarray
    segments: object
    segment_idx: np.ndarray
    areas: LazyAreas
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

    def polylines(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Scene-frame lane segments ``[B, L, P, 6]`` (metres) and their mask ``[B, L]`` of the given scenes."""
        from .map import segment_features

        ids = np.atleast_1d(ids)
        return segment_features(self.segments, self.segment_idx[ids], self.origin[ids])

    def cond(self, ids: np.ndarray, chunk: int = 4096) -> dict[str, Tensor]:
        """The model's condition for the given scenes (a dict of tensors only, so the engine can slice it):
        ``ego [B, 6]`` (the known centre vehicle's features), ``defined [B, N - 1]`` (the other slots),
        ``map [B, L, P, 6]`` float16, ``map_defined [B, L]``, ``scene [B]``."""
        maps = [encode_polylines(*self.polylines(ids[a:a + chunk])) for a in range(0, len(ids), chunk)]
        mdef = self.segment_idx[ids] >= 0
        return {"ego": encode_boxes(self.boxes[ids, 0], self.defined[ids, 0]),
                "defined": torch.as_tensor(self.defined[ids, 1:]), "map": torch.cat(maps),
                "map_defined": torch.as_tensor(mdef), "scene": torch.as_tensor(ids, dtype=torch.int64)}
