"""MDM-style motion networks: a transformer over frames with a σ token and an action token, plus temporal convolutions.

Tevet et al. 2023 ("Human Motion Diffusion Model"): frames are linearly embedded, a noise-level token and an action
token are prepended, and a transformer encoder maps the sequence back to frames (x0-style output; here the raw
``F`` that EDM preconditioning wraps). With ``kernel > 0`` every block also runs a depthwise temporal convolution
over the frames (a bias towards smooth motion that attention alone lacks). Padded frames (``cond["defined"]``
False) are masked out of attention and zeroed before every convolution, so they never influence defined frames.

The classifier is the same trunk with one of two heads (``head``):

- ``"pooled"``: one logit from the σ token and the mean of the frames;
- ``"frames"``: a logit f_t per frame and log C = Σ_t log σ(f_t) over the defined frames, returned as the logit of
  C. This is an approximation: it treats the frames' validity as independent given the trunk's features (a window
  is valid when every frame is), which matches oracles that fail a window on its worst frame.
- ``"elements"``: the same per-frame logits ``[B, T]`` (+inf on padded frames) for a per-element classifier
  (``genneg.classifier.NoisyClassifier(elementwise=True)``) trained on the oracle's per-frame flags: the
  ``penetration`` reason, which a window commits exactly when one of its frames does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genneg.nn import SigmaEmbedding

__all__ = ["MotionTransformer", "frame_mask"]


def frame_mask(cond, b: int, t: int, device) -> Tensor:
    """``cond["defined"]`` as a bool ``[b, t]`` mask on ``device`` (every frame when absent); checks its shape."""
    defined = cond.get("defined") if isinstance(cond, dict) else None
    if defined is None:
        return torch.ones(b, t, dtype=torch.bool, device=device)
    if tuple(defined.shape) != (b, t):
        raise ValueError(f"cond['defined'] must have shape [{b}, {t}], got {tuple(defined.shape)}")
    return defined.to(device=device, dtype=torch.bool)


def _sinusoids(length: int, dim: int) -> Tensor:
    """Fixed sinusoidal frame positions [length, dim] (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    out = torch.zeros(length, dim)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freqs), torch.cos(pos * freqs[: dim // 2])
    return out


class _Block(nn.Module):
    """Pre-norm transformer block with an optional depthwise temporal convolution between attention and MLP."""

    def __init__(self, width: int, heads: int, ff: int, kernel: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, width))
        self.conv = None
        if kernel:
            self.norm_c = nn.LayerNorm(width)
            self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)
            self.mix = nn.Linear(width, width)

    def forward(self, h: Tensor, pad: Tensor, frames: Tensor, tokens: int) -> Tensor:
        x = self.norm1(h)
        h = h + self.attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]
        if self.conv is not None:
            f = self.norm_c(h[:, tokens:]) * frames  # padded frames are zeros for the convolution
            f = self.mix(nn.functional.gelu(self.conv(f.transpose(1, 2)).transpose(1, 2)))
            h = torch.cat([h[:, :tokens], h[:, tokens:] + f * frames], 1)
        return h + self.mlp(self.norm2(h))


class MotionTransformer(nn.Module):
    """``forward(x_in [B, T, F], c_noise [B], cond) -> [B, T, F]`` (denoiser) or ``[B]`` logits (classifier).

    ``cond`` is a dict with ``label`` (int64 ``[B]``, action index; optional) and ``defined`` (bool ``[B, T]``;
    optional, default all frames).

    Args:
        features: numbers per frame (147: root + 24 joints in 6D).
        frames: maximum window length T.
        num_labels: action classes; index ``num_labels`` is the "no label" token.
        width, depth, heads, ff: transformer size (MDM: 512, 8, 4, 1024).
        kernel: frames of the temporal convolution in every block (odd; 0 = none).
        dropout: attention / feed-forward dropout.
        label_dropout: training-time probability of replacing the label with "no label" (classifier-free use).
        classifier: True for a logit ``[B]`` instead of frames.
        head: the classifier's head, ``"pooled"`` or ``"frames"`` (see the module docstring).
    """

    def __init__(self, features: int, frames: int, num_labels: int, *, width: int = 128, depth: int = 4,
                 heads: int = 4, ff: int = 256, kernel: int = 0, dropout: float = 0.0, label_dropout: float = 0.1,
                 classifier: bool = False, head: str = "pooled"):  # fmt: skip
        super().__init__()
        if width % heads or width % 2:
            raise ValueError(f"width {width} must be even and divisible by heads {heads}")
        if kernel < 0 or (kernel and kernel % 2 == 0):
            raise ValueError(f"kernel must be 0 or an odd number of frames, got {kernel}")
        if head not in ("pooled", "frames", "elements"):
            raise ValueError(f"head must be 'pooled', 'frames' or 'elements', got {head!r}")
        if not 0 <= label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
        self.features, self.frames, self.num_labels = features, frames, num_labels
        self.label_dropout, self.classifier, self.head = label_dropout, classifier, head
        self.inp = nn.Linear(features, width)
        self.register_buffer("positions", _sinusoids(frames, width), persistent=False)
        self.sigma_emb = SigmaEmbedding(width)
        self.label_emb = nn.Embedding(num_labels + 1, width)
        self.blocks = nn.ModuleList(_Block(width, heads, ff, kernel, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        pooled = classifier and head == "pooled"
        self.out = nn.Linear(2 * width if pooled else width, 1 if classifier else features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if classifier and head != "pooled":  # start near C = 1/2 for a full window: σ(b)^frames = 1/2
            nn.init.constant_(self.out.bias, -math.log(2 ** (1 / frames) - 1))

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

    def forward(self, x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        b, t, f = x_in.shape
        if f != self.features or t > self.frames:
            raise ValueError(f"expected x of shape [B, <= {self.frames}, {self.features}], got {tuple(x_in.shape)}")
        defined = frame_mask(cond, b, t, x_in.device)
        frames = self.inp(x_in) + self.positions[:t]
        tokens = torch.stack([self.sigma_emb(c_noise), self.label_emb(self._labels(cond, b, x_in.device))], 1)
        h = torch.cat([tokens, frames], 1)  # [B, 2 + T, width]
        pad = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=x_in.device), ~defined], 1)
        w = defined[..., None].to(h.dtype)
        for block in self.blocks:
            h = block(h, pad, w, 2)
        h = self.norm(h)
        if not self.classifier:
            return self.out(h[:, 2:]) * w
        if self.head == "elements":  # per-frame logits, +inf (always valid) on padded frames
            return self.out(h[:, 2:])[..., 0].masked_fill(~defined, math.inf)
        if self.head == "frames":
            log_c = (nn.functional.logsigmoid(self.out(h[:, 2:])) * w).sum((1, 2)).clamp_max(-1e-6)  # [B]
            return log_c - torch.log(-torch.expm1(log_c))  # logit of C
        pooled = (h[:, 2:] * w).sum(1) / w.sum(1).clamp_min(1)  # mean over defined frames
        return self.out(torch.cat([h[:, 0], pooled], -1))[:, 0]
