"""The map-conditioned scene transformer: vehicle tokens attend to each other and to map polyline tokens.

Vehicles are a set: no positional index enters the network, so the denoiser is permutation-equivariant over
vehicle slots and the classifier (masked pooling) permutation-invariant. Padded slots (``cond["defined"]`` False)
are masked out as attention keys and zeroed at the output, so they never change a defined vehicle's output.
Map polylines are encoded by a point-set encoder (per-point MLP, max-pool over the points of a polyline, in the
spirit of VectorNet / PointNet) and enter through cross-attention; a learned null token keeps the attention
defined for scenes without any lane piece.

The ego (the scene's centre vehicle, given) is one more token: it is embedded from its clean features, takes part
in the self-attention and the classifier's pooling, and gets no output.

``cond`` (a dict of tensors, see ``domains.traffic.TrafficDomain``):
    ``ego [B, 6]``, ``defined [B, N - 1]`` bool, ``map [B, L, P, 6]`` (x, y, dx, dy, width, internal, normalised),
    ``map_defined [B, L]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genneg.nn import FourierFeatures, SigmaEmbedding

__all__ = ["SceneNet", "MapEncoder", "VEHICLE_FEATURES"]

VEHICLE_FEATURES = ("x", "y", "cos_yaw", "sin_yaw", "length", "width")
MAP_POINT_FEATURES = 6  # x, y, dx, dy, width, internal (domains.traffic.map.POLYLINE_FIELDS)


def _check_cond(x_in: Tensor, cond) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not isinstance(cond, dict) or not {"ego", "defined", "map", "map_defined"} <= set(cond):
        raise ValueError("SceneNet needs cond = {'ego': [B, 6], 'defined': [B, N], 'map': [B, L, P, 6], "
                         "'map_defined': [B, L]}")
    ego, defined, polylines, map_defined = cond["ego"], cond["defined"].bool(), cond["map"], cond["map_defined"].bool()
    b, n = x_in.shape[:2]
    if (defined.shape != (b, n) or ego.shape != (b, x_in.shape[2]) or polylines.shape[0] != b
            or polylines.shape[-1] != MAP_POINT_FEATURES or map_defined.shape != polylines.shape[:2]):
        raise ValueError(f"cond shapes do not match x [{b}, {n}, ...]: ego {tuple(ego.shape)}, defined "
                         f"{tuple(defined.shape)}, map {tuple(polylines.shape)}, map_defined {tuple(map_defined.shape)}")
    return ego.to(x_in.dtype), defined, polylines.to(x_in.dtype), map_defined


class MapEncoder(nn.Module):
    """Point-set encoder: ``polylines [B, L, P, 5] -> tokens [B, L, width]`` (per-point MLP, max over points)."""

    def __init__(self, width: int, num_freqs: int = 4):
        super().__init__()
        self.features = FourierFeatures(2, num_freqs=num_freqs, min_freq=0.5, max_freq=8.0)
        self.point_mlp = nn.Sequential(nn.Linear(self.features.out_dim + MAP_POINT_FEATURES - 2, width), nn.SiLU(),
                                       nn.Linear(width, width))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))

    def forward(self, polylines: Tensor) -> Tensor:
        feats = torch.cat([self.features(polylines[..., :2]), polylines[..., 2:]], -1)  # [B, L, P, F]
        return self.out(self.point_mlp(feats).amax(dim=2))  # every point of a stored polyline is real


class _Block(nn.Module):
    """Pre-norm block with σ-adaptive LayerNorms: vehicle self-attention, cross-attention to the map, MLP."""

    def __init__(self, width: int, heads: int, emb_dim: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False) for _ in range(3))
        self.mod = nn.Linear(emb_dim, 6 * width)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h: Tensor, emb: Tensor, pad: Tensor, map_tokens: Tensor, map_pad: Tensor) -> Tensor:
        s1, b1, s2, b2, s3, b3 = self.mod(emb)[:, None].chunk(6, -1)  # each [B, 1, W]
        z = self.norms[0](h) * (1 + s1) + b1
        h = h + self.self_attn(z, z, z, key_padding_mask=pad, need_weights=False)[0]
        z = self.norms[1](h) * (1 + s2) + b2
        h = h + self.cross_attn(z, map_tokens, map_tokens, key_padding_mask=map_pad, need_weights=False)[0]
        z = self.norms[2](h) * (1 + s3) + b3
        return h + self.mlp(z)


class SceneNet(nn.Module):
    """``forward(x_in [B, N, 6], c_noise [B], cond) -> [B, N, 6]`` (denoiser) or ``-> [B]`` logits (classifier).

    Args:
        out: "denoiser" (per-vehicle output, zero on padded slots) or "classifier" (masked mean+max pool, logit).
        width, depth, heads: transformer size (width divisible by heads).
        num_freqs: Fourier features per vehicle feature (dot products of them express relative positions, which
            collisions depend on).
    """

    def __init__(self, out: str = "denoiser", width: int = 128, depth: int = 3, heads: int = 4, num_freqs: int = 6):
        super().__init__()
        if out not in ("denoiser", "classifier"):
            raise ValueError(f"SceneNet out must be 'denoiser' or 'classifier', got {out!r}")
        if width % heads or depth < 1:
            raise ValueError(f"SceneNet needs width divisible by heads and depth >= 1, got {width}, {heads}, {depth}")
        self.out_kind, d = out, len(VEHICLE_FEATURES)
        self.features = FourierFeatures(d, num_freqs=num_freqs, min_freq=0.5, max_freq=16.0)
        self.inp = nn.Linear(self.features.out_dim, width)
        self.ego_inp = nn.Linear(self.features.out_dim, width)  # the ego's own embedding: it is clean, not noisy
        self.sigma_emb = SigmaEmbedding(width)
        self.map_encoder = MapEncoder(width)
        self.null_token = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = nn.ModuleList(_Block(width, heads, width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, d) if out == "denoiser" else nn.Sequential(
            nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, 1))
        nn.init.zeros_(self.head.weight if out == "denoiser" else self.head[-1].weight)

    def trunk(self, x_in: Tensor, c_noise: Tensor, cond) -> tuple[Tensor, Tensor]:
        """Tokens ``[B, 1 + N, W]`` after the blocks (the ego first; zero on padded slots) and their mask."""
        ego, defined, polylines, map_defined = _check_cond(x_in, cond)
        emb = self.sigma_emb(c_noise)
        x_in = x_in * defined[..., None].to(x_in.dtype)  # padded inputs zeroed: no NaN can leak
        defined = torch.cat([torch.ones_like(defined[:, :1]), defined], 1)  # the ego is always there
        keep = defined[..., None].to(x_in.dtype)
        h = torch.cat([self.ego_inp(self.features(ego))[:, None], self.inp(self.features(x_in))], 1)
        h = (h + emb[:, None]) * keep
        null = self.null_token.expand(x_in.shape[0], 1, -1)
        map_tokens = torch.cat([null, self.map_encoder(polylines * map_defined[..., None, None])], 1)
        map_pad = torch.cat([torch.zeros_like(map_defined[:, :1]), ~map_defined], 1)
        for block in self.blocks:
            h = block(h, emb, ~defined, map_tokens, map_pad) * keep
        return self.norm(h) * keep, defined

    def forward(self, x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        h, defined = self.trunk(x_in, c_noise, cond)
        if self.out_kind == "denoiser":
            return self.head(h[:, 1:]) * defined[:, 1:, None].to(h.dtype)
        count = defined.sum(1, keepdim=True).to(h.dtype)
        mean = h.sum(1) / count
        peak = h.masked_fill(~defined[..., None], float("-inf")).amax(1)  # finite: the ego is always there
        return self.head(torch.cat([mean, peak], -1))[:, 0]
