"""The map-conditioned scene transformer: vehicle tokens attend to each other and to map polyline tokens.

Vehicles are a set: no positional index enters the network, so the denoiser is permutation-equivariant over
vehicle slots and the classifier (masked pooling) permutation-invariant. Padded slots (``cond["defined"]`` False)
are masked out as attention keys and zeroed at the output, so they never change a defined vehicle's output.
Map polylines are encoded by a point-set encoder (per-point MLP, max-pool over the points of a polyline, in the
spirit of VectorNet / PointNet) and enter through cross-attention; a learned null token keeps the attention
defined for scenes without any lane piece.

Relative geometry (``relative.py``), computed from the *noisy* vehicle positions in metres: each vehicle attends
to its K nearest lane points expressed in its own frame (``_LaneAttention``), and vehicle self-attention gets a
per-head bias from every pair's relative pose. The noisy positions are recovered from the network input with
EDM's scaling (``x = x_in * sqrt(sigma^2 + sigma_data^2)``, ``sigma = exp(4 c_noise)``, as
``genneg.diffusion.EDMPrecond`` and ``genneg.classifier.NoisyClassifier`` call their networks), so ``sigma_data``
must be the domain's. What stays absolute is scaled alike: the map tokens' positions get the vehicles' ``c_in(sigma)``.

The ego (the scene's centre vehicle, given) is one more token: it is embedded from its clean features, takes part
in the self-attention and the classifier's pooling, and gets no denoiser output.

The per-vehicle classifier (``out="vehicle_classifier"``) gives one logit per vehicle, the ego first (``[B, N]``, as
the oracle's per-vehicle flags), +inf on padded slots (an absent vehicle is valid); with ``pair_head`` each
vehicle's logit also reads the pairs it is part of (its relative pose to every other vehicle, their tokens),
max-pooled over the others: the collision classifier.

With ``relative_values`` the relative features also carry the offsets and directions in the scene frame
(``relative.in_scene_frame``) and each pair's embedding is added to the value a vehicle reads from the other: a
vehicle's update can then be a sum of scene-frame offsets to its neighbours and lane points (move away from the car on
top of me, towards my lane), which scalar attention biases over neighbours' tokens cannot express. Without it the
base shipped as ``pretrained/traffic-cpu`` kept a flat 62 % collision rate from step 1,000 to 12,000, while its
off-road rate fell from 78 % to 23 %: colliding pairs overlap by 64 % of a box (median), duplicates rather than
near misses.

``cond`` (a dict of tensors, see ``genneg.domains.traffic.TrafficDomain``):
    ``ego [B, 6]``, ``defined [B, N - 1]`` bool, ``map [B, L, P, 6]`` (x, y, dx, dy, width, internal, normalised),
    ``map_defined [B, L]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genneg.nn import FourierFeatures, SigmaEmbedding

from .relative import LANE_FEATURES, PAIR_FEATURES, in_scene_frame, lane_context, pair_pose, vehicle_poses

__all__ = ["SceneNet", "MapEncoder", "VEHICLE_FEATURES", "OUTPUTS"]

VEHICLE_FEATURES = ("x", "y", "cos_yaw", "sin_yaw", "length", "width")
MAP_POINT_FEATURES = 6  # x, y, dx, dy, width, internal (genneg.domains.traffic.map.POLYLINE_FIELDS)
OUTPUTS = ("denoiser", "classifier", "vehicle_classifier")
VALID_PRIOR_LOGIT = 2.0  # a per-vehicle head starts at P(valid) = 0.88 per vehicle: most vehicles are valid


def _check_cond(x_in: Tensor, cond) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not isinstance(cond, dict) or not {"ego", "defined", "map", "map_defined"} <= set(cond):
        raise ValueError("SceneNet needs cond = {'ego': [B, 6], 'defined': [B, N], 'map': [B, L, P, 6], "
                         "'map_defined': [B, L]}")
    ego, defined, polylines, map_defined = cond["ego"], cond["defined"].bool(), cond["map"], cond["map_defined"].bool()
    b, n = x_in.shape[:2]
    if (defined.shape != (b, n) or ego.shape != (b, x_in.shape[2]) or polylines.shape[0] != b
            or polylines.shape[-1] != MAP_POINT_FEATURES or map_defined.shape != polylines.shape[:2]):
        raise ValueError(f"cond shapes do not match x [{b}, {n}, ...]: ego {tuple(ego.shape)}, defined "
                         f"{tuple(defined.shape)}, map {tuple(polylines.shape)}, "
                         f"map_defined {tuple(map_defined.shape)}")
    return ego.to(x_in.dtype), defined, polylines.to(x_in.dtype), map_defined


class MapEncoder(nn.Module):
    """Point-set encoder: ``polylines [B, L, P, 5] -> tokens [B, L, width]`` (per-point MLP, max over points)."""

    def __init__(self, width: int, num_freqs: int = 4):
        super().__init__()
        self.features = FourierFeatures(2, num_freqs=num_freqs, min_freq=0.5, max_freq=8.0)
        hidden = max(width // 2, 16)  # per point: the map's widest layer, kept narrow (it runs on B x L x P rows)
        self.point_mlp = nn.Sequential(nn.Linear(self.features.out_dim + MAP_POINT_FEATURES - 2, hidden), nn.SiLU(),
                                       nn.Linear(hidden, width))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))

    def forward(self, polylines: Tensor) -> Tensor:
        feats = torch.cat([self.features(polylines[..., :2]), polylines[..., 2:]], -1)  # [B, L, P, F]
        return self.out(self.point_mlp(feats).amax(dim=2))  # every point of a stored polyline is real


class _Offsets(nn.Module):
    """Fourier features of the first ``k`` columns (relative offsets), the other columns passed through."""

    def __init__(self, fourier: FourierFeatures, k: int = 2):
        super().__init__()
        self.fourier, self.k = fourier, k

    def forward(self, f: Tensor) -> Tensor:
        return torch.cat([self.fourier(f[..., :self.k]), f[..., self.k:]], -1)


class _LaneAttention(nn.Module):
    """Each vehicle token attends to its own K lane points: ``[B, T, W]`` out. The points' keys and values are
    computed once per forward (``SceneNet.lane_kv``) and shared by every block; each block has its own query."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.o = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, z: Tensor, key: Tensor, val: Tensor, valid: Tensor) -> Tensor:
        b, t, k, h, d = key.shape
        q = self.q(z).view(b, t, 1, h, d)
        logits = (q * key).sum(-1) / d**0.5  # [B, T, K, H]
        logits = logits.masked_fill(~valid[..., None], float("-inf"))
        attn = torch.nan_to_num(logits.softmax(2))  # a scene without lanes: no lane read
        return self.o((attn[..., None] * val).sum(2).reshape(b, t, h * d))


class _Block(nn.Module):
    """Pre-norm block with σ-adaptive LayerNorms: vehicle self-attention (biased by relative pose; with
    ``pair_values`` each pair's embedding is added to the value read), attention to each vehicle's own lane points,
    cross-attention to the map tokens, MLP."""

    def __init__(self, width: int, heads: int, emb_dim: int, pair_values: bool = False):
        super().__init__()
        self.heads = heads
        self.norms = nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False) for _ in range(4))
        self.mod = nn.Linear(emb_dim, 8 * width)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)
        self.pair_bias = nn.Linear(width, heads)
        self.pair_value = nn.Linear(width, width) if pair_values else None
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.lane_attn = _LaneAttention(width, heads)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h: Tensor, emb: Tensor, pad: Tensor, pairs: Tensor, lanes: tuple[Tensor, Tensor, Tensor],
                map_tokens: Tensor, map_pad: Tensor) -> Tensor:
        s1, b1, s2, b2, s3, b3, s4, b4 = self.mod(emb)[:, None].chunk(8, -1)  # each [B, 1, W]
        bias = self.pair_bias(pairs).permute(0, 3, 1, 2)  # [B, H, T, T]
        bias = bias.masked_fill(pad[:, None, None, :], float("-inf")).flatten(0, 1)  # padded keys never attended
        z = self.norms[0](h) * (1 + s1) + b1
        if self.pair_value is None:
            h = h + self.self_attn(z, z, z, attn_mask=bias, need_weights=False)[0]
        else:
            h = h + self._pair_attention(z, bias, pairs)
        z = self.norms[1](h) * (1 + s2) + b2
        h = h + self.lane_attn(z, *lanes)
        z = self.norms[2](h) * (1 + s3) + b3
        h = h + self.cross_attn(z, map_tokens, map_tokens, key_padding_mask=map_pad, need_weights=False)[0]
        z = self.norms[3](h) * (1 + s4) + b4
        return h + self.mlp(z)

    def _pair_attention(self, z: Tensor, bias: Tensor, pairs: Tensor) -> Tensor:
        """``self_attn``'s attention (same weights) with values ``v_j + pair_value(pairs_ij)``."""
        b, t, w = z.shape
        h, d = self.heads, w // self.heads
        attn = self.self_attn
        q, k, v = nn.functional.linear(z, attn.in_proj_weight, attn.in_proj_bias).view(b, t, 3, h, d).unbind(2)
        logits = torch.einsum("bihd,bjhd->bhij", q, k) / d**0.5 + bias.view(b, h, t, t)
        a = logits.softmax(-1)  # [B, H, i, j]; the ego is never padded, so every row has a key
        u = self.pair_value(pairs).view(b, t, t, h, d)  # [B, i, j, H, d]
        out = torch.einsum("bhij,bjhd->bihd", a, v) + torch.einsum("bhij,bijhd->bihd", a, u)
        return attn.out_proj(out.reshape(b, t, w))


class _VehicleHead(nn.Module):
    """Per-vehicle logits ``[B, T]`` from the tokens, optionally with each vehicle's max-pooled pair features."""

    def __init__(self, width: int, pairs: bool):
        super().__init__()
        self.pair = nn.Sequential(nn.Linear(3 * width, width), nn.SiLU(), nn.Linear(width, width)) if pairs else None
        self.out = nn.Sequential(nn.Linear((2 if pairs else 1) * width, width), nn.SiLU(), nn.Linear(width, 1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.constant_(self.out[-1].bias, VALID_PRIOR_LOGIT)

    def forward(self, h: Tensor, pairs: Tensor, defined: Tensor) -> Tensor:
        feats = h
        if self.pair is not None:
            t = h.shape[1]
            u = self.pair(torch.cat([pairs, h[:, :, None].expand(-1, -1, t, -1), h[:, None].expand(-1, t, -1, -1)], -1))
            others = defined[:, None, :] & ~torch.eye(t, dtype=torch.bool, device=h.device)  # [B, i, j]: j ≠ i exists
            pooled = u.masked_fill(~others[..., None], float("-inf")).amax(2)
            feats = torch.cat([h, torch.where(others.any(2)[..., None], pooled, torch.zeros_like(pooled))], -1)
        return self.out(feats)[..., 0].masked_fill(~defined, float("inf"))


class SceneNet(nn.Module):
    """``forward(x_in [B, N, 6], c_noise [B], cond) -> [B, N, 6]`` (denoiser), ``-> [B]`` logits (classifier) or
    ``-> [B, 1 + N]`` per-vehicle logits, the ego first (vehicle classifier).

    Args:
        out: "denoiser" (per-vehicle output, zero on padded slots), "classifier" (masked mean+max pool, logit) or
            "vehicle_classifier" (a logit per vehicle, +inf on padded slots).
        pair_head: the vehicle classifier's logits also read each vehicle's pairs (for collisions).
        width, depth, heads: transformer size (width divisible by heads).
        num_freqs: Fourier features per vehicle feature (dot products of them express relative positions, which
            collisions depend on).
        lane_points: K, the lane points each vehicle reads in its own frame.
        sigma_data: the domain's data scale (to recover the noisy positions from the EDM-scaled input).
        relative_values: scene-frame offsets in the relative features and pair embeddings in the attention values
            (see the module's docstring); False builds the network of the models shipped before it.
    """

    def __init__(self, out: str = "denoiser", width: int = 128, depth: int = 3, heads: int = 4, num_freqs: int = 6,
                 lane_points: int = 16, sigma_data: float = 0.6, pair_head: bool = False,
                 relative_values: bool = False):
        super().__init__()
        if out not in OUTPUTS:
            raise ValueError(f"SceneNet out must be one of {list(OUTPUTS)}, got {out!r}")
        if pair_head and out != "vehicle_classifier":
            raise ValueError("SceneNet pair_head is a head of the vehicle classifier (out='vehicle_classifier')")
        if width % heads or depth < 1:
            raise ValueError(f"SceneNet needs width divisible by heads and depth >= 1, got {width}, {heads}, {depth}")
        self.out_kind, d = out, len(VEHICLE_FEATURES)
        self.features = FourierFeatures(d, num_freqs=num_freqs, min_freq=0.5, max_freq=16.0)
        self.inp = nn.Linear(self.features.out_dim, width)
        self.ego_inp = nn.Linear(self.features.out_dim, width)  # the ego's own embedding: it is clean, not noisy
        self.lane_points, self.sigma_data, self.heads = int(lane_points), float(sigma_data), heads
        self.relative_values = bool(relative_values)
        k = 4 if relative_values else 2  # offset columns: own frame, and the scene frame with relative_values
        rel = FourierFeatures(k, num_freqs=num_freqs, min_freq=0.5, max_freq=16.0)  # offsets to ~0.3 m
        extra = 4 if relative_values else 0  # in_scene_frame's offset and direction

        def embedding(columns: int) -> nn.Sequential:
            return nn.Sequential(_Offsets(rel, k), nn.Linear(rel.out_dim + columns + extra - k, width), nn.SiLU(),
                                 nn.Linear(width, width))

        self.lane_emb = embedding(len(LANE_FEATURES))
        self.lane_kv = nn.Linear(width, 2 * width)
        self.pair_emb = embedding(len(PAIR_FEATURES))
        self.sigma_emb = SigmaEmbedding(width)
        self.map_encoder = MapEncoder(width)
        self.null_token = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = nn.ModuleList(_Block(width, heads, width, relative_values) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        if out == "vehicle_classifier":
            self.head = _VehicleHead(width, pair_head)
        else:
            self.head = nn.Linear(width, d) if out == "denoiser" else nn.Sequential(
                nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, 1))
            nn.init.zeros_(self.head.weight if out == "denoiser" else self.head[-1].weight)

    def trunk(self, x_in: Tensor, c_noise: Tensor, cond) -> tuple[Tensor, Tensor, Tensor]:
        """Tokens ``[B, 1 + N, W]`` after the blocks (the ego first; zero on padded slots), their mask and the
        embedded pair poses ``[B, 1 + N, 1 + N, W]``."""
        ego, defined, polylines, map_defined = _check_cond(x_in, cond)
        emb = self.sigma_emb(c_noise)
        x_in = x_in * defined[..., None].to(x_in.dtype)  # padded inputs zeroed: no NaN can leak
        c_in = ((4 * c_noise).exp() ** 2 + self.sigma_data**2).rsqrt()[:, None, None]  # EDM's input scaling
        xy, head = vehicle_poses(torch.cat([ego[:, None], x_in / c_in], 1))  # noisy poses in metres, ego first
        lanes, lane_ok = lane_context(xy, head, polylines, map_defined, self.lane_points)
        pairs = pair_pose(xy, head)
        if self.relative_values:
            lanes, pairs = in_scene_frame(lanes, head), in_scene_frame(pairs, head)
        b, t, k = lane_ok.shape
        key, val = self.lane_kv(self.lane_emb(lanes)).view(b, t, k, self.heads, -1).chunk(2, -1)
        lanes = (key, val, lane_ok)
        pairs = self.pair_emb(pairs)
        defined = torch.cat([torch.ones_like(defined[:, :1]), defined], 1)  # the ego is always there
        keep = defined[..., None].to(x_in.dtype)
        h = torch.cat([self.ego_inp(self.features(ego))[:, None], self.inp(self.features(x_in))], 1)
        h = (h + emb[:, None]) * keep
        scaled = torch.cat([polylines[..., :2] * c_in[..., None], polylines[..., 2:]], -1)  # like the vehicles
        null = self.null_token.expand(x_in.shape[0], 1, -1)
        map_tokens = torch.cat([null, self.map_encoder(scaled * map_defined[..., None, None])], 1)
        map_pad = torch.cat([torch.zeros_like(map_defined[:, :1]), ~map_defined], 1)
        for block in self.blocks:
            h = block(h, emb, ~defined, pairs, lanes, map_tokens, map_pad) * keep
        return self.norm(h) * keep, defined, pairs

    def forward(self, x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        h, defined, pairs = self.trunk(x_in, c_noise, cond)
        if self.out_kind == "vehicle_classifier":
            return self.head(h, pairs, defined)
        if self.out_kind == "denoiser":
            return self.head(h[:, 1:]) * defined[:, 1:, None].to(h.dtype)
        count = defined.sum(1, keepdim=True).to(h.dtype)
        mean = h.sum(1) / count
        peak = h.masked_fill(~defined[..., None], float("-inf")).amax(1)  # finite: the ego is always there
        return self.head(torch.cat([mean, peak], -1))[:, 0]
