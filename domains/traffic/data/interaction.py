"""INTERACTION dataset loader: ``vehicle_tracks_*.csv`` + the location's lanelet2 map -> the SUMO scene format.

The dataset needs registration and is never downloaded here: point the loader at a local copy
(``recorded_trackfiles/<location>/vehicle_tracks_XXX.csv`` and ``maps/<location>.osm``). Track rows give box
centres in metres in the map's frame (lanelet2 ``UtmProjector(Origin(0, 0))``), 100 ms per frame.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from genneg.domains.traffic.data.config import SceneConfig
from genneg.domains.traffic.data.scenes import concat_scenes, empty_stats, extract_scenes, filter_valid, wrap_angle

__all__ = ["TRACK_COLUMNS", "read_tracks", "load_interaction"]

TRACK_COLUMNS = ("track_id", "frame_id", "timestamp_ms", "agent_type", "x", "y", "vx", "vy", "psi_rad", "length",
                 "width")


def read_tracks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads one INTERACTION track file.

    Returns:
        ``frame [R]`` int, ``track [R]`` int, ``time [R]`` seconds, ``agent_type [R]`` str and
        ``boxes [R, 5]`` (x, y, yaw, length, width) per row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"INTERACTION track file not found: {path}")
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = tuple(h.strip() for h in next(reader, ()))
            if header[: len(TRACK_COLUMNS)] != TRACK_COLUMNS:
                raise ValueError(f"{path}: header {header} is not an INTERACTION vehicle track file; "
                                 f"expected {TRACK_COLUMNS}")
            rows = [r for r in reader if r]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable CSV track file ({type(e).__name__}: {e})") from e
    if not rows:
        raise ValueError(f"{path}: the track file holds a header but no rows (truncated?)")
    col = {name: i for i, name in enumerate(TRACK_COLUMNS)}
    try:
        num = np.array([[float(r[col[c]]) for c in ("frame_id", "track_id", "timestamp_ms", "x", "y", "psi_rad",
                                                     "length", "width")] for r in rows], np.float64).reshape(-1, 8)
    except (ValueError, IndexError) as e:
        raise ValueError(f"{path}: malformed row ({e})") from e
    if not np.isfinite(num).all():
        raise ValueError(f"{path}: rows hold NaN or inf values")
    if (num[:, 6:8] <= 0).any():
        raise ValueError(f"{path}: row {int(np.argmax((num[:, 6:8] <= 0).any(1)))} has a non-positive length or width")
    return {"frame": num[:, 0].astype(np.int64), "track": num[:, 1].astype(np.int64), "time": num[:, 2] / 1000.0,
            "agent_type": np.array([r[col["agent_type"]] for r in rows], dtype=str),
            "boxes": np.column_stack([num[:, 3:5], wrap_angle(num[:, 5]), num[:, 6:8]])}


def load_interaction(track_files: Sequence[str | os.PathLike], map_file: str | os.PathLike,
                     cfg: SceneConfig = SceneConfig(), *, seed: int = 0, frame_stride: int = 10,
                     centres_per_frame: int = 4, agent_types: Sequence[str] = ("car",)):
    """Scenes from INTERACTION recordings of one location, in the format of ``load_scenes``.

    Every ``frame_stride``-th frame (10 = one per second) gives up to ``centres_per_frame`` scenes around random
    vehicles. Scenes the oracles reject are dropped and counted (real data do trip the off-road rule at map edges).

    Returns:
        (scenes: dict of arrays as ``load_scenes`` returns, stats: counts of tried / kept / invalid scenes).
    """
    from genneg.domains.traffic.map import read_lanelet2_map

    if frame_stride < 1 or centres_per_frame < 1:
        raise ValueError(f"frame_stride and centres_per_frame must be >= 1, got {frame_stride}, {centres_per_frame}")
    if not track_files:
        raise ValueError("load_interaction needs at least one vehicle_tracks_*.csv file")
    all_tracks = [read_tracks(path) for path in track_files]  # check every file before the slower map
    road_map = read_lanelet2_map(map_file, origin=(0.0, 0.0))
    rng = np.random.default_rng(seed)
    stats, parts = {**empty_stats(), "other_class": 0}, []
    for tracks in all_tracks:
        keep = np.isin(tracks["agent_type"], list(agent_types))
        stats["other_class"] += int((~keep).sum())
        frames = np.unique(tracks["frame"][keep])[::frame_stride]
        for frame in frames:
            rows = keep & (tracks["frame"] == frame)
            world, t = tracks["boxes"][rows], float(tracks["time"][rows][0])
            centres = rng.choice(len(world), size=min(centres_per_frame, len(world)), replace=False)
            parts.append(filter_valid(extract_scenes(world, road_map, centres, cfg, t), cfg, stats))
    scenes = concat_scenes(parts, cfg)
    data = {k: v for k, v in vars(scenes).items()}
    data["network"] = np.zeros(len(scenes), np.int16)
    data["network_name"] = np.full(len(scenes), road_map.name)
    return data, stats
