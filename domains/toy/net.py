"""Networks for 2-D points: the engine's PointMLP (Fourier features + σ-conditioned residual MLP)."""

from __future__ import annotations

from genneg.nn import PointMLP


def ToyNet(out_dim: int = 2, **cfg) -> PointMLP:
    """out_dim 2: the raw denoiser network; 1: a classifier logit. ``cfg``: width, depth, num_freqs, max_freq."""
    return PointMLP(in_dim=2, out_dim=out_dim, **cfg)
