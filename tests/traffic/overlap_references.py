"""Slow reference implementations of box overlap, for tests and benchmarks only: Shapely 2's vectorised predicates
and a Python loop over Shapely polygons. The oracle (``genneg.oracles.traffic.pairwise_overlap_sat``) is checked against
them (``test_traffic_oracles.py``) and timed beside them (``benchmarks/oracle_throughput.py``).

Both agree with the oracle on every pair except those overlapping by less than its 1 mm tolerance
(``genneg.oracles.traffic.COLLISION_TOLERANCE``), which Shapely calls collisions and the oracle does not.
"""

from __future__ import annotations

import numpy as np
import shapely

from genneg.oracles.traffic import box_corners, check_boxes

__all__ = ["pairwise_overlap_shapely", "pairwise_overlap_loop"]


def _defined_pairs(defined: np.ndarray) -> np.ndarray:
    """bool [B, N, N]: both boxes defined and not the same box."""
    return defined[:, :, None] & defined[:, None, :] & ~np.eye(defined.shape[1], dtype=bool)


def pairwise_overlap_shapely(boxes, defined=None, *, strict: bool = True) -> np.ndarray:
    """Pairwise overlap with Shapely 2's vectorised predicates.

    Args:
        boxes: [B, N, 5]; defined: [B, N] bool or None.
        strict: True = interiors intersect (``intersects and not touches``, the oracle's rule up to its tolerance);
            False = nuPlan's ``intersects`` (touching boxes collide).

    Returns:
        bool [B, N, N] like ``pairwise_overlap_sat``.
    """
    boxes, defined = check_boxes(boxes, defined)
    polygons = shapely.polygons(box_corners(boxes))  # [B, N]
    a, b = polygons[:, :, None], polygons[:, None, :]
    hit = shapely.intersects(a, b)
    if strict:
        hit &= ~shapely.touches(a, b)
    return hit & _defined_pairs(defined)


def pairwise_overlap_loop(boxes, defined=None) -> np.ndarray:
    """A Python loop over pairs of Shapely polygons; two boxes collide iff their intersection has area > 0."""
    boxes, defined = check_boxes(boxes, defined)
    corners = box_corners(boxes)
    out = np.zeros(boxes.shape[:2] + boxes.shape[1:2], bool)
    for b in range(boxes.shape[0]):
        idx = np.flatnonzero(defined[b])
        polygons = {i: shapely.Polygon(corners[b, i]) for i in idx}
        for k, i in enumerate(idx):
            for j in idx[k + 1 :]:
                if polygons[i].intersects(polygons[j]) and polygons[i].intersection(polygons[j]).area > 0:
                    out[b, i, j] = out[b, j, i] = True
    return out
