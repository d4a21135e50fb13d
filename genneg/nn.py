"""Network building blocks shared by domains: σ embeddings, input Fourier features, residual MLPs."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SigmaEmbedding", "FourierFeatures", "ResidualMLP", "PointMLP"]


class SigmaEmbedding(nn.Module):
    """Embeds the scalar noise level ``c_noise [B]`` (= ln σ / 4) as sinusoids, then a small MLP → ``[B, dim]``."""

    def __init__(self, dim: int, num_freqs: int = 16, max_freq: float = 32.0):
        super().__init__()
        self.register_buffer("freqs", torch.logspace(0, math.log10(max_freq), num_freqs), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * num_freqs, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise[:, None] * self.freqs
        return self.mlp(torch.cat([angles.sin(), angles.cos()], -1))


class FourierFeatures(nn.Module):
    """Per-coordinate sinusoids at geometric frequencies: lets an MLP represent sharp, axis-aligned boundaries.

    Plain MLPs on raw 2-D coordinates collapse to smooth functions (docs/method.md, "Two traps"); these features fix it.
    Output: ``[..., in_dim * (1 + 2 * num_freqs)]`` (the raw input is kept).
    """

    def __init__(self, in_dim: int, num_freqs: int = 8, min_freq: float = 0.5, max_freq: float = 16.0):
        super().__init__()
        freqs = torch.logspace(math.log10(min_freq), math.log10(max_freq), num_freqs) * math.pi
        self.register_buffer("freqs", freqs, persistent=False)
        self.out_dim = in_dim * (1 + 2 * num_freqs)

    def forward(self, x: Tensor) -> Tensor:
        angles = x[..., None] * self.freqs  # [..., D, F]
        feats = torch.cat([angles.sin(), angles.cos()], -1).flatten(-2)
        return torch.cat([x, feats], -1)


class _Block(nn.Module):
    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.emb = nn.Linear(emb_dim, 2 * width)
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.emb(emb).chunk(2, -1)
        z = self.norm(h) * (1 + scale) + shift  # adaptive LayerNorm conditioning on σ
        return h + self.fc2(nn.functional.silu(self.fc1(z)))


class ResidualMLP(nn.Module):
    """MLP with σ-conditioned residual blocks: ``forward(features [B, in_dim], emb [B, emb_dim]) -> [B, out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 256, depth: int = 4, emb_dim: int = 128):
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(_Block(width, emb_dim) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, out_dim))

    def forward(self, feats: Tensor, emb: Tensor) -> Tensor:
        h = self.inp(feats)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


class PointMLP(nn.Module):
    """A network for flat vectors: Fourier features of x + σ-conditioned residual MLP.

    ``forward(x_in [B, D], c_noise [B], cond=None) -> [B, out_dim]``, or ``[B]`` when out_dim is 1 (a classifier
    logit). Plain MLPs on raw coordinates cannot represent sharp oracle boundaries; the features fix that.
    """

    def __init__(self, in_dim: int = 2, out_dim: int = 2, width: int = 256, depth: int = 4, num_freqs: int = 8,
                 max_freq: float = 16.0):
        super().__init__()
        self.features = FourierFeatures(in_dim, num_freqs=num_freqs, max_freq=max_freq)
        self.sigma_emb = SigmaEmbedding(128)
        self.mlp = ResidualMLP(self.features.out_dim, out_dim, width=width, depth=depth, emb_dim=128)
        self.out_dim = out_dim

    def forward(self, x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        out = self.mlp(self.features(x_in), self.sigma_emb(c_noise))
        return out[:, 0] if self.out_dim == 1 else out
