"""Relative geometry of a scene, in metres, from the noisy vehicle features the networks get.

Validity is decided by where a vehicle sits relative to its lane and to its neighbours, to within ~0.5 m; absolute
positions in a scene frame make every network learn that relation anew for each place. These features are
invariant to moving and rotating a whole scene with its map:

- ``lane_context``: for each vehicle, its K nearest lane points in its own frame (offset, lane direction relative
  to its heading, lane width, junction-internal flag);
- ``pair_pose``: for each ordered pair of vehicles (i, j), j's pose in i's frame (offset, relative heading).

Offsets are divided by ``RELATIVE_SCALE`` and clamped to ``RELATIVE_CLAMP`` (a vehicle thrown far away by noise
reads as "far", not as a huge number).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .features import POSITION_SCALE

__all__ = ["RELATIVE_SCALE", "vehicle_poses", "lane_context", "pair_pose", "in_scene_frame", "LANE_FEATURES",
           "PAIR_FEATURES"]

RELATIVE_SCALE = 10.0  # metres per unit of the relative offsets
RELATIVE_CLAMP = 6.0  # units: 60 m
LANE_FEATURES = ("dx", "dy", "cos_rel", "sin_rel", "width", "internal", "distance")
PAIR_FEATURES = ("dx", "dy", "cos_rel", "sin_rel", "distance")


def vehicle_poses(x: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised vehicle features ``[B, T, 6]`` -> positions ``[B, T, 2]`` (metres) and unit headings ``[B, T, 2]``.
    """
    xy = x[..., :2] * POSITION_SCALE
    head = x[..., 2:4] / x[..., 2:4].norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return xy, head


def _to_frame(d: Tensor, head: Tensor) -> Tensor:
    """Vectors ``d [..., 2]`` in the frame whose +x axis is the unit ``head [..., 2]``."""
    c, s = head[..., :1], head[..., 1:]
    return torch.cat([d[..., :1] * c + d[..., 1:] * s, d[..., 1:] * c - d[..., :1] * s], -1)


def in_scene_frame(f: Tensor, head: Tensor) -> Tensor:
    """``lane_context`` or ``pair_pose`` features ``[B, T, K, F]`` with their offset and direction (columns 0-3, in
    each vehicle's own frame) also given in the scene frame: ``[B, T, K, F + 4]``, the scene-frame pair after them.

    A network's output moves a vehicle in the scene frame; a message that says "the lane is 1 m to my left" must be
    rotated by the vehicle's heading before it can say where to move, a product an MLP approximates poorly."""
    c, s = head[:, :, None, :1], head[:, :, None, 1:]

    def back(v: Tensor) -> Tensor:  # the inverse of _to_frame
        return torch.cat([v[..., :1] * c - v[..., 1:] * s, v[..., :1] * s + v[..., 1:] * c], -1)

    return torch.cat([f[..., :2], back(f[..., :2]), f[..., 2:4], back(f[..., 2:4]), f[..., 4:]], -1)


def _offsets(d: Tensor) -> list[Tensor]:
    scaled = (d / RELATIVE_SCALE).clamp(-RELATIVE_CLAMP, RELATIVE_CLAMP)
    dist = (d.norm(dim=-1, keepdim=True) / RELATIVE_SCALE).clamp_max(RELATIVE_CLAMP)
    return [scaled, dist]


def lane_context(xy: Tensor, head: Tensor, polylines: Tensor, map_defined: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each vehicle's ``k`` nearest lane points in its own frame.

    Args:
        xy, head: ``[B, T, 2]`` positions (metres) and unit headings (``vehicle_poses``).
        polylines: ``[B, L, P, 6]`` normalised lane segments (``features.encode_polylines``); map_defined: [B, L].

    Returns:
        (features ``[B, T, k, 7]`` in ``LANE_FEATURES`` order, valid ``[B, T, k]``: False where the map has fewer
        than k points).
    """
    b, t = xy.shape[:2]
    pts = polylines.flatten(1, 2)  # [B, L*P, 6]
    ok = map_defined[:, :, None].expand(-1, -1, polylines.shape[2]).flatten(1)  # [B, L*P]
    pos = pts[..., :2] * POSITION_SCALE
    d = pos[:, None] - xy[:, :, None]  # [B, T, LP, 2]
    with torch.no_grad():  # which points: a choice, not differentiated; the features below are
        dist2 = (d * d).sum(-1).masked_fill(~ok[:, None], float("inf"))
        k = min(k, pts.shape[1])
        near, idx = dist2.topk(k, dim=-1, largest=False)  # [B, T, k]
    gather = lambda v: torch.gather(v, 2, idx[..., None].expand(-1, -1, -1, v.shape[-1]))  # noqa: E731
    d = gather(d)
    attrs = gather(pts[:, None, :, 2:].expand(b, t, -1, -1))  # dx, dy, width, internal of the chosen points
    rel = _to_frame(attrs[..., :2], head[:, :, None])  # lane direction relative to the heading: (cos, sin)
    local, dist = _offsets(_to_frame(d, head[:, :, None]))
    feats = torch.cat([local, rel, attrs[..., 2:4], dist], -1)  # width stays normalised (/ LANE_WIDTH_SCALE)
    return feats, torch.isfinite(near)


def pair_pose(xy: Tensor, head: Tensor) -> Tensor:
    """``[B, T, T, 5]``: vehicle j's offset and heading in vehicle i's frame (``PAIR_FEATURES`` order)."""
    d = xy[:, None, :, :] - xy[:, :, None, :]  # [B, i, j, 2] = p_j - p_i
    hi = head[:, :, None].expand_as(d)
    local, dist = _offsets(_to_frame(d, hi))
    rel = _to_frame(head[:, None, :, :].expand_as(d), hi)  # (cos, sin) of psi_j - psi_i
    return torch.cat([local, rel, dist], -1)
