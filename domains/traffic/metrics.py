"""Evaluation measures of traffic scenes that validity alone cannot game (``docs/traffic.md``, "Evaluation").

- **Infraction rates** per scene (the oracle's verdict: the ego counts) and per generated vehicle (the ego is given,
  not generated, so it is no vehicle of the denominator; a generated vehicle that overlaps the ego is a collision of
  that vehicle), per reason, and per generated vehicle by band of distance from the ego.
- **Intervals bootstrapped over road networks**: scenes of one network share its roads and are not independent, so
  networks are resampled with replacement (a named random stream) and each rate is recomputed as a ratio of
  summed counts; 95 % percentile intervals. With fewer than two networks there is nothing to resample and the
  bounds are NaN.
- **Realism**: 1-D Wasserstein distances (W1) between the generated vehicles' box length and width, distance from
  the ego, distance to and heading relative to the nearest visible lane, and gap to the nearest other vehicle, and
  the same quantities of the held-out data's vehicles, so that shrinking or scattering boxes shows even where it
  lowers the infraction rate. Their intervals resample networks on both sides at once.

Every function is a pure numpy / Shapely function of boxes, masks, lane polylines and network ids.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from genneg.rng import numpy_rng
from genneg.oracles.traffic import check_boxes, scene_infractions

__all__ = ["BANDS", "REALISM", "realism_features", "nearest_lane", "network_weights", "bootstrap_interval",
           "wasserstein_1d", "infraction_measures", "realism_measures", "scene_features", "traffic_metrics"]

BANDS = (0.0, 10.0, 25.0)  # metres from the ego where each distance band starts; the last ends at the scene radius
REALISM = ("length_m", "width_m", "ego_distance_m", "lane_offset_m", "lane_heading_rad", "gap_m")
RATE_REPLICATES = 1000  # bootstrap replicates of the rates (a ratio of summed counts each: cheap)
DISTANCE_REPLICATES = 200  # of the Wasserstein distances (a product with every merged point each)
LEVEL = 0.95


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def nearest_lane(points: np.ndarray, yaw: np.ndarray, polylines: np.ndarray, map_defined: np.ndarray,
                 chunk: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the nearest visible lane centreline and the heading relative to that lane's direction there.

    Args:
        points: [S, M, 2] positions; yaw: [S, M] headings (radians); polylines: [S, L, P, >= 2] lane segments in
            the scenes' frames, points in the direction of travel; map_defined: [S, L] bool.

    Returns:
        (offset [S, M] metres, heading [S, M] = |yaw - lane direction| wrapped to [0, pi]); NaN where a scene
        sees no lane.
    """
    offset, heading = np.full(np.shape(yaw), np.nan), np.full(np.shape(yaw), np.nan)
    for lo in range(0, len(offset), chunk):
        sl = slice(lo, lo + chunk)
        xy = np.asarray(polylines[sl, ..., :2], np.float64)
        s = len(xy)
        # every piece of every lane, flattened to K = L * (P - 1) per scene; x and y apart (fast numpy loops)
        ax, ay = xy[:, :, :-1, 0].reshape(s, 1, -1), xy[:, :, :-1, 1].reshape(s, 1, -1)  # [s, 1, K]
        ux, uy = np.diff(xy[..., 0], axis=2).reshape(s, 1, -1), np.diff(xy[..., 1], axis=2).reshape(s, 1, -1)
        inv = 1.0 / np.maximum(ux * ux + uy * uy, 1e-12)
        p = np.asarray(points[sl], np.float64)
        dx, dy = p[..., 0:1] - ax, p[..., 1:2] - ay  # [s, M, K]
        t = np.clip((dx * ux + dy * uy) * inv, 0.0, 1.0)
        dx -= t * ux
        dy -= t * uy
        d2 = dx * dx + dy * dy
        d2[~np.broadcast_to(np.repeat(np.asarray(map_defined[sl], bool), xy.shape[2] - 1, axis=1)[:, None],
                            d2.shape)] = np.inf
        best = d2.argmin(-1)  # [s, M]
        dist = np.sqrt(np.take_along_axis(d2, best[..., None], -1)[..., 0])
        direction = np.arctan2(np.take_along_axis(uy[:, 0], best, 1), np.take_along_axis(ux[:, 0], best, 1))
        rel = np.abs(_wrap(np.asarray(yaw[sl], np.float64) - direction))
        seen = np.isfinite(dist)
        offset[sl] = np.where(seen, dist, np.nan)
        heading[sl] = np.where(seen, rel, np.nan)
    return offset, heading


def realism_features(boxes: np.ndarray, defined: np.ndarray, polylines: np.ndarray,
                     map_defined: np.ndarray) -> dict[str, np.ndarray]:
    """The quantities the realism distances compare, for each generated vehicle (slots 1.., the ego is slot 0).

    Args:
        boxes: [S, N, 5] in the ego's frame; defined: [S, N]; polylines, map_defined: the scenes' lane segments
            (``SceneTable.polylines``).

    Returns:
        ``{name: [S, N - 1]}`` for every name of ``REALISM`` (NaN on undefined slots and, for the lane quantities,
        in scenes without a visible lane). The gap is the centre distance to the nearest other vehicle, the ego
        included.
    """
    boxes, defined = check_boxes(boxes, defined)
    others, mask = boxes[:, 1:], defined[:, 1:]
    centre = boxes[..., :2]
    dist = np.linalg.norm(centre[:, 1:, None] - centre[:, None], axis=-1)  # [S, N - 1, N]
    dist[~np.broadcast_to(defined[:, None], dist.shape)] = np.inf
    dist[:, np.arange(dist.shape[1]), np.arange(1, dist.shape[2])] = np.inf  # not to itself
    offset, heading = nearest_lane(others[..., :2], others[..., 2], polylines, map_defined)
    feats = {"length_m": others[..., 3], "width_m": others[..., 4],
             "ego_distance_m": np.hypot(others[..., 0], others[..., 1]), "lane_offset_m": offset,
             "lane_heading_rad": heading, "gap_m": dist.min(-1)}
    return {k: np.where(mask, v, np.nan) for k, v in feats.items()}


def network_weights(groups: np.ndarray, replicates: int, seed: int = 0, purpose: str = "rates") -> np.ndarray:
    """Bootstrap weights ``[R, G]``: how often each of the G networks (``groups`` holds 0..G-1) is drawn when G
    networks are drawn with replacement, R times, from the stream ("traffic", "metrics", "bootstrap", purpose)."""
    g = int(np.max(groups)) + 1
    rng = numpy_rng(seed, "traffic", "metrics", "bootstrap", purpose)
    return rng.multinomial(g, np.full(g, 1.0 / g), size=replicates).astype(np.float64)


def bootstrap_interval(num: np.ndarray, den: np.ndarray, weights: np.ndarray,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of ``sum(w num) / sum(w den)`` over bootstrap weights ``[R, G]`` of per-network counts
    ``num, den [G]``; NaN bounds with fewer than two networks."""
    if weights.shape[1] < 2:
        return float("nan"), float("nan")
    w_den = weights @ den
    reps = (weights @ num)[w_den > 0] / w_den[w_den > 0]
    if len(reps) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return float(lo), float(hi)


def wasserstein_1d(values, reference, weights: np.ndarray | None = None, groups=None, reference_groups=None,
                   chunk: int = 16384) -> np.ndarray:
    """W1 distance between the empirical distributions of ``values`` and ``reference`` (1-D).

    W1 is the area between the two cumulative distribution functions, summed exactly over the merged sorted points.
    With bootstrap weights of groups (networks), each replicate compares the two weighted mixtures of the groups'
    empirical distributions: the per-group counts below each point are summed once, and a replicate is a matrix
    product of its weights with them.

    Args:
        values: [n]; reference: [m] (NaNs are an error: drop them first).
        weights: None, or [R, G] non-negative weights of G groups; then ``groups [n]`` and ``reference_groups [m]``
            (ints in 0..G-1) give each value's group. Every replicate must weigh some value on each side.
        chunk: merged points per block of work (memory ~ chunk * (R + 2G) floats).

    Returns:
        [] (a 0-d array) without weights, else [R].
    """
    v, r = np.asarray(values, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    if len(v) == 0 or len(r) == 0 or not (np.isfinite(v).all() and np.isfinite(r).all()):
        raise ValueError(f"W1 needs non-empty finite samples, got {len(v)} values and {len(r)} reference values")
    w = np.ones((1, 1)) if weights is None else np.atleast_2d(np.asarray(weights, np.float64))
    g = w.shape[1]
    gv = np.zeros(len(v), np.int64) if weights is None else np.asarray(groups, np.int64).ravel()
    gr = np.zeros(len(r), np.int64) if weights is None else np.asarray(reference_groups, np.int64).ravel()
    merged = np.concatenate([v, r])
    order = np.argsort(merged, kind="stable")
    gaps = np.diff(merged[order])
    row = np.concatenate([gv, g + gr])[order]  # each merged point's group, reference groups after the values'
    sizes = np.bincount(row, minlength=2 * g).astype(np.float64)
    norm_v, norm_r = w @ sizes[:g], w @ sizes[g:]  # [R] weighted counts of each side
    if (norm_v <= 0).any() or (norm_r <= 0).any():
        raise ValueError("every bootstrap replicate must weigh some value on each side")
    scale = np.concatenate([w / norm_v[:, None], -w / norm_r[:, None]], axis=1)  # [R, 2G]
    out, carry = np.zeros(len(w)), np.zeros(2 * g)
    for lo in range(0, len(gaps), chunk):
        hi = min(lo + chunk, len(gaps))
        counts = np.zeros((2 * g, hi - lo))
        counts[row[lo:hi], np.arange(hi - lo)] = 1.0
        below = np.cumsum(counts, axis=1) + carry[:, None]  # [2G, c]: values of each group at or below each point
        carry = below[:, -1].copy()
        out += np.abs(scale @ below) @ gaps[lo:hi]
    return out[0] if weights is None else out


def _per_network(flags: np.ndarray, count: np.ndarray, groups: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Flagged and counted items ``[G]`` per network from per-scene ``[S]`` or per-vehicle ``[S, M]`` masks."""
    hit, count = (flags & count).reshape(len(groups), -1), count.reshape(len(groups), -1)
    return (np.bincount(groups, hit.sum(1).astype(np.float64), g),
            np.bincount(groups, count.sum(1).astype(np.float64), g))


def _rate(num: np.ndarray, den: np.ndarray, weights: np.ndarray) -> dict | None:
    if den.sum() == 0:
        return None
    lo, hi = bootstrap_interval(num, den, weights)
    return {"value": float(num.sum() / den.sum()), "lo": lo, "hi": hi}


def infraction_measures(flags: dict[str, np.ndarray], defined: np.ndarray, ego_distance: np.ndarray,
                        groups: np.ndarray, weights: np.ndarray, radius: float) -> dict[str, dict]:
    """Infraction rates per scene and per generated vehicle, overall and by distance band, with intervals.

    Args:
        flags: ``{reason: bool [S, N]}`` per-vehicle flags (``genneg.oracles.traffic.scene_infractions``), the ego
            in slot 0.
        defined: [S, N]; ego_distance: [S, N - 1] metres of the generated vehicles from the ego.
        groups: [S] network index of each scene; weights: ``network_weights`` of them.
        radius: the scene radius: the last band ends there, and the share of generated vehicles beyond it is
            reported (the data have none).

    Returns:
        ``{name: {"value", "lo", "hi"}}``: ``<reason>_per_scene``, ``<reason>_per_vehicle`` and
        ``<reason>_per_vehicle_<a>_<b>m`` for every reason and for ``invalid`` (any reason), and
        ``beyond_<radius>m_per_vehicle``. A band without generated vehicles has no entry.
    """
    g = weights.shape[1]
    flags = {"invalid": np.logical_or.reduce(list(flags.values())), **flags}
    gen = defined[:, 1:]
    edges = [*BANDS, radius]
    band_masks = {f"{a:g}_{b:g}m": gen & (ego_distance >= a) & (ego_distance < b) for a, b in zip(edges, edges[1:])}
    out = {}
    for name, f in flags.items():
        out[f"{name}_per_scene"] = _rate(*_per_network((f & defined).any(1), np.ones(len(f), bool), groups, g),
                                         weights)
        out[f"{name}_per_vehicle"] = _rate(*_per_network(f[:, 1:], gen, groups, g), weights)
        for band, mask in band_masks.items():
            out[f"{name}_per_vehicle_{band}"] = _rate(*_per_network(f[:, 1:], mask, groups, g), weights)
    beyond = gen & ~(ego_distance < radius)
    out[f"beyond_{radius:g}m_per_vehicle"] = _rate(*_per_network(beyond, gen, groups, g), weights)
    return {k: v for k, v in out.items() if v is not None}


def realism_measures(features: dict[str, np.ndarray], networks: np.ndarray, reference: dict[str, np.ndarray],
                     seed: int = 0) -> dict[str, dict]:
    """``w1_<name>``: the W1 distance of each ``REALISM`` quantity to the reference's, with a 95 % interval.

    The interval resamples networks jointly on both sides (a drawn network brings its generated and its data
    vehicles): a distance to a fixed reference would grow under any resampling, so a bootstrap of one side only
    lies above the estimate. NaN quantities (undefined slots, no visible lane) are left out; a quantity with no
    value on either side has no entry; with fewer than two networks the bounds are NaN.

    Args:
        features: ``{name: [S, M]}`` (``scene_features``); networks: [S] network labels of the scenes.
        reference: ``{name: [S', M'], "network": [S']}`` (``scene_features`` of the data, plus their networks).
    """
    labels, inverse = np.unique(np.concatenate([np.asarray(networks), np.asarray(reference["network"])]),
                                return_inverse=True)
    inverse = inverse.ravel()
    groups, ref_groups = inverse[:len(networks)], inverse[len(networks):]
    weights = network_weights(inverse, DISTANCE_REPLICATES, seed, "distances") if len(labels) >= 2 else None
    tail = 100 * (1 - LEVEL) / 2
    out = {}
    for name in REALISM:
        vals, ref = np.asarray(features[name], np.float64), np.asarray(reference[name], np.float64)
        keep, ref_keep = np.isfinite(vals), np.isfinite(ref)
        if not keep.any() or not ref_keep.any():
            continue
        v, r = vals[keep], ref[ref_keep]
        entry = {"value": float(wasserstein_1d(v, r)), "lo": float("nan"), "hi": float("nan")}
        if weights is not None:
            gv = np.broadcast_to(groups[:, None], vals.shape)[keep]  # each value's network
            gr = np.broadcast_to(ref_groups[:, None], ref.shape)[ref_keep]
            sizes_v, sizes_r = np.bincount(gv, minlength=len(labels)), np.bincount(gr, minlength=len(labels))
            ok = (weights @ sizes_v > 0) & (weights @ sizes_r > 0)  # replicates with values on both sides
            if ok.any():
                reps = wasserstein_1d(v, r, weights[ok], gv, gr)
                entry["lo"], entry["hi"] = (float(q) for q in np.percentile(reps, [tail, 100 - tail]))
        out[f"w1_{name}"] = entry
    return out


def scene_features(boxes: np.ndarray, defined: np.ndarray, lanes: Callable[[np.ndarray], tuple],
                   chunk: int = 1024) -> dict[str, np.ndarray]:
    """``realism_features`` of many scenes, ``chunk`` at a time (a scene's lane segments take ~20 kB).

    Args:
        lanes: ``lanes(rows)`` gives ``(polylines, map_defined)`` of the scenes at the row indices ``rows``
            (e.g. ``lambda rows: table.polylines(ids[rows])``).
    """
    parts = []
    for lo in range(0, len(boxes), chunk):
        rows = np.arange(lo, min(lo + chunk, len(boxes)))
        parts.append(realism_features(boxes[rows], defined[rows], *lanes(rows)))
    return {k: np.concatenate([p[k] for p in parts]) for k in REALISM}


def traffic_metrics(boxes: np.ndarray, defined: np.ndarray, areas, lanes: Callable[[np.ndarray], tuple],
                    networks: np.ndarray, reference: dict[str, np.ndarray], *, tolerance: float, radius: float,
                    seed: int = 0) -> dict[str, dict]:
    """Every measure of a batch of decoded scenes (the ego in slot 0).

    Args:
        boxes: [S, N, 5]; defined: [S, N]; areas: [S] drivable-area crops (Shapely); lanes: the scenes' lane
            segments by row (``scene_features``); networks: [S] the network of each scene (any labels).
        reference: ``scene_features`` of held-out data with their networks under ``"network"`` (``realism_measures``).
        tolerance: the off-road tolerance (metres); radius: the scene radius (metres); seed: of the bootstraps.

    Returns:
        ``infraction_measures`` and ``realism_measures`` in one dict.
    """
    boxes, defined = check_boxes(boxes, defined)
    networks = np.asarray(networks)
    _, groups = np.unique(networks, return_inverse=True)
    groups = groups.ravel()
    flags = scene_infractions(boxes, defined, areas, tolerance)
    features = scene_features(boxes, defined, lanes)
    return {**infraction_measures(flags, defined, features["ego_distance_m"], groups,
                                  network_weights(groups, RATE_REPLICATES, seed), radius),
            **realism_measures(features, networks, reference, seed)}
