"""Reference scenes that a generated row of the evaluation is read against (``docs/traffic.md``, "Evaluation").

Each reference gives decoded samples ``{"boxes" [B, N, 5], "defined" [B, N], "scene" [B]}`` (the ego first, as
``TrafficDomain.decode`` gives them) on given scene ids, so the oracle and ``TrafficDomain.metrics`` judge them
exactly as they judge a model's samples:

- ``data_samples``: the scenes' own data vehicles (the floor of every realism distance: sampling noise);
- ``shuffled_samples``: each scene's ego and map with the generated vehicles of another scene (preferably of another
  network), in the ego's frame: real boxes that ignore the map, the rate a map-blind model would get;
- ``lane_samples``: vehicles placed at random on the lanes the scene sees, heading along the lane, with sizes of the
  split's data vehicles, rejecting overlaps: valid almost by construction, but not a realistic scene;
- ``rejection_cost``: raw samples per valid scene when a model of a given invalid rate is rejection-sampled.
"""

from __future__ import annotations

import numpy as np

from genneg.oracles.traffic import pairwise_overlap_sat

from .features import SceneTable

__all__ = ["data_samples", "shuffled_samples", "lane_samples", "rejection_cost"]


def data_samples(table: SceneTable, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The data scenes ``ids`` as decoded samples."""
    ids = np.asarray(ids, np.int64)
    return {"boxes": table.boxes[ids].astype(np.float64), "defined": table.defined[ids].copy(), "scene": ids}


def shuffled_samples(table: SceneTable, ids: np.ndarray, rng: np.random.Generator,
                     pool: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Scenes ``ids`` (their ego and map) with the generated vehicles (slots 1.., with their mask) of donor scenes
    drawn from ``pool`` (default: ``ids``), each on another network than its receiver where the pool has one, else
    another scene. The samples also hold the donors' ids (``"donor" [B]``)."""
    ids = np.asarray(ids, np.int64)
    pool = ids if pool is None else np.asarray(pool, np.int64)
    nets = np.unique(table.network[pool])
    elsewhere = (len(nets) > 1) | (table.network[ids] != nets[0])  # an other-network donor exists
    donors = rng.choice(pool, len(ids))
    for _ in range(100):  # redraw the clashes; each round settles most of the rest
        clash = (donors == ids) | (elsewhere & (table.network[donors] == table.network[ids]))
        if not clash.any():
            break
        donors[clash] = rng.choice(pool, int(clash.sum()))
    out = data_samples(table, ids)
    out["boxes"][:, 1:] = table.boxes[donors, 1:]
    out["defined"][:, 1:] = table.defined[donors, 1:]
    out["donor"] = donors
    return out


def _lane_pieces(polylines: np.ndarray, map_defined: np.ndarray):
    """Start points [S, K, 2], vectors [S, K, 2] and cumulative lengths [S, K] of every piece of every lane."""
    xy = polylines[..., :2].astype(np.float64)
    start, vec = xy[:, :, :-1].reshape(len(xy), -1, 2), np.diff(xy, axis=2).reshape(len(xy), -1, 2)
    length = np.linalg.norm(vec, axis=-1) * np.repeat(map_defined, xy.shape[2] - 1, axis=1)
    return start, vec, np.cumsum(length, axis=1)


def lane_samples(table: SceneTable, ids: np.ndarray, rng: np.random.Generator, sizes: np.ndarray,
                 radius: float = 50.0, attempts: int = 100) -> dict[str, np.ndarray]:
    """The lane-placement heuristic: every slot the scene's data define (other than the ego) gets a vehicle at a
    uniformly random point of the lanes the scene sees within ``radius`` of the ego, heading along the lane, its
    (length, width) drawn from ``sizes [V, 2]``; a draw that overlaps a vehicle already placed (the ego included)
    is drawn again, up to ``attempts`` times, after which the slot is left undefined.
    """
    ids = np.asarray(ids, np.int64)
    out = data_samples(table, ids)
    boxes, want = out["boxes"], out["defined"].copy()
    out["defined"][:, 1:] = False
    polylines, map_defined = table.polylines(ids)
    start, vec, cum = _lane_pieces(polylines, map_defined)
    has_lane = cum[:, -1] > 0
    for slot in range(1, boxes.shape[1]):
        todo = np.flatnonzero(want[:, slot] & has_lane)
        for _ in range(attempts):
            if len(todo) == 0:
                break
            u = rng.random(len(todo)) * cum[todo, -1]
            piece = (cum[todo] <= u[:, None]).sum(1)  # the piece the arc-length draw falls in
            before = np.where(piece > 0, cum[todo, np.maximum(piece - 1, 0)], 0.0)
            v = vec[todo, piece]
            frac = (u - before) / np.maximum(np.linalg.norm(v, axis=-1), 1e-12)
            xy = start[todo, piece] + frac[:, None] * v
            size = sizes[rng.integers(len(sizes), size=len(todo))]
            boxes[todo, slot] = np.column_stack([xy, np.arctan2(v[:, 1], v[:, 0]), size])
            out["defined"][todo, slot] = True
            hit = pairwise_overlap_sat(boxes[todo, :slot + 1], out["defined"][todo, :slot + 1])[:, slot].any(1)
            bad = hit | (np.hypot(xy[:, 0], xy[:, 1]) > radius)
            out["defined"][todo[bad], slot] = False
            todo = todo[bad]
    boxes[~out["defined"]] = 0.0
    return out


def rejection_cost(rate: float, lo: float | None = None, hi: float | None = None) -> dict[str, float]:
    """Raw samples drawn per valid scene when a model whose scenes are invalid at ``rate`` is rejection-sampled:
    ``1 / (1 - rate)`` (the mean of a geometric number of draws), with the interval mapped from ``[lo, hi]`` of the
    rate (the map is increasing; NaN bounds where none is given); infinite at rate 1.

    Raises:
        ValueError: a rate or bound outside [0, 1], or bounds that do not bracket the rate.
    """
    given = (rate,) if lo is None or hi is None else (lo, rate, hi)
    if not all(0.0 <= float(r) <= 1.0 for r in given) or list(given) != sorted(given):
        raise ValueError(f"need 0 <= lo <= rate <= hi <= 1, got rate={rate}, lo={lo}, hi={hi}")

    def cost(r: float | None) -> float:
        if r is None or lo is None or hi is None:
            return float("nan")
        return 1.0 / (1.0 - r) if r < 1.0 else float("inf")

    return {"value": 1.0 / (1.0 - rate) if rate < 1.0 else float("inf"), "lo": cost(lo), "hi": cost(hi)}
