"""Road maps: a drivable area (Shapely, prepared once) and lane centrelines, read from SUMO or lanelet2.

A ``RoadMap`` lives in its source's metric frame (SUMO network coordinates, or lanelet2's local UTM frame). A
``MapCrop`` is what conditions a scene: the lane pieces within a radius of the scene centre, resampled to a fixed
number of points, and the drivable area around it, both in the scene frame (centre at the origin, the centre
vehicle facing +x).

SUMO and lanelet2 are imported inside the readers, so the module works without the ``traffic`` extra.
"""

from __future__ import annotations

import os
import xml.sax
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import shapely

__all__ = ["POLYLINE_FIELDS", "MapCrop", "RoadMap", "read_sumo_net", "read_lanelet2_map", "to_scene_frame"]

POLYLINE_FIELDS = ("x", "y", "dx", "dy", "width")  # per resampled point: position, unit travel direction, lane width
_MIN_PIECE_LENGTH = 0.1  # metres; shorter lane pieces (grazing the crop disc) carry no information
_EXCLUDED_LANELET_SUBTYPES = {"crosswalk", "walkway", "stairs", "bicycle_lane"}


@dataclass(frozen=True)
class MapCrop:
    """A map around one scene, in the scene frame.

    Attributes:
        polylines: [L, P, 5] float32 (x, y, dx, dy, width) per point, nearest lane pieces first.
        defined: [L] bool, False for padding rows.
        drivable_area: Shapely geometry (the area within a square of half-side radius + margin).
    """

    polylines: np.ndarray
    defined: np.ndarray
    drivable_area: shapely.Geometry


def to_scene_frame(xy: np.ndarray, centre: Sequence[float], yaw: float) -> np.ndarray:
    """Maps world points [..., 2] into the frame centred on ``centre`` whose +x axis has heading ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    d = np.asarray(xy, np.float64) - np.asarray(centre, np.float64)
    return np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c], axis=-1)


class RoadMap:
    """Drivable area plus directed lane centrelines of one road network.

    Args:
        drivable_area: Shapely (Multi)Polygon in metres; prepared here once.
        centrelines: sequence of [K_i, 2] arrays (K_i >= 2), ordered in the direction of travel.
        widths: [num_lanes] lane widths in metres (> 0).
        name: shown in errors and manifests.
    """

    def __init__(self, drivable_area, centrelines: Sequence[np.ndarray], widths, name: str = "map"):
        if not isinstance(drivable_area, shapely.Geometry) or drivable_area.is_empty:
            raise ValueError(f"map {name!r}: the drivable area must be a non-empty Shapely geometry")
        from oracles.traffic import check_drivable_area

        check_drivable_area([drivable_area], what=f"map {name!r}: the drivable area")
        widths = np.asarray(widths, np.float64)
        if len(centrelines) == 0 or widths.shape != (len(centrelines),):
            raise ValueError(f"map {name!r}: need >= 1 centreline and one width per centreline, got "
                             f"{len(centrelines)} centrelines and widths of shape {widths.shape}")
        if not (np.isfinite(widths).all() and (widths > 0).all()):
            raise ValueError(f"map {name!r}: lane widths must be finite and > 0")
        for i, line in enumerate(centrelines):
            line = np.asarray(line)
            if line.ndim != 2 or line.shape[0] < 2 or line.shape[1] != 2 or not np.isfinite(line).all():
                raise ValueError(f"map {name!r}: centreline {i} must be a finite [K >= 2, 2] array, got {line.shape}")
        self.name = name
        self.drivable_area = drivable_area
        shapely.prepare(self.drivable_area)
        self.lines = _ragged("line", centrelines)
        self.widths = widths
        self.tree = shapely.STRtree(self.lines)  # built once per map, queried per crop

    def __repr__(self):
        return f"RoadMap({self.name!r}, {len(self.lines)} lanes, bounds={tuple(round(float(b), 1) for b in self.bounds)})"

    @property
    def bounds(self) -> np.ndarray:
        """[4] (xmin, ymin, xmax, ymax) of the drivable area."""
        return np.asarray(self.drivable_area.bounds)

    def crop(self, centre, yaw: float, radius: float, num_points: int, max_lines: int,
             area_margin: float = 10.0) -> MapCrop:
        """Local map around ``centre`` in the scene frame (see ``MapCrop``).

        Lane centrelines are clipped to the disc of ``radius``; each piece is resampled to ``num_points`` points
        evenly by arc length; the ``max_lines`` pieces closest to the centre are kept. The drivable area is
        clipped to a square of half-side ``radius + area_margin`` so boxes near the crop edge are judged on the
        full road around them.

        Args:
            centre: (x, y) in map coordinates; yaw: heading of the scene's +x axis (radians).
            radius, area_margin: metres (> 0, >= 0); num_points >= 2; max_lines >= 1.
        """
        if radius <= 0 or area_margin < 0 or num_points < 2 or max_lines < 1:
            raise ValueError(f"crop needs radius > 0, area_margin >= 0, num_points >= 2, max_lines >= 1; got "
                             f"{radius}, {area_margin}, {num_points}, {max_lines}")
        centre = np.asarray(centre, np.float64)
        if centre.shape != (2,) or not np.isfinite(centre).all() or not np.isfinite(yaw):
            raise ValueError(f"crop centre must be a finite (x, y) and yaw finite, got {centre}, {yaw}")
        points, lane_idx = self._lane_pieces(centre, radius, num_points, max_lines)
        polylines = np.zeros((max_lines, num_points, len(POLYLINE_FIELDS)), np.float32)
        defined = np.zeros(max_lines, bool)
        if len(points):
            local = to_scene_frame(points, centre, yaw)  # [L, P, 2]
            polylines[: len(points), :, :2] = local
            polylines[: len(points), :, 2:4] = _unit_tangents(local)
            polylines[: len(points), :, 4] = self.widths[lane_idx][:, None]
            defined[: len(points)] = True
        half = radius + area_margin
        area = shapely.clip_by_rect(self.drivable_area, *(centre - half), *(centre + half))
        area = shapely.transform(area, lambda xy: to_scene_frame(xy, centre, yaw))
        return MapCrop(polylines, defined, area)

    def _lane_pieces(self, centre, radius, num_points, max_lines):
        """World points [L, P, 2] of the lane pieces inside the disc, nearest first, and their lane indices [L]."""
        disc = shapely.Point(centre).buffer(radius, quad_segs=16)
        cand = self.tree.query(disc, predicate="intersects")
        if len(cand) == 0:
            return np.zeros((0, num_points, 2)), np.zeros(0, int)
        parts, which = shapely.get_parts(shapely.intersection(self.lines[cand], disc), return_index=True)
        keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) > _MIN_PIECE_LENGTH)
        parts, lane_idx = parts[keep], cand[which[keep]]
        if len(parts) == 0:
            return np.zeros((0, num_points, 2)), np.zeros(0, int)
        order = np.argsort(shapely.distance(parts, shapely.Point(centre)), kind="stable")[:max_lines]
        parts, lane_idx = parts[order], lane_idx[order]
        frac = np.linspace(0.0, 1.0, num_points)
        pts = shapely.line_interpolate_point(parts[:, None], frac[None, :], normalized=True)
        xy = shapely.get_coordinates(pts.ravel()).reshape(len(parts), num_points, 2)
        # Overlay does not promise to keep a line's orientation: restore the direction of travel.
        start = shapely.line_locate_point(self.lines[lane_idx], shapely.points(xy[:, 0]))
        end = shapely.line_locate_point(self.lines[lane_idx], shapely.points(xy[:, -1]))
        xy[end < start] = xy[end < start, ::-1]
        return xy, lane_idx


def _ragged(kind, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Shapely LineStrings (``kind="line"``) or Polygons (``"polygon"``) from ragged [K_i, 2] arrays, vectorised."""
    if not len(arrays):
        return np.array([], dtype=object)
    coords = np.concatenate([np.asarray(a, np.float64) for a in arrays])
    indices = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
    if kind == "line":
        return shapely.linestrings(coords, indices=indices)
    return shapely.polygons(shapely.linearrings(coords, indices=indices))


def _unit_tangents(xy: np.ndarray) -> np.ndarray:
    """Unit direction [L, P, 2] along polylines [L, P, 2] (central differences; zero for degenerate pieces)."""
    d = np.gradient(xy, axis=1)
    n = np.linalg.norm(d, axis=-1, keepdims=True)
    return np.divide(d, n, out=np.zeros_like(d), where=n > 1e-9)


def _require_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"map file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"map file is empty: {path}")
    return path


def read_sumo_net(path: str | os.PathLike, vclass: str = "passenger") -> RoadMap:
    """Reads a SUMO ``.net.xml`` (or ``.net.xml.gz``) with sumolib.

    Drivable area = lanes that allow ``vclass``, each buffered by half its width with flat caps, unioned with every
    junction polygon (without junctions a large share of boxes at intersections looks off-road). Centrelines are
    those lanes' shapes, junction-internal lanes included.
    """
    try:
        import sumolib
    except ImportError as e:
        raise ImportError("reading SUMO networks needs sumolib: pip install 'genneg[traffic]'") from e
    path = _require_file(path)
    try:
        net = sumolib.net.readNet(str(path), withInternal=True)
    except (xml.sax.SAXException, EOFError, OSError, zlib.error, ValueError, KeyError, IndexError) as e:
        raise ValueError(f"{path} is not a readable SUMO network ({type(e).__name__}: {e})") from e
    lanes = [lane for edge in net.getEdges(withInternal=True) for lane in edge.getLanes()
             if lane.allows(vclass) and len(lane.getShape()) >= 2]
    if not lanes:
        raise ValueError(f"{path}: no lane allows vehicle class {vclass!r}; is this a SUMO road network?")
    shapes = [np.asarray(lane.getShape(), np.float64)[:, :2] for lane in lanes]
    widths = np.array([lane.getWidth() for lane in lanes])
    lane_area = shapely.buffer(_ragged("line", shapes), widths / 2, cap_style="flat")
    junctions = [np.asarray(n.getShape(), np.float64)[:, :2] for n in net.getNodes() if len(n.getShape()) >= 3]
    junction_area = shapely.make_valid(_ragged("polygon", junctions))
    area = shapely.union_all(np.concatenate([lane_area, junction_area]))
    return RoadMap(area, shapes, widths, name=path.name.split(".")[0])


def read_lanelet2_map(path: str | os.PathLike, origin: tuple[float, float] = (0.0, 0.0)) -> RoadMap:
    """Reads a lanelet2 ``.osm`` map projected with ``UtmProjector(Origin(*origin))`` (INTERACTION uses (0, 0)).

    Drivable area = union of the lanelet polygons (crosswalks and walkways excluded); centrelines = lanelet
    centrelines in their direction of travel; width = lanelet area / centreline length.
    """
    try:
        import lanelet2
        from lanelet2.projection import UtmProjector
    except ImportError as e:
        raise ImportError("reading lanelet2 maps needs lanelet2: pip install 'genneg[traffic]'") from e
    path = _require_file(path)
    try:
        lmap, errors = lanelet2.io.loadRobust(str(path), UtmProjector(lanelet2.io.Origin(*origin)))
    except Exception as e:  # noqa: BLE001 - lanelet2 raises its own C++ exception types
        raise ValueError(f"{path} is not a readable lanelet2 map ({type(e).__name__}: {e})") from e
    polygons, lines = [], []
    for ll in lmap.laneletLayer:
        attrs = ll.attributes
        if "subtype" in attrs and attrs["subtype"] in _EXCLUDED_LANELET_SUBTYPES:
            continue
        polygon = shapely.make_valid(shapely.Polygon([(p.x, p.y) for p in ll.polygon2d()]))
        line = np.array([(p.x, p.y) for p in ll.centerline], np.float64)
        if polygon.area > 0 and len(line) >= 2:
            polygons.append(polygon)
            lines.append(line)
    if not lines:
        detail = f"; loader errors: {errors[:3]}" if errors else ""
        raise ValueError(f"{path}: no drivable lanelet found (is this a lanelet2 map?){detail}")
    widths = np.array([p.area for p in polygons]) / shapely.length(_ragged("line", lines))
    return RoadMap(shapely.union_all(polygons), lines, widths, name=path.name.split(".")[0])
