"""Grounding: a post-process reference that moves the root vertically so the body's lowest vertex sits on the floor.

It is what a user could do instead of guidance: it removes penetration by construction, but it may add floating
(``per="window"`` lifts a whole window by its deepest frame, so its other frames rise) or erase real flight and
change the toes' contact with the floor (``per="frame"`` puts every frame's lowest vertex at y = 0). Reports show
both its penetration and its float and skating rates beside the model's.

A vertical translation of the root moves every vertex and joint by the same amount, so grounding edits decoded
samples directly (features, joints, toes, lowest heights) and poses nothing again.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ground_samples", "GROUNDING_MODES"]

GROUNDING_MODES = ("frame", "window")
_ROOT_HEIGHT = 1  # the root's y (up) in the physical features (``data.representation``: root x, y, z first)


def ground_samples(samples: dict, per: str = "frame") -> dict:
    """Decoded motion samples (``MotionDomain.decode``) with the root shifted so the lowest vertex is on the floor.

    Args:
        samples: ``features`` [B, T, 147], ``joints`` [B, T, 24, 3], ``toes`` [B, T, 2, 3], ``lowest_height``
            [B, T], ``defined`` [B, T]; other entries are copied unchanged.
        per: ``"frame"``: every defined frame's lowest vertex to y = 0; ``"window"``: each window shifted by one
            amount, so that its lowest vertex over the defined frames is at y = 0.

    Returns:
        a new dict; padded frames stay zeros.
    """
    if per not in GROUNDING_MODES:
        raise ValueError(f"per must be one of {GROUNDING_MODES}, got {per!r}")
    defined = np.asarray(samples["defined"], bool)
    low = np.asarray(samples["lowest_height"], np.float64)
    if per == "frame":
        shift = np.where(defined, -low, 0.0)  # [B, T]
    else:
        lowest = np.where(defined, low, np.inf).min(1, keepdims=True)  # [B, 1]
        shift = np.where(defined, -lowest, 0.0)
    out = dict(samples)
    out["lowest_height"] = (low + shift).astype(np.asarray(samples["lowest_height"]).dtype)
    features = np.array(samples["features"], copy=True)
    features[..., _ROOT_HEIGHT] += shift.astype(features.dtype)
    out["features"] = features
    for key in ("joints", "toes"):
        points = np.array(samples[key], copy=True)
        points[..., 1] += shift[:, :, None].astype(points.dtype)
        out[key] = points
    return out
