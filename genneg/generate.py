"""Drawing samples from any denoiser on a domain's conditions, in bounded-memory batches."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import Tensor

from .batch import batch_size_of, concat, take, to_device
from .config import SamplerConfig
from .diffusion import Denoiser, karras_sigmas
from .sampling import SAMPLERS

__all__ = ["generate", "timed_generate"]


def generate(
    denoiser: Denoiser,
    shape_fn: Callable[[Any, int], tuple[int, ...]],
    n: int,
    cfg: SamplerConfig,
    cond: Any = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: Callable[[int], None] | None = None,
) -> Tensor:
    """Samples ``n`` x0 with ``cfg``'s sampler, ``cfg.batch_size`` rows at a time.

    Args:
        shape_fn: ``shape_fn(cond_batch, m) -> (m, ...)``, the domain's ``sample_shape``.
        cond: ``n`` conditions (batch-first) or None.
        seed: the initial noise and any sampler noise come from a generator seeded with it.
        callback: called with the number of rows finished after each batch.
    """
    if n < 1:
        raise ValueError(f"need n >= 1 samples, got {n}")
    if cond is not None and batch_size_of(cond) != n:
        raise ValueError(f"got {batch_size_of(cond)} conditions for {n} samples")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    sigmas = karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho, device=device)
    sampler = SAMPLERS[cfg.kind]
    extra = {"generator": gen} if cfg.kind == "stochastic" else {}
    out = []
    for s in range(0, n, cfg.batch_size):
        m = min(cfg.batch_size, n - s)
        c = to_device(take(cond, slice(s, s + m)), device)
        x = (torch.randn(shape_fn(c, m), generator=gen) * cfg.sigma_max).to(device)
        out.append(sampler(denoiser, x, sigmas, c, **extra).cpu())
        if callback:
            callback(m)
    return concat(out)


def timed_generate(*args, **kwargs) -> tuple[Tensor, float]:
    """``generate`` plus its wall time in seconds."""
    t0 = time.perf_counter()
    x = generate(*args, **kwargs)
    return x, time.perf_counter() - t0
