"""MDM-style motion networks: a transformer encoder over frames with a σ token and an action token.

Tevet et al. 2023 ("Human Motion Diffusion Model"): frames are linearly embedded, a noise-level token and an action
token are prepended, and a transformer encoder maps the sequence back to frames (x0-style output; here the raw
``F`` that EDM preconditioning wraps). Padded frames (``cond["defined"]`` False) are masked out of attention, so
they never influence defined frames. The classifier is the same trunk with a pooled logit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genneg.nn import SigmaEmbedding

__all__ = ["MotionTransformer"]


def _sinusoids(length: int, dim: int) -> Tensor:
    """Fixed sinusoidal frame positions [length, dim] (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    out = torch.zeros(length, dim)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freqs), torch.cos(pos * freqs[: dim // 2])
    return out


class MotionTransformer(nn.Module):
    """``forward(x_in [B, T, F], c_noise [B], cond) -> [B, T, F]`` (denoiser) or ``[B]`` logits (classifier).

    ``cond`` is a dict with ``label`` (int64 ``[B]``, action index; optional) and ``defined`` (bool ``[B, T]``;
    optional, default all frames).

    Args:
        features: numbers per frame (147: root + 24 joints in 6D).
        frames: maximum window length T.
        num_labels: action classes; index ``num_labels`` is the "no label" token.
        width, depth, heads, ff: transformer size (MDM: 512, 8, 4, 1024).
        dropout: attention / feed-forward dropout.
        label_dropout: training-time probability of replacing the label with "no label" (classifier-free use).
        classifier: True for a pooled logit ``[B]`` instead of frames.
    """

    def __init__(self, features: int, frames: int, num_labels: int, *, width: int = 128, depth: int = 4,
                 heads: int = 4, ff: int = 256, dropout: float = 0.0, label_dropout: float = 0.1,
                 classifier: bool = False):  # fmt: skip
        super().__init__()
        if width % heads or width % 2:
            raise ValueError(f"width {width} must be even and divisible by heads {heads}")
        if not 0 <= label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
        self.features, self.frames, self.num_labels = features, frames, num_labels
        self.label_dropout, self.classifier = label_dropout, classifier
        self.inp = nn.Linear(features, width)
        self.register_buffer("positions", _sinusoids(frames, width), persistent=False)
        self.sigma_emb = SigmaEmbedding(width)
        self.label_emb = nn.Embedding(num_labels + 1, width)
        layer = nn.TransformerEncoderLayer(width, heads, ff, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(2 * width if classifier else width, 1 if classifier else features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _labels(self, cond, b: int, device) -> Tensor:
        label = cond.get("label") if isinstance(cond, dict) else None
        if label is None:
            return torch.full((b,), self.num_labels, dtype=torch.long, device=device)
        label = label.to(device=device, dtype=torch.long)
        if label.shape != (b,) or (label < 0).any() or (label > self.num_labels).any():
            raise ValueError(f"cond['label'] must be [{b}] ints in [0, {self.num_labels}], got {tuple(label.shape)}")
        if self.training and self.label_dropout > 0:
            drop = torch.rand(b, device=device) < self.label_dropout
            label = torch.where(drop, torch.full_like(label, self.num_labels), label)
        return label

    def _defined(self, cond, b: int, t: int, device) -> Tensor:
        defined = cond.get("defined") if isinstance(cond, dict) else None
        if defined is None:
            return torch.ones(b, t, dtype=torch.bool, device=device)
        if tuple(defined.shape) != (b, t):
            raise ValueError(f"cond['defined'] must have shape [{b}, {t}], got {tuple(defined.shape)}")
        return defined.to(device=device, dtype=torch.bool)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        b, t, f = x_in.shape
        if f != self.features or t > self.frames:
            raise ValueError(f"expected x of shape [B, <= {self.frames}, {self.features}], got {tuple(x_in.shape)}")
        defined = self._defined(cond, b, t, x_in.device)
        frames = self.inp(x_in) + self.positions[:t]
        tokens = torch.stack([self.sigma_emb(c_noise), self.label_emb(self._labels(cond, b, x_in.device))], 1)
        h = torch.cat([tokens, frames], 1)  # [B, 2 + T, width]
        pad = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=x_in.device), ~defined], 1)
        h = self.norm(self.encoder(h, src_key_padding_mask=pad))
        if not self.classifier:
            return self.out(h[:, 2:]) * defined[..., None]
        w = defined[..., None].to(h.dtype)
        pooled = (h[:, 2:] * w).sum(1) / w.sum(1).clamp_min(1)  # mean over defined frames
        return self.out(torch.cat([h[:, 0], pooled], -1))[:, 0]
