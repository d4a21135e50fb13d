"""Traffic-scene oracles: box collision and off-road, as pure vectorised numpy / Shapely functions.

A scene holds up to N vehicles as oriented boxes ``boxes[..., 5] = (x, y, yaw, length, width)`` in metres and
radians (x, y = box centre, yaw = heading measured from +x, counter-clockwise) and a boolean ``defined[..., N]``
that marks real vehicles (False = padding; padded slots may hold anything and are never checked).

Definitions (``docs/traffic.md`` compares them with the field's variants):

- **Collision** is an overlap deeper than ``COLLISION_TOLERANCE`` (1 mm): two boxes collide when their
  projections overlap by more than 1 mm on each of the four box axes (separating-axis test, as Waymax's
  ``metrics/overlap.py`` but with a tolerance instead of a strict inequality). For rectangles the smallest of
  those four overlaps is the penetration depth, the shortest move that separates them. Boxes that touch (share
  an edge or a corner) never collide, including boxes placed end to end as a user writes it,
  ``b.x = a.x + (a.length + b.length) / 2``, whose touching is exact on paper but not in floating point (the
  projections round by ~1e-15 m either way). nuPlan's ``intersects`` would count touching boxes. Shapely's
  "interiors intersect" agrees on every pair except those overlapping by less than 1 mm, which Shapely calls
  collisions and this rule does not (the tests compare with Shapely references kept beside them,
  ``tests/traffic/overlap_references.py``).
- **Off-road** follows nuPlan's drivable-area rule: a vehicle is off-road when any of its four corners lies more
  than ``tolerance`` metres (default 0.3 m, nuPlan's ``max_violation_threshold``) outside the drivable area.
  The tolerance also absorbs slivers between lane buffers and junction shapes in SUMO maps.

The Oracle wrappers are registered as ``traffic:collision``, ``traffic:offroad`` and ``traffic:scene`` (both
reasons). They read ``boxes``, ``defined`` and ``drivable_area`` from the samples mapping, falling back to the
condition mapping (decoded samples usually carry boxes, the condition the mask and the map crop).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import shapely

from genneg.oracle import FunctionOracle, OracleResult, register_oracle

__all__ = [
    "BOX_FIELDS",
    "COLLISION_TOLERANCE",
    "DEFAULT_OFFROAD_TOLERANCE",
    "check_boxes",
    "check_drivable_area",
    "box_corners",
    "pairwise_overlap_sat",
    "vehicle_collisions",
    "collision",
    "offroad",
    "scene_infractions",
    "infraction_rates",
    "SceneOracle",
]

BOX_FIELDS = ("x", "y", "yaw", "length", "width")
DEFAULT_OFFROAD_TOLERANCE = 0.3  # metres, nuPlan's drivable-area compliance threshold
# metres of overlap two boxes may share on some axis without colliding: far below any vehicle's size and any
# position error that matters, far above floating-point rounding of metre-scale coordinates
COLLISION_TOLERANCE = 1e-3
_PADDING_BOX = np.array([0.0, 0.0, 0.0, 1.0, 1.0])


def check_boxes(boxes, defined=None) -> tuple[np.ndarray, np.ndarray]:
    """Validates a batch of scenes and returns float64 boxes and a boolean mask.

    Args:
        boxes: [B, N, 5] (x, y, yaw, length, width).
        defined: [B, N] bool, True for real vehicles; None means every slot is a vehicle.

    Returns:
        (boxes [B, N, 5] float64 with undefined slots replaced by a unit box, defined [B, N] bool).

    Raises:
        ValueError: wrong shapes, an empty batch, a scene without vehicles, NaN/inf values or non-positive sizes
            in a defined slot.
    """
    raw = np.asarray(boxes)
    if raw.dtype.kind not in "fiub":
        raise ValueError(f"boxes must be a numeric array (x, y, yaw, length, width), got dtype {raw.dtype}")
    boxes = raw.astype(np.float64, order="C")  # always a copy
    if boxes.ndim != 3 or boxes.shape[-1] != 5:
        raise ValueError(f"boxes must have shape [B, N, 5] (x, y, yaw, length, width), got {boxes.shape}")
    if boxes.shape[0] == 0 or boxes.shape[1] == 0:
        raise ValueError(f"boxes hold no scene or no vehicle slot: shape {boxes.shape}")
    defined = np.ones(boxes.shape[:2], bool) if defined is None else np.asarray(defined)
    if defined.shape != boxes.shape[:2]:
        raise ValueError(f"defined must have shape {boxes.shape[:2]} to match boxes, got {defined.shape}")
    if defined.dtype != bool:
        if defined.dtype.kind not in "biu" or not np.isin(defined, (0, 1)).all():
            raise ValueError(f"defined must be a boolean mask, got dtype {defined.dtype}")
        defined = defined.astype(bool)
    empty = ~defined.any(axis=1)
    if empty.any():
        raise ValueError(f"{int(empty.sum())} scene(s) have no defined vehicle, e.g. scene {int(np.argmax(empty))}")
    if not np.isfinite(boxes).all():  # the per-slot check only when some value (maybe padding) is NaN or inf
        bad = ~np.isfinite(boxes).all(axis=-1) & defined
        if bad.any():
            b, n = np.argwhere(bad)[0]
            raise ValueError(
                f"{int(bad.sum())} defined box(es) hold NaN or inf, e.g. scene {b} vehicle {n}: {boxes[b, n]}"
            )
    small = ((boxes[..., 3] <= 0) | (boxes[..., 4] <= 0)) & defined
    if small.any():
        b, n = np.argwhere(small)[0]
        raise ValueError(
            f"{int(small.sum())} defined box(es) have a non-positive length or width, "
            f"e.g. scene {b} vehicle {n}: length={boxes[b, n, 3]}, width={boxes[b, n, 4]}"
        )
    # Padding may hold anything: park it as a unit box so no arithmetic warns on it; its results are masked.
    # (``boxes`` is our own copy, so it is overwritten in place.)
    if not defined.all():
        boxes[~defined] = _PADDING_BOX
    return boxes, defined


def box_corners(boxes) -> np.ndarray:
    """Corners of oriented boxes, counter-clockwise: front-left, rear-left, rear-right, front-right.

    Args:
        boxes: [..., 5] (x, y, yaw, length, width).

    Returns:
        [..., 4, 2] corner coordinates (a closed ring without the repeated first point).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape[-1] != 5:
        raise ValueError(f"boxes must end in 5 fields (x, y, yaw, length, width), got shape {boxes.shape}")
    cos, sin = np.cos(boxes[..., 2]), np.sin(boxes[..., 2])
    hl, hw = boxes[..., 3] / 2, boxes[..., 4] / 2
    front = np.stack([hl * cos, hl * sin], axis=-1)  # [..., 2] centre -> front middle
    left = np.stack([-hw * sin, hw * cos], axis=-1)  # [..., 2] centre -> left middle
    centre = boxes[..., None, :2]
    signs = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])  # (front, left) per corner
    return centre + signs[:, :1] * front[..., None, :] + signs[:, 1:] * left[..., None, :]


def pairwise_overlap_sat(boxes, defined=None, *, tolerance: float = COLLISION_TOLERANCE,
                         chunk: int = 256) -> np.ndarray:
    """Pairwise collision of oriented boxes by the separating-axis test with an overlap tolerance.

    Two rectangles are disjoint iff their projections are disjoint on one of the four edge normals. With
    ``d = c_j - c_i`` and ``c, s = |cos|, |sin|`` of the yaw difference, box j's half-extent on box i's length
    axis is ``hl_j c + hw_j s`` (and symmetrically), so each axis is one comparison. A pair collides when its
    projections overlap by more than ``tolerance`` on all four axes: ``|d.u_i| < (hl_i - tol) + hl_j c + hw_j s``.
    Touching boxes (overlap 0 up to rounding) are separated.

    Speed: ``A[i, j]`` = "not separated on box i's two axes" is computed once; the tests on box j's axes for
    the pair (i, j) are exactly ``A[j, i]`` (``d`` only changes sign, ``c`` and ``s`` are symmetric, and the
    tolerance sits on the axis owner's half-extent, so the float64 results are bit for bit those of the four-test
    formula), hence ``hit = A & A.T``: half the arithmetic. The work runs in an ``[N, N, scenes]`` layout (long
    inner loops for numpy) on ``chunk`` scenes at a time, in a few preallocated buffers written with ``out=``.

    Args:
        boxes: [B, N, 5]; defined: [B, N] bool or None.
        tolerance: metres of overlap that do not count (>= 0; 0 is the strict rule, where rounding decides
            touching pairs).
        chunk: scenes per block of work (changes speed and memory, not the result).

    Returns:
        bool [B, N, N], symmetric, False on the diagonal and for any pair with an undefined box.
    """
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"collision tolerance must be a finite number >= 0 metres, got {tolerance}")
    boxes, defined = check_boxes(boxes, defined)
    fields = np.ascontiguousarray(boxes.transpose(2, 1, 0))  # [5, N, B]: a field of a vehicle over scenes
    x, y, yaw = fields[0], fields[1], fields[2]
    hl, hw = fields[3] / 2, fields[4] / 2
    own = (hl - tolerance, hw - tolerance)  # the axis owner's half-extents carry the tolerance
    cos, sin = np.cos(yaw), np.sin(yaw)
    n, num = x.shape
    k = max(1, min(int(chunk), num))
    a = np.empty((n, n, num), bool)  # A[i, j, b]: box j not separated from box i on box i's two axes
    buffers = np.empty((7, n, n, k))
    scratch = np.empty((n, n, k), bool)
    for lo in range(0, num, k):
        sl = slice(lo, min(lo + k, num))
        w = sl.stop - lo
        _own_axes_overlap(x[:, sl], y[:, sl], cos[:, sl], sin[:, sl], (hl[:, sl], hw[:, sl]),
                          (own[0][:, sl], own[1][:, sl]), buffers[..., :w], scratch[..., :w], out=a[..., sl])
    a &= a.transpose(1, 0, 2)  # and not separated on box j's axes either
    return _mask_pairs(np.ascontiguousarray(a.transpose(2, 0, 1)), defined)


def _own_axes_overlap(x, y, cos, sin, half, own, buffers, scratch, out) -> None:
    """``out[i, j] = |d.u_i| < ol_i + hl_j c + hw_j s  and  |d.v_i| < ow_i + hl_j s + hw_j c`` for [N, k] inputs
    (``u_i``, ``v_i`` = box i's length and width axes, ``d = c_j - c_i``, ``(hl, hw) = half``, ``(ol, ow) = own`` =
    the half-extents less the tolerance), in the buffers given ([7, N, N, k] float, [N, N, k] bool)."""
    dx, dy, c, s, t1, t2, t3 = buffers
    cos_i, sin_i, ol_i, ow_i = cos[:, None], sin[:, None], own[0][:, None], own[1][:, None]
    cos_j, sin_j, hl_j, hw_j = cos[None], sin[None], half[0][None], half[1][None]
    np.subtract(x[None], x[:, None], out=dx)  # dx[i, j] = x_j - x_i
    np.subtract(y[None], y[:, None], out=dy)
    np.multiply(cos_i, cos_j, out=c)  # c = |cos_i cos_j + sin_i sin_j| = |cos(yaw_j - yaw_i)|
    c += np.multiply(sin_i, sin_j, out=t1)
    np.abs(c, out=c)
    np.multiply(cos_i, sin_j, out=s)  # s = |cos_i sin_j - sin_i cos_j| = |sin(yaw_j - yaw_i)|
    s -= np.multiply(sin_i, cos_j, out=t1)
    np.abs(s, out=s)
    # box i's length axis: |dx cos_i + dy sin_i| < ol_i + hl_j c + hw_j s
    np.multiply(dx, cos_i, out=t1)
    t1 += np.multiply(dy, sin_i, out=t2)
    np.abs(t1, out=t1)
    np.add(ol_i, np.multiply(hl_j, c, out=t2), out=t2)
    t2 += np.multiply(hw_j, s, out=t3)
    np.less(t1, t2, out=out)
    # box i's width axis: |dy cos_i - dx sin_i| < ow_i + hl_j s + hw_j c
    np.multiply(dy, cos_i, out=t1)
    t1 -= np.multiply(dx, sin_i, out=t2)
    np.abs(t1, out=t1)
    np.add(ow_i, np.multiply(hl_j, s, out=t2), out=t2)
    t2 += np.multiply(hw_j, c, out=t3)
    out &= np.less(t1, t2, out=scratch)


def _mask_pairs(hit: np.ndarray, defined: np.ndarray) -> np.ndarray:
    n = defined.shape[1]
    return hit & defined[:, :, None] & defined[:, None, :] & ~np.eye(n, dtype=bool)


def vehicle_collisions(boxes, defined=None) -> np.ndarray:
    """bool [B, N]: True where a defined vehicle overlaps at least one other vehicle of its scene."""
    return pairwise_overlap_sat(boxes, defined).any(axis=-1)


def collision(boxes, defined=None) -> np.ndarray:
    """bool [B]: True where any two vehicles of the scene overlap."""
    return vehicle_collisions(boxes, defined).any(axis=-1)


def offroad(boxes, defined, drivable_area, tolerance: float = DEFAULT_OFFROAD_TOLERANCE) -> np.ndarray:
    """Per-vehicle off-road flags: any corner farther than ``tolerance`` metres outside the drivable area.

    Corners are first tested with ``contains_xy`` against the prepared area (cheap, and most corners are inside);
    only the outside ones get an exact ``distance``. An empty drivable area makes every vehicle off-road.

    Args:
        boxes: [B, N, 5] in the same frame as the drivable area; defined: [B, N] bool or None.
        drivable_area: one Shapely geometry shared by all scenes, or an array of B geometries (one per scene,
            e.g. each scene's map crop in its own frame). Geometries are prepared in place.
        tolerance: metres a corner may stick out (>= 0).

    Returns:
        bool [B, N], False for undefined slots.
    """
    boxes, defined = check_boxes(boxes, defined)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"offroad tolerance must be a finite number >= 0 metres, got {tolerance}")
    areas = _areas_per_scene(drivable_area, boxes.shape[0])
    corners = box_corners(boxes)  # [B, N, 4, 2]
    b_idx, n_idx = np.nonzero(defined)
    pts = corners[b_idx, n_idx].reshape(-1, 2)  # [V * 4, 2]
    geom = np.repeat(areas[b_idx], 4)
    inside = shapely.contains_xy(geom, pts[:, 0], pts[:, 1])
    far = np.zeros(len(pts), bool)
    out = ~inside
    if out.any():
        dist = shapely.distance(geom[out], shapely.points(pts[out]))
        far[out] = ~(dist <= tolerance)  # NaN (empty area) counts as off-road
    flags = np.zeros(defined.shape, bool)
    flags[b_idx, n_idx] = far.reshape(-1, 4).any(axis=1)
    return flags


def _areas_per_scene(drivable_area, num_scenes: int) -> np.ndarray:
    if isinstance(drivable_area, shapely.Geometry):
        areas = np.full(num_scenes, drivable_area, dtype=object)
    else:
        areas = np.asarray(drivable_area, dtype=object)
        if areas.shape != (num_scenes,):
            raise ValueError(f"drivable_area must be one geometry or {num_scenes} geometries, got shape {areas.shape}")
        if not all(isinstance(g, shapely.Geometry) for g in areas):
            raise ValueError("drivable_area must hold Shapely geometries (one per scene)")
    check_drivable_area(areas)
    shapely.prepare(areas)  # no-op on geometries that are already prepared
    return areas


def check_drivable_area(areas, what: str = "drivable area of scene {i}") -> None:
    """Raises a ValueError naming the first drivable area whose inside is ambiguous or that has no area.

    A self-intersecting ring ("bow tie") makes point-in-polygon tests answer arbitrarily, so it is refused rather than
    judged: an invalid geometry is refused when repairing it (``shapely.make_valid``) changes its area. Invalid but
    unambiguous ones pass (a degenerate sliver ring, as clipping a map crop can leave, adds no area). A geometry
    without area (a line, a point) is refused; an empty one passes (every vehicle on it is off-road). Each distinct
    geometry object is checked once (per-scene arrays repeat the same map crop many times).
    """
    unique = {id(g): (i, g) for i, g in enumerate(np.asarray(areas, dtype=object).ravel())}
    index, geoms = zip(*unique.values())
    geoms = np.asarray(geoms, dtype=object)
    empty, is_valid, area = shapely.is_empty(geoms), shapely.is_valid(geoms), shapely.area(geoms)
    ok = empty | (area > 0)
    suspect = np.flatnonzero(ok & ~is_valid)
    if len(suspect):
        repaired = shapely.area(shapely.make_valid(geoms[suspect]))
        ok[suspect] = np.isclose(repaired, area[suspect], rtol=1e-9, atol=1e-9)
    if not ok.all():
        k = int(np.argmin(ok))
        why = f"a {geoms[k].geom_type} without area" if is_valid[k] else shapely.is_valid_reason(geoms[k])
        raise ValueError(f"{what.format(i=index[k])} is not a valid polygon ({why}); repair the map (e.g. with "
                         "shapely.make_valid) or check its source")


def scene_infractions(boxes, defined=None, drivable_area=None, tolerance=DEFAULT_OFFROAD_TOLERANCE):
    """Per-vehicle infraction flags of each reason.

    Returns:
        {"collision": bool [B, N], "offroad": bool [B, N]} ("offroad" only when a drivable area is given).
    """
    boxes, defined = check_boxes(boxes, defined)
    flags = {"collision": vehicle_collisions(boxes, defined)}
    if drivable_area is not None:
        flags["offroad"] = offroad(boxes, defined, drivable_area, tolerance)
    return flags


def infraction_rates(flags: Mapping[str, np.ndarray], defined) -> dict[str, float]:
    """Scene and vehicle rates from per-vehicle flags ``{reason: bool [B, N]}``.

    Returns:
        ``{"<reason>": scenes with that infraction / scenes, "<reason>_per_vehicle": flagged / defined vehicles,
        "total": scenes with any infraction / scenes, "total_per_vehicle": ...}``.
    """
    defined = np.asarray(defined, bool)
    if not flags:
        raise ValueError("infraction_rates needs at least one reason")
    rates, any_flag = {}, np.zeros(defined.shape, bool)
    for name, f in flags.items():
        f = np.asarray(f, bool) & defined
        any_flag |= f
        rates[name], rates[f"{name}_per_vehicle"] = float(f.any(1).mean()), float(f.sum() / defined.sum())
    rates["total"], rates["total_per_vehicle"] = float(any_flag.any(1).mean()), float(any_flag.sum() / defined.sum())
    return rates


# ------------------------------------------------------------------------------------------------- Oracle wrappers


def _field(samples, cond, *keys, required=True):
    for source in (samples, cond):
        if isinstance(source, Mapping):
            for key in keys:
                if key in source and source[key] is not None:
                    return source[key]
    if isinstance(samples, np.ndarray) and keys[0] == "boxes":
        return samples
    if required:
        raise KeyError(f"traffic oracle needs {keys[0]!r} in the samples or the condition mapping")
    return None


def _unpack(samples, cond, need_area: bool):
    boxes = _field(samples, cond, "boxes")
    defined = _field(samples, cond, "defined", "mask", required=False)
    area = _field(samples, cond, "drivable_area", required=need_area)
    return np.asarray(boxes), None if defined is None else np.asarray(defined), area


class SceneOracle:
    """The traffic scene oracle: reasons ``collision`` and ``offroad``; a scene is valid with neither.

    Samples are ``{"boxes": [B, N, 5], "defined": [B, N]}`` (or a bare boxes array) with ``drivable_area``
    (one geometry or B geometries) in the samples or the condition.
    """

    reason_names = ("collision", "offroad")

    def __init__(self, tolerance: float = DEFAULT_OFFROAD_TOLERANCE, name: str = "traffic"):
        self.name, self.tolerance = name, float(tolerance)

    def per_vehicle(self, samples, cond=None) -> dict[str, np.ndarray]:
        """Per-vehicle flags {reason: bool [B, N]} (for per-vehicle rates and for red boxes in figures)."""
        boxes, defined, area = _unpack(samples, cond, need_area=True)
        return scene_infractions(boxes, defined, area, self.tolerance)

    def __call__(self, samples, cond=None) -> OracleResult:
        vehicles = self.per_vehicle(samples, cond)
        flags = {k: v.any(axis=1) for k, v in vehicles.items()}
        return OracleResult(~(flags["collision"] | flags["offroad"]), flags, elements=vehicles,
                            element_defined=_vehicle_mask(samples, cond, vehicles["collision"].shape))


def _vehicle_mask(samples, cond, shape) -> np.ndarray:
    """bool [B, N]: the real vehicles of a batch (per-vehicle flags are defined on them only)."""
    defined = _field(samples, cond, "defined", "mask", required=False)
    return np.ones(shape, bool) if defined is None else np.asarray(defined).astype(bool)


def _collision_valid(samples, cond=None) -> np.ndarray:
    boxes, defined, _ = _unpack(samples, cond, need_area=False)
    return ~collision(boxes, defined)


def _offroad_valid(samples, cond=None) -> np.ndarray:
    boxes, defined, area = _unpack(samples, cond, need_area=True)
    return ~offroad(boxes, defined, area).any(axis=1)


register_oracle("traffic:collision", lambda: FunctionOracle("collision", _collision_valid), overwrite=True)
register_oracle("traffic:offroad", lambda: FunctionOracle("offroad", _offroad_valid), overwrite=True)
register_oracle("traffic:scene", SceneOracle, overwrite=True)
