"""The domain's scene table: every split's scenes with their map crops cut from the stored network geometry.

The crop (which lane segments each scene sees) depends on the map settings, not on the simulation, so it is
computed from the stored lanes and the scenes' origins, cached beside the data under ``crops/`` by its settings,
and recomputed when they change.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from genneg.checkpoint import read_npz

from .data.config import SPLITS
from .features import LazyAreas, SceneTable
from .map import LaneSegments, select_segments

__all__ = ["build_table", "coverage", "data_report"]


def _crop_path(folder: Path, settings: dict) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return folder / "crops" / f"segments-{key}.npz"


def _select_all(road_maps, segs, offsets, network, origin, reach, lines) -> tuple[np.ndarray, np.ndarray]:
    """Segment indices [S, lines] (global, -1 = padding) and segments dropped by the maximum [S], per network."""
    idx = np.full((len(network), lines), -1, np.int64)
    dropped = np.zeros(len(network), np.int64)
    for i, seg in enumerate(segs):
        rows = np.flatnonzero(network == i)
        if len(rows) == 0:
            continue
        local, drop = select_segments(seg, origin[rows, :2], reach, lines)
        idx[rows] = np.where(local >= 0, local + offsets[i], -1)
        dropped[rows] = drop
    return idx, dropped


def build_table(folder: str | os.PathLike, splits, max_vehicles: int, lines: int, points: int,
                segment_length: float, reach: float, area_half: float) -> SceneTable:
    """Loads the scenes of ``splits`` from ``folder`` (``data.generate_scenes``) and crops their maps.

    Args:
        splits: the splits to load, in order (e.g. ``("train", "val", "test")``, or ``("test",)`` from a data set
            generated for that split only); scene ids run over them in this order.
        max_vehicles: vehicle slots kept per scene (the nearest, ego first).
        lines, points, segment_length, reach: the map crop (see ``map.select_segments``).
        area_half: half-side of the square drivable-area crop around each ego.
    """
    from .data import load_road_maps, load_scenes, read_manifest

    folder, splits = Path(folder), tuple(splits)
    manifest = read_manifest(folder, splits)
    road_maps = load_road_maps(folder, splits)
    parts = [load_scenes(folder, s) for s in splits]
    sizes = np.cumsum([0] + [len(p["boxes"]) for p in parts])
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    index = {m.name: i for i, m in enumerate(road_maps)}  # each scene's network among the maps loaded here
    cat["network"] = np.array([index[n] for n in cat["network_name"]], np.int64)
    segs = [m.segments(segment_length, points) for m in road_maps]
    offsets = np.cumsum([0] + [len(s) for s in segs])
    settings = {"digest": manifest["digest"], "lines": lines, "points": points, "segment_length": segment_length,
                "reach": reach, "scenes": int(sizes[-1])}
    if splits != SPLITS:  # a crop of some splits only (the key of the full crop is unchanged)
        settings["splits"] = list(splits)
    path = _crop_path(folder, settings)
    if path.is_file():
        idx = read_npz(path, "map crop", ("segment_idx",))["segment_idx"]
    else:
        idx, dropped = _select_all(road_maps, segs, offsets, cat["network"], cat["origin"], reach, lines)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, segment_idx=idx.astype(np.int32), dropped=dropped, settings=np.array(json.dumps(settings)))
        os.replace(tmp, path)
    table_segs = LaneSegments(np.concatenate([s.xy for s in segs]), np.concatenate([s.width for s in segs]),
                              np.concatenate([s.internal for s in segs]), np.zeros(0, object), None)
    files = {n["name"]: str(folder / n["network_file"]) if not os.path.isabs(n["network_file"])
             else n["network_file"] for n in manifest["networks"]}
    k = max_vehicles
    return SceneTable(cat["boxes"][:, :k], cat["defined"][:, :k], table_segs, idx.astype(np.int64),
                      LazyAreas(road_maps, cat["network"], cat["origin"], area_half), cat["origin"],
                      cat["network_name"], {s: (int(sizes[i]), int(sizes[i + 1])) for i, s in enumerate(splits)},
                      files)


def coverage(table: SceneTable, split: str, limit: float = 2.0, max_scenes: int | None = 5000,
             networks=None) -> dict[str, float]:
    """How well the map crops cover the data: the share of vehicles farther than ``limit`` metres from every lane
    segment their scene sees, overall and beyond 25 m from the ego, with the segments per scene and the share of
    scenes whose crop hit the maximum (every scene of the split, or only those of the named ``networks``, or
    ``max_scenes`` evenly spaced ones)."""
    from .map import lane_distance

    ids = table.ids(split)
    if networks is not None:
        ids = ids[np.isin(table.network[ids], list(networks))]
        if len(ids) == 0:
            raise ValueError(f"split {split!r} holds no scene of the networks {sorted(networks)}")
    if max_scenes is not None and len(ids) > max_scenes:
        ids = ids[np.linspace(0, len(ids) - 1, max_scenes).astype(int)]
    poly, mdef = table.polylines(ids)
    boxes, defined = table.boxes[ids], table.defined[ids]
    dist = lane_distance(boxes[..., :2], poly, mdef)[defined]
    far = np.hypot(boxes[..., 0], boxes[..., 1])[defined] > 25.0
    return {"vehicles": int(defined.sum()), "uncovered": float((dist > limit).mean()),
            "uncovered_beyond_25m": float((dist[far] > limit).mean()) if far.any() else 0.0,
            "segments_per_scene": float(mdef.sum(1).mean()), "scenes_at_max_segments": float(mdef.all(1).mean())}


def data_report(domain, max_scenes: int = 5000) -> dict:
    """Counts, throughput and coverage of a domain's data: per split, and per network kind (each real network apart).
    """
    from .data import read_manifest

    folder = domain.prepare_data()
    manifest = read_manifest(folder)
    table = domain.table
    kinds = {n["name"]: ("real:" + n["name"]) if n["kind"] == "real" else n["kind"] for n in manifest["networks"]}
    report = {"folder": str(folder), "generation_seconds": manifest["seconds"],
              "valid_scenes_per_second": manifest["valid_scenes_per_second"], "totals": manifest["totals"],
              "map": {"lines": domain.map_lines, "points": domain.map_points, "segment_length": domain.segment_length,
                      "reach": domain.reach}, "splits": {}}
    for split in table.split_ranges:
        ids = table.ids(split)
        names = table.network[ids]
        by_kind = {}
        for kind in sorted({kinds[n] for n in names}):
            members = {n for n in names if kinds[n] == kind}
            by_kind[kind] = {"networks": len(members), "scenes": int(sum(kinds[n] == kind for n in names)),
                             "coverage": coverage(table, split, max_scenes=max_scenes // 2, networks=members)}
        report["splits"][split] = {"scenes": len(ids), "vehicles_per_scene": float(table.defined[ids].sum(1).mean()),
                                   "kinds": by_kind, "coverage": domain.coverage(split, max_scenes=max_scenes)}
    return report
