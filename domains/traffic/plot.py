"""Scene figures: drivable area (grey), lane centrelines with travel direction, boxes with heading; infracting red."""

from __future__ import annotations

import numpy as np
import shapely
from matplotlib.patches import Polygon as PolygonPatch

from genneg.oracles.traffic import box_corners

__all__ = ["plot_scene", "plot_sample", "draw_area"]

VALID, INVALID, AREA, LANE = "#1f77b4", "#d62728", "0.88", "0.6"


def draw_area(ax, area) -> None:
    """Fills a Shapely (Multi)Polygon: exteriors grey, holes white."""
    for poly in shapely.get_parts(area):
        if not isinstance(poly, shapely.Polygon) or poly.is_empty:
            continue
        ax.add_patch(PolygonPatch(np.asarray(poly.exterior.coords), closed=True, color=AREA, lw=0, zorder=0))
        for hole in poly.interiors:
            ax.add_patch(PolygonPatch(np.asarray(hole.coords), closed=True, color="white", lw=0, zorder=0))


def plot_scene(ax, boxes, defined, *, flags=None, area=None, polylines=None, polyline_defined=None, title: str = "",
               radius: float = 50.0) -> None:
    """One scene in its frame.

    Args:
        boxes: [N, 5] (x, y, yaw, length, width) metres; defined: [N] bool.
        flags: [N] bool, True for infracting vehicles (drawn red); None draws all blue.
        area: Shapely drivable area (scene frame) or None; polylines: [L, P, >=2] lane points; polyline_defined: [L].
        radius: half-width of the view in metres.
    """
    boxes, defined = np.asarray(boxes, np.float64), np.asarray(defined, bool)
    flags = np.zeros(len(boxes), bool) if flags is None else np.asarray(flags, bool)
    if area is not None:
        draw_area(ax, area)
    if polylines is not None:
        keep = np.ones(len(polylines), bool) if polyline_defined is None else np.asarray(polyline_defined, bool)
        for line in np.asarray(polylines)[keep]:
            ax.plot(line[:, 0], line[:, 1], color=LANE, lw=0.5, zorder=1)
            mid = len(line) // 2
            ax.annotate("", xy=line[mid, :2], xytext=line[mid - 1, :2], zorder=1,
                        arrowprops={"arrowstyle": "-|>", "color": LANE, "lw": 0.5})
    corners = box_corners(boxes[defined])
    for box, ring, bad in zip(boxes[defined], corners, flags[defined]):
        colour = INVALID if bad else VALID
        ax.add_patch(PolygonPatch(ring, closed=True, fc=colour, ec="black", lw=0.4, alpha=0.8, zorder=2))
        front = box[:2] + box[3] / 2 * np.array([np.cos(box[2]), np.sin(box[2])])
        ax.plot([box[0], front[0]], [box[1], front[1]], color="white", lw=0.8, zorder=3)
    ax.set_xlim(-radius, radius)
    ax.set_ylim(-radius, radius)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def plot_sample(domain, samples, result, ax, *, title: str = "", index: int = 0) -> None:
    """Scene ``index`` of decoded samples ``{"boxes", "defined", "scene"}`` on its map from ``domain.table``;
    the title gets the batch's infraction rates when ``result`` (an OracleResult) is given."""
    table = domain.table
    scene = int(samples["scene"][index])
    one = {k: np.asarray(samples[k])[index : index + 1] for k in ("boxes", "defined", "scene")}
    flags = domain.oracle().per_vehicle(one)
    bad = np.zeros(one["defined"].shape[1], bool)
    for f in flags.values():
        bad |= f[0]
    if result is not None and result.defined.any():
        rates = ", ".join(f"{k} {100 * v[result.defined].mean():.1f}%" for k, v in result.reasons.items())
        title = f"{title}\ninvalid {100 * (1 - result.valid[result.defined].mean()):.1f}% ({rates})"
    polylines, polyline_defined = table.polylines(np.array([scene]))
    plot_scene(ax, one["boxes"][0], one["defined"][0], flags=bad, area=table.areas[scene],
               polylines=polylines[0], polyline_defined=polyline_defined[0], title=title,
               radius=domain.data_cfg.scene.radius)
