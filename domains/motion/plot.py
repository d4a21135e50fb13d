"""Pictures of motion: lowest-vertex height traces for the run report, and animated GIFs of the posed body.

Colours: valid motions blue, invalid red; in animations a frame's title turns red when the frame commits an
infraction (a vertex deeper than the penetration tolerance, or airborne), the skeleton turns red while it
penetrates the floor, and a toe turns red while it skates
(below 5 cm and faster than 0.5 m/s: the GMD rule's per-frame test).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter

from genneg.oracles.motion import DEFAULT_THRESHOLDS, GMD_HEIGHT_M, GMD_SPEED_MS

from .skeleton import PARENTS, TOE_JOINTS, joint_index

__all__ = ["plot_lowest_heights", "MotionPanel", "frame_flags", "write_gif"]

VALID, INVALID = "#1f77b4", "#d62728"
_METRICS = (("penetrate_mm", "pen"), ("float_mm", "float"), ("skate_mm", "skate"))


def plot_lowest_heights(samples: dict, result, ax, title: str = "", fps: float = 20.0, max_lines: int = 40) -> None:
    """Height of each motion's lowest vertex over time (floor at 0, oracle tolerances dashed), coloured by verdict.

    The title gets the infraction rate and the mean PhysDiff metrics (mm) and GMD skating ratio of the samples.
    """
    low, defined = np.asarray(samples["lowest_height"]), np.asarray(samples["defined"], bool)
    t = np.arange(low.shape[1]) / fps
    for i in range(min(max_lines, len(low))):
        ok = result is None or bool(result.valid[i])
        ax.plot(t[defined[i]], 100 * low[i, defined[i]], color=VALID if ok else INVALID, lw=0.7, alpha=0.6)
    ax.axhline(0, color="k", lw=1)
    ax.axhline(-DEFAULT_THRESHOLDS.penetration_mm / 10, color="0.5", ls="--", lw=0.8)
    ax.axhline(DEFAULT_THRESHOLDS.float_mm / 10, color="0.5", ls=":", lw=0.8)
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_ylabel("lowest vertex (cm)", fontsize=7)
    ax.tick_params(labelsize=6)
    lines = [title] if title else []
    if result is not None and result.defined.any():
        lines.append(f"invalid {100 * (1 - result.valid[result.defined].mean()):.1f}%")
    stats = [f"{short} {np.mean(samples[k]):.1f}" for k, short in _METRICS if k in samples]
    if "skating_ratio" in samples:
        stats.append(f"skr {np.mean(samples['skating_ratio']):.3f}")
    if stats:
        lines.append("mm: " + ", ".join(stats))
    ax.set_title("\n".join(lines), fontsize=8)


@dataclass(frozen=True)
class MotionPanel:
    """One animated motion.

    Attributes:
        joints: [T, 24, 3] metres, Y up.
        vertices: [T, V, 3] mesh vertices (drawn as a light point cloud), or None for the skeleton only.
        title: panel title (e.g. "base: invalid (penetration)").
        defined: [T] frame mask (None = all frames).
        lowest: [T] height of the mesh's lowest vertex (``decode``'s ``lowest_height``), which the red frames are
            judged on; None: the lowest of ``vertices``, else of the joints (which sit above the skin).
    """

    joints: np.ndarray
    vertices: np.ndarray | None = None
    title: str = ""
    defined: np.ndarray | None = None
    lowest: np.ndarray | None = None

    def __post_init__(self):
        if np.asarray(self.joints).ndim != 3 or np.asarray(self.joints).shape[1:] != (len(PARENTS), 3):
            raise ValueError(f"joints must be [T, 24, 3], got {np.asarray(self.joints).shape}")


def frame_flags(joints: np.ndarray, lowest: np.ndarray, fps: float = 20.0) -> dict[str, np.ndarray]:
    """Per-frame flags of one motion: ``penetration`` [T], ``airborne`` [T] and ``skating`` [T, 2] (per toe)."""
    toes = joints[:, [joint_index(n) for n in TOE_JOINTS]]  # [T, 2, 3]
    speed = np.zeros(toes.shape[:2])
    speed[1:] = fps * np.hypot(*(toes[1:, :, [0, 2]] - toes[:-1, :, [0, 2]]).transpose(2, 0, 1))
    return {
        "penetration": lowest < -DEFAULT_THRESHOLDS.penetration_mm / 1000,
        "airborne": lowest > DEFAULT_THRESHOLDS.float_mm / 1000,
        "skating": (toes[..., 1] < GMD_HEIGHT_M) & (speed > GMD_SPEED_MS),
    }


def _limits(panels: list[MotionPanel]) -> tuple[np.ndarray, np.ndarray]:
    pts = np.concatenate([p.joints.reshape(-1, 3) for p in panels])
    centre, half = (pts.max(0) + pts.min(0)) / 2, max(1.0, (pts.max(0) - pts.min(0)).max() / 2 + 0.2)
    return centre - half, centre + half


def _panel_flags(panel: MotionPanel, fps: float) -> dict[str, np.ndarray]:
    if panel.lowest is not None:
        return frame_flags(np.asarray(panel.joints), np.asarray(panel.lowest), fps)
    points = panel.vertices if panel.vertices is not None else panel.joints
    return frame_flags(np.asarray(panel.joints), np.asarray(points)[:, :, 1].min(1), fps)


def _draw_frame(ax, panel: MotionPanel, flags: dict, t: int, lo, hi) -> None:
    ax.cla()
    j = panel.joints[t]
    xs, zs = np.meshgrid([lo[0], hi[0]], [lo[2], hi[2]])
    ax.plot_surface(xs, zs, np.zeros_like(xs), color="0.85", alpha=0.5)  # the floor (plot z = world y)
    if panel.vertices is not None:
        v = panel.vertices[t, ::3]
        ax.scatter(v[:, 0], v[:, 2], v[:, 1], s=0.3, c="#9ecae1", depthshade=False)
    bone = INVALID if flags["penetration"][t] else "#08306b"  # the whole stick figure red while it penetrates
    for c, p in enumerate(PARENTS):
        if p >= 0:
            ax.plot(*[[j[p, k], j[c, k]] for k in (0, 2, 1)], color=bone, lw=1.5)
    toes = j[[joint_index(n) for n in TOE_JOINTS]]
    skate = flags["skating"][t]
    ax.scatter(toes[:, 0], toes[:, 2], toes[:, 1], s=25, c=[INVALID if s else "#2ca02c" for s in skate])
    bad = [k for k in ("penetration", "airborne") if flags[k][t]] + (["skating"] if skate.any() else [])
    ax.set_title(f"{panel.title}\nframe {t}" + (f": {', '.join(bad)}" if bad else ""), fontsize=8,
                 color=INVALID if bad else "k")  # fmt: skip
    ax.set_xlim(lo[0], hi[0]), ax.set_ylim(lo[2], hi[2]), ax.set_zlim(0 if lo[1] > 0 else lo[1], hi[1] - lo[1])
    ax.set_axis_off()


def write_gif(path, panels: list[MotionPanel], fps: float = 20.0, dpi: int = 72) -> None:
    """Animates panels side by side (e.g. the same condition before and after Gen-neG) into a GIF (pillow)."""
    if not panels:
        raise ValueError("write_gif needs at least one panel")
    frames = min(len(p.joints) if p.defined is None else int(np.sum(p.defined)) for p in panels)
    lo, hi = _limits(panels)
    flags = [_panel_flags(p, fps) for p in panels]
    fig = plt.figure(figsize=(3.2 * len(panels), 3.4))
    axes = [fig.add_subplot(1, len(panels), i + 1, projection="3d") for i in range(len(panels))]

    def update(t):
        for ax, panel, f in zip(axes, panels, flags):
            _draw_frame(ax, panel, f, t, lo, hi)
        return []

    anim = FuncAnimation(fig, update, frames=max(frames, 1), blit=False)
    anim.save(str(path), writer=PillowWriter(fps=fps), dpi=dpi)
    plt.close(fig)
