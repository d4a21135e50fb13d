"""Pictures of 2-D samples: the valid region in grey, samples coloured by the oracle's verdict."""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Circle, Rectangle

from genneg.oracles.toy import Checkerboard, Rings

VALID, INVALID, UNDEFINED = "#1f77b4", "#d62728", "#7f7f7f"


def draw_region(ax, shape) -> None:
    if isinstance(shape, Checkerboard):
        for x0, y0, x1, y1 in shape.black_cells():
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="0.9", zorder=0))
        lim = shape.extent * 1.25
    else:
        for lo, hi in reversed(shape.radii):
            ax.add_patch(Circle((0, 0), hi, color="0.9", zorder=0))
            ax.add_patch(Circle((0, 0), lo, color="white", zorder=0))
        lim = shape.radii[-1][1] * 1.25
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_points(points, result, ax, shape: Checkerboard | Rings, title: str = "", max_points: int = 4000) -> None:
    """Scatter of ``points [B, 2]``: valid blue, invalid red, undefined grey; the title gets the invalid rate."""
    draw_region(ax, shape)
    p = np.asarray(points)[:max_points]
    colours = np.full(len(p), VALID, dtype=object)
    if result is not None:
        colours[~result.valid[: len(p)]] = INVALID
        colours[~result.defined[: len(p)]] = UNDEFINED
        rate = 100 * (1 - result.valid[result.defined].mean()) if result.defined.any() else float("nan")
        title = f"{title}\ninvalid {rate:.2f}%" if title else f"invalid {rate:.2f}%"
    ax.scatter(p[:, 0], p[:, 1], s=1.5, c=list(colours), linewidths=0, rasterized=True)
    ax.set_title(title, fontsize=9)
