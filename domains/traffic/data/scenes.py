"""From vehicles in a world frame to local scenes (boxes + map crop in the scene frame), filtered by the oracles.

Shared by every data source: a source yields snapshots (all vehicles of one instant as world boxes), this module
draws centre vehicles, gathers their neighbourhoods, crops the map and keeps the scenes the oracles accept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from genneg.domains.traffic.data.config import SceneConfig
from genneg.domains.traffic.map import RoadMap, to_scene_frame
from genneg.oracles.traffic import scene_infractions

__all__ = [
    "SceneArrays", "wrap_angle", "boxes_from_sumo", "extract_scenes", "filter_valid", "concat_scenes", "empty_stats",
    "encode_areas", "decode_areas",
]


def wrap_angle(a):
    """Angles wrapped to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def boxes_from_sumo(front_xy, angle_deg, length, width) -> np.ndarray:
    """SUMO vehicle state -> boxes [M, 5] (x, y, yaw, length, width).

    SUMO reports the *front bumper middle* and a *compass* angle (degrees, 0 = +y, clockwise), so the heading is
    (sin a, cos a), the centre is ``front - L/2 * heading`` and ``yaw = pi/2 - radians(a)``.
    """
    a = np.radians(np.asarray(angle_deg, np.float64))
    length = np.asarray(length, np.float64)
    heading = np.stack([np.sin(a), np.cos(a)], axis=-1)
    centre = np.asarray(front_xy, np.float64) - length[:, None] / 2 * heading
    return np.column_stack([centre, wrap_angle(np.pi / 2 - a), length, np.asarray(width, np.float64)])


@dataclass
class SceneArrays:
    """A batch of S scenes (numpy arrays, first axis S); ``drivable_area`` holds S Shapely geometries.

    The map a model sees is not stored per scene: it is cut from the network's lanes at the scene's ``origin``
    (``genneg.domains.traffic.map.select_segments``), so a change of the crop needs no new simulation.
    """

    boxes: np.ndarray  # [S, N, 5] float32, scene frame
    defined: np.ndarray  # [S, N] bool
    drivable_area: np.ndarray  # [S] object (Shapely geometries in the scene frame)
    origin: np.ndarray  # [S, 3] float64: world (x, y, yaw) of the scene frame
    time: np.ndarray  # [S] float32: seconds into the simulation / recording

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, keep: np.ndarray) -> "SceneArrays":
        return SceneArrays(**{k: v[keep] for k, v in vars(self).items()})


def empty_stats() -> dict[str, int]:
    return {"scenes_tried": 0, "scenes_kept": 0, "invalid_collision": 0, "invalid_offroad": 0, "invalid_both": 0}


def _gather(world: np.ndarray, centre: int, cfg: SceneConfig):
    """The N nearest vehicles (centres within R) around ``world[centre]``, in its frame; centre vehicle first."""
    n = cfg.max_vehicles
    dist = np.hypot(*(world[:, :2] - world[centre, :2]).T)
    dist[centre] = -1.0  # the centre vehicle always comes first
    near = np.flatnonzero(dist <= cfg.radius)
    near = near[np.argsort(dist[near], kind="stable")][:n]
    boxes = np.zeros((n, 5), np.float32)
    sel = world[near]
    boxes[: len(near), :2] = to_scene_frame(sel[:, :2], world[centre, :2], world[centre, 2])
    boxes[: len(near), 2] = wrap_angle(sel[:, 2] - world[centre, 2])
    boxes[: len(near), 3:] = sel[:, 3:]
    defined = np.arange(n) < len(near)
    return boxes, defined


def extract_scenes(world: np.ndarray, road_map: RoadMap, centres, cfg: SceneConfig, time: float = 0.0):
    """Scenes around the given centre vehicles of one snapshot, before any filtering.

    Args:
        world: [M, 5] boxes of all vehicles at one instant in the map's frame.
        centres: indices into ``world`` of the scene centre vehicles.

    Returns:
        SceneArrays with one scene per centre.
    """
    boxes, defined, areas, origin = [], [], [], []
    for c in np.asarray(centres, int):
        b, d = _gather(world, c, cfg)
        boxes.append(b), defined.append(d), origin.append(world[c, :3])
        areas.append(road_map.area_crop(world[c, :2], world[c, 2], cfg.radius + cfg.area_margin))
    s = len(boxes)
    return SceneArrays(
        boxes=np.asarray(boxes, np.float32).reshape(s, cfg.max_vehicles, 5),
        defined=np.asarray(defined, bool).reshape(s, cfg.max_vehicles),
        drivable_area=np.array(areas + [None], dtype=object)[:-1],  # keeps a 1-D object array
        origin=np.asarray(origin, np.float64).reshape(s, 3),
        time=np.full(s, time, np.float32),
    )


def filter_valid(scenes: SceneArrays, cfg: SceneConfig, stats: dict[str, int]) -> SceneArrays:
    """Keeps the scenes the oracles accept (judged on the stored float32 boxes) and counts the rest in ``stats``."""
    if len(scenes) == 0:
        return scenes
    flags = scene_infractions(scenes.boxes, scenes.defined, scenes.drivable_area, cfg.offroad_tolerance)
    col, off = flags["collision"].any(1), flags["offroad"].any(1)
    stats["scenes_tried"] += len(scenes)
    stats["invalid_collision"] += int((col & ~off).sum())
    stats["invalid_offroad"] += int((off & ~col).sum())
    stats["invalid_both"] += int((col & off).sum())
    keep = ~(col | off)
    stats["scenes_kept"] += int(keep.sum())
    return scenes.select(keep)


def concat_scenes(parts: list[SceneArrays], cfg: SceneConfig) -> SceneArrays:
    """Concatenates scene batches (an empty list gives zero scenes with the right shapes)."""
    if not parts:
        n = cfg.max_vehicles
        return SceneArrays(np.zeros((0, n, 5), np.float32), np.zeros((0, n), bool), np.zeros(0, object),
                           np.zeros((0, 3)), np.zeros(0, np.float32))
    return SceneArrays(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in vars(parts[0])})


def encode_areas(areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geometries [S] -> (WKB bytes as uint8 [total], offsets int64 [S + 1]) for an allow_pickle-free ``.npz``."""
    blobs = shapely.to_wkb(areas) if len(areas) else np.zeros(0, object)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    data = np.frombuffer(b"".join(blobs), np.uint8) if len(blobs) else np.zeros(0, np.uint8)
    return data, offsets


def decode_areas(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_areas``: object array [S] of Shapely geometries."""
    raw = data.tobytes()
    blobs = np.array([raw[a:b] for a, b in zip(offsets[:-1], offsets[1:])] + [None], dtype=object)[:-1]
    return shapely.from_wkb(blobs) if len(blobs) else np.zeros(0, object)
