"""Export of generated scenes: JSON (scene frame and world frame), the input of the SUMO hand-off."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from oracles.traffic import BOX_FIELDS

__all__ = ["to_world", "scenes_to_dict", "write_scenes_json", "read_scenes_json", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def to_world(boxes: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Scene-frame boxes ``[..., N, 5]`` -> world boxes, given each scene's world ``origin [..., 3]`` (x, y, yaw).

    Inverse of ``domains.traffic.map.to_scene_frame`` (a rotation by the origin's yaw, then a shift)."""
    boxes, origin = np.asarray(boxes, np.float64), np.asarray(origin, np.float64)
    c, s = np.cos(origin[..., None, 2]), np.sin(origin[..., None, 2])
    out = boxes.copy()
    out[..., 0] = origin[..., None, 0] + c * boxes[..., 0] - s * boxes[..., 1]
    out[..., 1] = origin[..., None, 1] + s * boxes[..., 0] + c * boxes[..., 1]
    out[..., 2] = (boxes[..., 2] + origin[..., None, 2] + np.pi) % (2 * np.pi) - np.pi
    return out


def scenes_to_dict(samples: dict, table, flags: dict | None = None) -> dict:
    """A JSON-able record of decoded samples.

    Args:
        samples: ``{"boxes" [B, N, 5], "defined" [B, N], "scene" [B]}`` (``TrafficDomain.decode``).
        table: the domain's ``SceneTable`` (world origin, network name and file of each scene id).
        flags: optional per-vehicle infraction flags ``{reason: bool [B, N]}`` (``MapOracle.per_vehicle``).

    Returns:
        ``{"format": 1, "fields": [...], "scenes": [{"scene", "network", "network_file", "origin",
        "vehicles": [{"x", ..., "world": {...}, "<reason>": bool}]}]}``.
    """
    boxes, defined = np.asarray(samples["boxes"], np.float64), np.asarray(samples["defined"], bool)
    ids = table.lookup(samples["scene"])
    world = to_world(boxes, table.origin[ids])
    scenes = []
    for b, sid in enumerate(ids):
        vehicles = []
        for n in np.flatnonzero(defined[b]):
            v = dict(zip(BOX_FIELDS, map(float, boxes[b, n])))
            v["world"] = dict(zip(BOX_FIELDS, map(float, world[b, n])))
            v.update({k: bool(f[b, n]) for k, f in (flags or {}).items()})
            vehicles.append(v)
        name = str(table.network[sid])
        scenes.append({"scene": int(sid), "network": name, "network_file": table.network_files.get(name),
                       "origin": [float(v) for v in table.origin[sid]], "vehicles": vehicles})
    return {"format": FORMAT_VERSION, "fields": list(BOX_FIELDS), "units": "metres, radians (yaw from +x, ccw)",
            "scenes": scenes}


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
