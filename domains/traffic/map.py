"""Road maps: a drivable area (Shapely, prepared once) and lane centrelines, read from SUMO or lanelet2.

A ``RoadMap`` lives in its source's metric frame (SUMO network coordinates, or lanelet2's local UTM frame). Its
lanes are cut once into ``LaneSegments`` of at most ``segment_length`` metres with a fixed number of points each;
a scene sees every segment that reaches within its radius plus a margin (``select_segments``: a crop by coverage,
not by count, so junction-internal lanes cannot use up the budget), nearest first, padded to a maximum. A ``MapCrop``
is one scene's view: those segments and the drivable area around it, both in the scene frame (centre at the origin,
the centre vehicle facing +x).

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

__all__ = ["POLYLINE_FIELDS", "MapCrop", "RoadMap", "LaneSegments", "cut_lanes", "select_segments",
           "segment_features", "lane_distance", "read_sumo_net", "read_lanelet2_map", "to_scene_frame"]

# per point: position, unit travel direction, lane width, 1 on junction-internal lanes
POLYLINE_FIELDS = ("x", "y", "dx", "dy", "width", "internal")
_EXCLUDED_LANELET_SUBTYPES = {"crosswalk", "walkway", "stairs", "bicycle_lane"}


@dataclass(frozen=True)
class MapCrop:
    """A map around one scene, in the scene frame.

    Attributes:
        polylines: [L, P, 6] float32 (``POLYLINE_FIELDS``) per point, nearest lane segments first.
        defined: [L] bool, False for padding rows.
        drivable_area: Shapely geometry (the area within a square of half-side radius + margin).
    """

    polylines: np.ndarray
    defined: np.ndarray
    drivable_area: shapely.Geometry


def to_scene_frame(xy: np.ndarray, centre: Sequence[float], yaw: float) -> np.ndarray:
    """Maps world points [..., 2] into the frame centred on ``centre`` whose +x axis has heading ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)  # yaw may be an array that broadcasts against xy[..., 0]
    d = np.asarray(xy, np.float64) - np.asarray(centre, np.float64)
    return np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c], axis=-1)


class RoadMap:
    """Drivable area plus directed lane centrelines of one road network.

    Args:
        drivable_area: Shapely (Multi)Polygon in metres; prepared here once.
        centrelines: sequence of [K_i, 2] arrays (K_i >= 2), ordered in the direction of travel.
        widths: [num_lanes] lane widths in metres (> 0).
        name: shown in errors and manifests.
        internal: [num_lanes] bool, True for junction-internal lanes (None: none are).
    """

    def __init__(self, drivable_area, centrelines: Sequence[np.ndarray], widths, name: str = "map", internal=None):
        if not isinstance(drivable_area, shapely.Geometry) or drivable_area.is_empty:
            raise ValueError(f"map {name!r}: the drivable area must be a non-empty Shapely geometry")
        from genneg.oracles.traffic import check_drivable_area

        check_drivable_area([drivable_area], what=f"map {name!r}: the drivable area")
        widths = np.asarray(widths, np.float64)
        if len(centrelines) == 0 or widths.shape != (len(centrelines),):
            raise ValueError(f"map {name!r}: need >= 1 centreline and one width per centreline, got "
                             f"{len(centrelines)} centrelines and widths of shape {widths.shape}")
        if not (np.isfinite(widths).all() and (widths > 0).all()):
            raise ValueError(f"map {name!r}: lane widths must be finite and > 0")
        internal = np.zeros(len(widths), bool) if internal is None else np.asarray(internal, bool)
        if internal.shape != widths.shape:
            raise ValueError(f"map {name!r}: need one internal flag per centreline, got shape {internal.shape}")
        for i, line in enumerate(centrelines):
            line = np.asarray(line)
            if line.ndim != 2 or line.shape[0] < 2 or line.shape[1] != 2 or not np.isfinite(line).all():
                raise ValueError(f"map {name!r}: centreline {i} must be a finite [K >= 2, 2] array, got {line.shape}")
        self.name = name
        self.drivable_area = drivable_area
        shapely.prepare(self.drivable_area)
        self.lines = _ragged("line", centrelines)
        self.widths, self.internal = widths, internal
        self._segments: dict = {}

    def __repr__(self):
        bounds = tuple(round(float(b), 1) for b in self.bounds)
        return f"RoadMap({self.name!r}, {len(self.lines)} lanes, bounds={bounds})"

    @property
    def bounds(self) -> np.ndarray:
        """[4] (xmin, ymin, xmax, ymax) of the drivable area."""
        return np.asarray(self.drivable_area.bounds)

    def segments(self, segment_length: float, num_points: int) -> "LaneSegments":
        """The lanes cut into segments (computed once per setting, see ``cut_lanes``)."""
        key = (float(segment_length), int(num_points))
        if key not in self._segments:
            self._segments[key] = cut_lanes(self.lines, self.widths, self.internal, segment_length, num_points)
        return self._segments[key]

    def area_crop(self, centre, yaw: float, half: float):
        """The drivable area within the square of half-side ``half`` around ``centre``, in the scene frame."""
        centre = np.asarray(centre, np.float64)
        lo, hi = centre - half, centre + half
        try:
            area = shapely.clip_by_rect(self.drivable_area, *lo, *hi)
        except shapely.errors.GEOSException:  # GEOS's rectangle clipper can build a degenerate ring; the overlay cannot
            area = shapely.intersection(self.drivable_area, shapely.box(*lo, *hi))
        return shapely.transform(area, lambda xy: to_scene_frame(xy, centre, yaw))

    def crop(self, centre, yaw: float, radius: float, num_points: int, max_lines: int,
             area_margin: float = 10.0, segment_length: float = 20.0) -> MapCrop:
        """Local map around ``centre`` in the scene frame (see ``MapCrop``).

        Every lane segment (at most ``segment_length`` metres, ``num_points`` points) that reaches within
        ``radius`` of the centre, nearest first, at most ``max_lines`` of them. The drivable area is clipped to a
        square of half-side ``radius + area_margin`` so boxes near the crop edge are judged on the road around them.

        Args:
            centre: (x, y) in map coordinates; yaw: heading of the scene's +x axis (radians).
            radius, area_margin: metres (> 0, >= 0); num_points >= 2; max_lines >= 1.
        """
        if radius <= 0 or area_margin < 0 or num_points < 2 or max_lines < 1 or segment_length <= 0:
            raise ValueError(f"crop needs radius > 0, area_margin >= 0, num_points >= 2, max_lines >= 1 and "
                             f"segment_length > 0; got {radius}, {area_margin}, {num_points}, {max_lines}, "
                             f"{segment_length}")
        centre = np.asarray(centre, np.float64)
        if centre.shape != (2,) or not np.isfinite(centre).all() or not np.isfinite(yaw):
            raise ValueError(f"crop centre must be a finite (x, y) and yaw finite, got {centre}, {yaw}")
        segs = self.segments(segment_length, num_points)
        idx, _ = select_segments(segs, centre[None], radius, max_lines)
        polylines, defined = segment_features(segs, idx, np.array([[*centre, yaw]]))
        return MapCrop(polylines[0], defined[0], self.area_crop(centre, yaw, radius + area_margin))


@dataclass(frozen=True)
class LaneSegments:
    """A network's lanes cut into pieces of equal length (at most a set length), each with P points.

    Attributes:
        xy: [K, P, 2] float64 points in the map frame, in the direction of travel.
        width: [K] lane width (metres); internal: [K] bool, junction-internal lane.
        lines: [K] Shapely LineStrings of the points (for distance queries); tree: their STRtree.
    """

    xy: np.ndarray
    width: np.ndarray
    internal: np.ndarray
    lines: np.ndarray
    tree: shapely.STRtree

    def __len__(self) -> int:
        return len(self.width)


def cut_lanes(lines: np.ndarray, widths, internal, segment_length: float, num_points: int) -> LaneSegments:
    """Cuts every lane into ``ceil(length / segment_length)`` equal pieces and samples ``num_points`` points evenly
    along each (the pieces' end points are shared), so each piece is a fixed-size token whatever its lane."""
    if segment_length <= 0 or num_points < 2:
        raise ValueError(f"need segment_length > 0 and num_points >= 2, got {segment_length}, {num_points}")
    length = shapely.length(lines)
    # a lane a rounding error longer than a whole number of segments is not given an extra piece
    pieces = np.maximum(np.ceil(length / segment_length - 1e-6), 1).astype(int)
    lane = np.repeat(np.arange(len(lines)), pieces)
    k = np.arange(len(lane)) - np.repeat(np.cumsum(pieces) - pieces, pieces)  # piece number within its lane
    frac = (k[:, None] + np.linspace(0.0, 1.0, num_points)[None]) / pieces[lane][:, None]  # [K, P] of the lane
    pts = shapely.line_interpolate_point(lines[lane][:, None], frac, normalized=True)
    xy = shapely.get_coordinates(pts.ravel()).reshape(len(lane), num_points, 2)
    segs = shapely.linestrings(xy)
    return LaneSegments(xy, np.asarray(widths, np.float64)[lane], np.asarray(internal, bool)[lane], segs,
                        shapely.STRtree(segs))


def select_segments(segs: LaneSegments, centres: np.ndarray, reach: float, max_lines: int):
    """For each centre, the segments that come within ``reach`` metres of it, nearest first.

    Args:
        centres: [S, 2] points in the map frame.

    Returns:
        (idx [S, max_lines] int64 segment indices, -1 for padding; dropped [S] int, segments within reach that did
        not fit in ``max_lines``).
    """
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    boxes = shapely.box(*(centres - reach).T, *(centres + reach).T)
    scene, seg = segs.tree.query(boxes)  # envelope candidates; exact distances below, in numpy
    dist = _point_polyline_distance(centres[scene], segs.xy[seg])
    scene, seg, dist = scene[dist <= reach], seg[dist <= reach], dist[dist <= reach]
    order = np.lexsort((seg, dist, scene))  # per scene, nearest first (ties by index: deterministic)
    scene, seg = scene[order], seg[order]
    counts = np.bincount(scene, minlength=len(centres))
    rank = np.arange(len(scene)) - np.repeat(np.cumsum(counts) - counts, counts)
    idx = np.full((len(centres), max_lines), -1, np.int64)
    keep = rank < max_lines
    idx[scene[keep], rank[keep]] = seg[keep]
    return idx, np.maximum(counts - max_lines, 0)


def segment_features(segs: LaneSegments, idx: np.ndarray, origin: np.ndarray):
    """Selected segments in each scene's frame.

    Args:
        idx: [S, L] segment indices (-1 = padding); origin: [S, 3] world (x, y, yaw) of each scene frame.

    Returns:
        (polylines [S, L, P, 6] float32 with ``POLYLINE_FIELDS``, zero on padding; defined [S, L] bool).
    """
    idx, origin = np.asarray(idx), np.asarray(origin, np.float64)
    defined = idx >= 0
    safe = np.where(defined, idx, 0)
    local = to_scene_frame(segs.xy[safe], origin[:, None, None, :2], origin[:, None, None, 2])  # [S, L, P, 2]
    out = np.zeros(idx.shape + (segs.xy.shape[1], len(POLYLINE_FIELDS)), np.float32)
    out[..., :2] = local
    out[..., 2:4] = _unit_tangents(local)
    out[..., 4] = segs.width[safe][..., None]
    out[..., 5] = segs.internal[safe][..., None]
    out[~defined] = 0.0
    return out, defined


def _point_polyline_distance(p: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Distance [M] of points [M, 2] to polylines [M, P, 2] (pairwise, row by row)."""
    a, b = xy[:, :-1], xy[:, 1:]
    ab, ap = b - a, p[:, None] - a
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(-1)


def lane_distance(points: np.ndarray, polylines: np.ndarray, defined: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Distance of each point to the nearest defined polyline of its scene (inf when the scene has none).

    Args:
        points: [S, M, 2]; polylines: [S, L, P, >= 2] (only x, y are read); defined: [S, L] bool.

    Returns:
        [S, M] float64 metres.
    """
    out = np.empty(np.shape(points)[:2])
    for lo in range(0, len(out), chunk):
        p = np.asarray(points[lo:lo + chunk], np.float64)[:, :, None, None]  # [s, M, 1, 1, 2]
        xy = np.asarray(polylines[lo:lo + chunk, ..., :2], np.float64)[:, None]  # [s, 1, L, P, 2]
        a, b = xy[..., :-1, :], xy[..., 1:, :]
        ab = b - a
        t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
        d = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(-1)  # [s, M, L]
        d[~np.broadcast_to(np.asarray(defined[lo:lo + chunk], bool)[:, None], d.shape)] = np.inf
        out[lo:lo + chunk] = d.min(-1)
    return out


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
    """Unit direction [..., P, 2] along polylines [..., P, 2] (central differences; zero for degenerate pieces)."""
    d = np.gradient(xy, axis=-2)
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
    internal = np.array([lane.getEdge().getFunction() == "internal" for lane in lanes])
    lane_area = shapely.buffer(_ragged("line", shapes), widths / 2, cap_style="flat")
    junctions = [np.asarray(n.getShape(), np.float64)[:, :2] for n in net.getNodes() if len(n.getShape()) >= 3]
    junction_area = shapely.make_valid(_ragged("polygon", junctions))
    area = shapely.union_all(np.concatenate([lane_area, junction_area]))
    return RoadMap(area, shapes, widths, name=path.name.split(".")[0], internal=internal)


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
