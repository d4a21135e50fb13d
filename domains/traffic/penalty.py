"""A differentiable distance to validity for traffic scenes (the CTG-style penalty-guidance baseline).

    penalty = Σ_pairs overlap of vehicle discs + Σ_corners outside (distance to the drivable area − tolerance)₊
              (metres, per scene)

Each box is covered by three discs of radius width/2 along its length (CTG and many planners use disc covers);
two vehicles' discs overlapping by d metres cost d. A corner farther than the tolerance outside the scene's
drivable area costs that excess (the oracle's off-road rule, nuPlan's). Both terms are zero on valid scenes and grow
smoothly with the infraction; the disc cover is not exact (discs miss box corners, so some overlaps cost nothing):
the oracle stays the judge.
"""

from __future__ import annotations

import numpy as np
import shapely
import torch
from torch import Tensor

from genneg.domains.traffic.features import decode_boxes

__all__ = ["scene_penalty", "overlap_penalty", "offroad_penalty", "box_corners_torch"]

DISCS = 3


def box_corners_torch(boxes: Tensor) -> Tensor:
    """Corners ``[..., 4, 2]`` of boxes ``[..., 5]`` (same order as ``genneg.oracles.traffic.box_corners``)."""
    cos, sin = boxes[..., 2].cos(), boxes[..., 2].sin()
    hl, hw = boxes[..., 3] / 2, boxes[..., 4] / 2
    front = torch.stack([hl * cos, hl * sin], -1)[..., None, :]
    left = torch.stack([-hw * sin, hw * cos], -1)[..., None, :]
    signs = boxes.new_tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    return boxes[..., None, :2] + signs[:, :1] * front + signs[:, 1:] * left


def overlap_penalty(boxes: Tensor, defined: Tensor) -> Tensor:
    """Summed pairwise disc overlap (metres) between different defined vehicles, ``[B]``. ``boxes [B, N, 5]``."""
    b, n = defined.shape
    heading = torch.stack([boxes[..., 2].cos(), boxes[..., 2].sin()], -1)  # [B, N, 2]
    reach = (boxes[..., 3] - boxes[..., 4]).clamp_min(0) / 2  # centre to the outer disc centres
    t = torch.linspace(-1, 1, DISCS, dtype=boxes.dtype, device=boxes.device)
    centres = boxes[..., None, :2] + (t[:, None] * reach[..., None, None]) * heading[..., None, :]  # [B, N, K, 2]
    centres = centres.reshape(b, n * DISCS, 2)
    radius = (boxes[..., 4] / 2).repeat_interleave(DISCS, dim=1)  # [B, N*K]
    d = ((centres[:, :, None] - centres[:, None]) ** 2).sum(-1).add(1e-9).sqrt()
    overlap = (radius[:, :, None] + radius[:, None] - d).clamp_min(0)
    owner = torch.arange(n, device=boxes.device).repeat_interleave(DISCS)
    live = defined.repeat_interleave(DISCS, dim=1)
    mask = live[:, :, None] & live[:, None] & (owner[:, None] != owner[None])
    return (overlap * mask).sum((1, 2)) / 2


def offroad_penalty(boxes: Tensor, defined: Tensor, areas: np.ndarray, tolerance: float = 0.3) -> Tensor:
    """Summed distance (metres) beyond ``tolerance`` of corners outside each scene's drivable area, ``[B]``.

    Which corners are outside and their nearest boundary points come from Shapely on detached values; the distance
    to that point is differentiable and its gradient is the exact gradient of the distance to the area (the nearest
    point moves only to second order), so this is the oracle's own off-road rule made smooth.

    Args:
        boxes: [B, N, 5] metres; defined: [B, N]; areas: [B] Shapely geometries in the scenes' frames.
    """
    corners = box_corners_torch(boxes)  # [B, N, 4, 2]
    pts = corners.detach().cpu().double().numpy()
    live = np.repeat(defined.cpu().numpy()[..., None], 4, -1) & np.isfinite(pts).all(-1)
    b_idx = np.nonzero(live)[0]
    geom = np.asarray(areas, dtype=object)[b_idx]
    xy = pts[live]
    outside = ~shapely.contains_xy(geom, xy[:, 0], xy[:, 1])
    out = torch.zeros(boxes.shape[0], dtype=boxes.dtype, device=boxes.device)
    if not outside.any():
        return out
    nearest = np.full((int(outside.sum()), 2), np.nan)
    lines = shapely.shortest_line(geom[outside], shapely.points(xy[outside]))
    ok = ~shapely.is_empty(lines) & ~shapely.is_missing(lines)  # an empty area has no nearest point
    nearest[ok] = shapely.get_coordinates(shapely.get_point(lines[ok], 0))
    sel = torch.as_tensor(np.flatnonzero(live.reshape(-1))[outside], device=boxes.device)
    c = corners.reshape(-1, 2)[sel]
    q = torch.as_tensor(nearest, dtype=boxes.dtype, device=boxes.device)
    dist = ((c - q) ** 2).sum(-1).add(1e-12).sqrt()
    excess = torch.where(torch.isfinite(dist), (dist - tolerance).clamp_min(0), torch.zeros_like(dist))
    return out.index_add(0, torch.as_tensor(b_idx[outside], device=boxes.device), excess)


def scene_penalty(x0: Tensor, defined: Tensor, areas: np.ndarray, tolerance: float = 0.3) -> Tensor:
    """Overlap + off-road penalty ``[B]`` (metres) of normalised scenes ``x0 [B, N, 6]``.

    Args:
        defined: [B, N] bool; areas: [B] drivable-area geometries of the scenes (scene frame).
    """
    boxes = decode_boxes(x0)
    defined = defined.bool()
    return overlap_penalty(boxes, defined) + offroad_penalty(boxes, defined, areas, tolerance)
