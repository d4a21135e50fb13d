"""Export of generated scenes: JSON that any tool can re-check (and the input of the SUMO hand-off).

One record per scene: every vehicle's box in the scene frame and in its network's world frame (the ego first), the
network's name and file, the drivable-area crop as WKT in the scene frame, and the oracle's verdict for the scene
and per reason, with per-vehicle flags. With Shapely alone (polygons from the boxes, the WKT area, the tolerances
stated in the file) the verdicts can be reproduced; ``tests/traffic/test_traffic_outputs.py`` does exactly that.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from genneg.oracles.traffic import BOX_FIELDS, COLLISION_TOLERANCE

__all__ = ["to_world", "scenes_to_dict", "write_scenes_json", "read_scenes_json", "export_scenes", "FORMAT_VERSION"]

FORMAT_VERSION = 2
WKT_DECIMALS = 4  # 0.1 mm


def to_world(boxes: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Scene-frame boxes ``[..., N, 5]`` -> world boxes, given each scene's world ``origin [..., 3]`` (x, y, yaw).

    Inverse of ``genneg.domains.traffic.map.to_scene_frame`` (a rotation by the origin's yaw, then a shift)."""
    boxes, origin = np.asarray(boxes, np.float64), np.asarray(origin, np.float64)
    c, s = np.cos(origin[..., None, 2]), np.sin(origin[..., None, 2])
    out = boxes.copy()
    out[..., 0] = origin[..., None, 0] + c * boxes[..., 0] - s * boxes[..., 1]
    out[..., 1] = origin[..., None, 1] + s * boxes[..., 0] + c * boxes[..., 1]
    out[..., 2] = (boxes[..., 2] + origin[..., None, 2] + np.pi) % (2 * np.pi) - np.pi
    return out


def scenes_to_dict(samples: dict, table, flags: dict | None = None, result=None, *, areas: bool = False,
                   tolerance: float | None = None) -> dict:
    """A JSON-able record of decoded samples.

    Args:
        samples: ``{"boxes" [B, N, 5], "defined" [B, N], "scene" [B]}`` (``TrafficDomain.decode``).
        table: the domain's ``SceneTable`` (world origin, network name and file, drivable area of each scene id).
        flags: optional per-vehicle infraction flags ``{reason: bool [B, N]}`` (``MapOracle.per_vehicle``).
        result: optional ``OracleResult`` of the samples: each scene gets ``valid`` and ``reasons``.
        areas: add each scene's drivable-area crop as WKT (scene frame).
        tolerance: the off-road tolerance (metres) the verdicts used, stated in the file.

    Returns:
        ``{"format": 2, "fields": [...], "tolerances": {...}, "scenes": [{"scene", "network", "network_file",
        "origin", "valid", "reasons", "drivable_area_wkt", "vehicles": [{"x", ..., "world": {...},
        "<reason>": bool}]}]}`` (the optional keys only when their argument is given).
    """
    import shapely

    boxes, defined = np.asarray(samples["boxes"], np.float64), np.asarray(samples["defined"], bool)
    ids = table.lookup(samples["scene"])
    world = to_world(boxes, table.origin[ids])
    crops = table.areas[ids] if areas else None
    scenes = []
    for b, sid in enumerate(ids):
        vehicles = []
        for n in np.flatnonzero(defined[b]):
            v = dict(zip(BOX_FIELDS, map(float, boxes[b, n])))
            v["world"] = dict(zip(BOX_FIELDS, map(float, world[b, n])))
            v.update({k: bool(f[b, n]) for k, f in (flags or {}).items()})
            vehicles.append(v)
        name = str(table.network[sid])
        scene = {"scene": int(sid), "network": name, "network_file": table.network_files.get(name),
                 "origin": [float(v) for v in table.origin[sid]]}
        if result is not None:
            scene["valid"] = bool(result.valid[b])
            scene["reasons"] = {k: bool(r[b]) for k, r in result.reasons.items()}
        if crops is not None:
            scene["drivable_area_wkt"] = shapely.to_wkt(crops[b], rounding_precision=WKT_DECIMALS)
        scenes.append({**scene, "vehicles": vehicles})
    record = {"format": FORMAT_VERSION, "fields": list(BOX_FIELDS), "units": "metres, radians (yaw from +x, ccw)",
              "frames": "scene: the ego (first vehicle) at the origin facing +x; world: the network's coordinates"}
    if tolerance is not None:
        record["tolerances"] = {"offroad_m": float(tolerance), "collision_overlap_m": COLLISION_TOLERANCE}
    return {**record, "scenes": scenes}


def export_scenes(domain, samples: dict, result, path: str | os.PathLike) -> Path:
    """``TrafficDomain.export``: the full record (verdicts, per-vehicle flags, WKT areas, tolerances) to ``path``."""
    if not str(path).endswith(".json"):
        raise ValueError(f"traffic scenes are exported as JSON; the path must end in .json, got {path}")
    oracle = domain.oracle()
    if result is None:
        result = oracle(samples)
    record = scenes_to_dict(samples, domain.table, oracle.per_vehicle(samples), result, areas=True,
                            tolerance=domain.tolerance)
    return write_scenes_json(path, record)


def write_scenes_json(path: str | os.PathLike, record: dict) -> Path:
    """Writes ``scenes_to_dict``'s record atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return path


def read_scenes_json(path: str | os.PathLike) -> dict:
    """Reads and checks a scene file written by ``write_scenes_json``."""
    from genneg.checkpoint import read_json

    record = read_json(path)  # names the file when it is missing or truncated
    if not isinstance(record, dict) or record.get("format") != FORMAT_VERSION or "scenes" not in record:
        raise ValueError(f"{path} is not a genneg traffic scene file (format {FORMAT_VERSION})")
    return record
