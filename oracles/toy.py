"""Oracles for the 2-D toy shapes: pure numpy functions of points in physical units, plus Oracle wrappers.

Checkerboard: a k×k board on [−extent, extent]²; cell (i, j) is black (valid) when i + j is even, counting from the
bottom-left cell. Cells are half-open [lo, hi) along each axis, except that the board's outer edge is closed, so a
point on a border between two cells belongs to the cell above / to the right of it.

Rings: valid points lie in one of the annuli ``r_lo <= r <= r_hi``; the gaps between (and inside) them are a
forbidden band, and everything beyond the outermost ring is outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genneg.oracle import OracleResult

__all__ = ["Checkerboard", "Rings", "check_points"]


def check_points(points) -> np.ndarray:
    """Validates ``points [B, 2]``: numeric, finite, non-empty. Returns a float64 array."""
    p = np.asarray(points)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"toy points must have shape [B, 2], got {p.shape}")
    if p.shape[0] == 0:
        raise ValueError("toy oracle got an empty batch of points")
    if p.dtype.kind not in "fiu":
        raise ValueError(f"toy points must be numeric, got dtype {p.dtype}")
    if not np.isfinite(p).all():
        raise ValueError("toy points contain NaN or inf")
    return p.astype(np.float64)


@dataclass(frozen=True)
class Checkerboard:
    """k×k checkerboard on [−extent, extent]²; ``reasons``: white_cell, outside."""

    k: int = 4
    extent: float = 2.0
    name: str = "checkerboard"
    reason_names: tuple[str, ...] = ("white_cell", "outside")

    def __post_init__(self):
        if self.k < 1 or not self.extent > 0:
            raise ValueError(f"Checkerboard needs k >= 1 and extent > 0, got k={self.k}, extent={self.extent}")

    def cells(self, points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell indices ``(i, j)`` of each point and whether it lies on the board at all."""
        p = check_points(points)
        inside = (np.abs(p) <= self.extent).all(1)
        ij = np.floor((p + self.extent) / (2 * self.extent / self.k)).astype(np.int64)
        ij = np.clip(ij, 0, self.k - 1)  # the closed outer edge belongs to the last cell
        return ij[:, 0], ij[:, 1], inside

    def __call__(self, points, cond=None) -> OracleResult:
        i, j, inside = self.cells(points)
        white = inside & ((i + j) % 2 == 1)
        outside = ~inside
        return OracleResult(~(white | outside), {"white_cell": white, "outside": outside})

    def black_cells(self) -> np.ndarray:
        """Bounds ``[C, 4]`` = (x_lo, y_lo, x_hi, y_hi) of every black cell."""
        w = 2 * self.extent / self.k
        out = [
            (-self.extent + i * w, -self.extent + j * w, -self.extent + (i + 1) * w, -self.extent + (j + 1) * w)
            for i in range(self.k)
            for j in range(self.k)
            if (i + j) % 2 == 0
        ]
        return np.asarray(out)


@dataclass(frozen=True)
class Rings:
    """Concentric annuli; ``radii`` = ((r_lo, r_hi), ...) increasing. ``reasons``: band, outside."""

    radii: tuple[tuple[float, float], ...] = ((0.5, 1.0), (1.5, 2.0))
    name: str = "rings"
    reason_names: tuple[str, ...] = ("band", "outside")

    def __post_init__(self):
        flat = [r for pair in self.radii for r in pair]
        if not self.radii or flat[0] < 0 or any(a >= b for a, b in zip(flat, flat[1:])):
            raise ValueError(f"Rings radii must be non-negative, strictly increasing pairs, got {self.radii}")

    def __call__(self, points, cond=None) -> OracleResult:
        r = np.linalg.norm(check_points(points), axis=1)
        in_ring = np.zeros(r.shape, bool)
        for lo, hi in self.radii:
            in_ring |= (r >= lo) & (r <= hi)
        outside = r > self.radii[-1][1]
        band = ~in_ring & ~outside
        return OracleResult(in_ring, {"band": band, "outside": outside})
