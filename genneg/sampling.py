"""Samplers: plain functions of a denoiser (k-diffusion style); guidance is a denoiser wrapper, never a sampler twin.

Every sampler starts from ``x`` already scaled to the first sigma (``x = sigmas[0] * randn``) and calls
``denoiser(x, sigma [B], cond)`` only.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from . import rng
from .diffusion import Denoiser, append_dims, check_finite

__all__ = ["sample_heun", "sample_stochastic", "sample", "to_d"]


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """The probability-flow ODE derivative dx/dσ = (x − D(x; σ)) / σ."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def _check(x: Tensor, sigmas: Tensor) -> list[float]:
    """Validates the inputs; returns the schedule as Python floats, read from the device once, so that no step of the
    loop has to ask the device where it is."""
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape [B, ...] with B > 0, got {tuple(x.shape)}")
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError("sigmas must be a 1-D schedule with at least two entries (e.g. karras_sigmas(n, ...))")
    host = sigmas.detach().cpu().tolist()
    if not all(math.isfinite(h) for h in host):
        raise ValueError(f"sigmas must be finite, got {host}")
    if any(a <= b for a, b in zip(host, host[1:])) or min(host) < 0:
        raise ValueError("sigmas must be non-negative and strictly decreasing")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point, got {x.dtype}")
    check_finite(x, "initial noise x")
    return host


class _FiniteWatch:
    """Notes, on the device, the first evaluation whose denoiser output is not finite; read once, after the loop.

    Checking every step on the host would stall the device every step (a hidden device-to-host copy).
    """

    def __init__(self, x: Tensor):
        self.step = torch.full((), -1, dtype=torch.long, device=x.device)

    def update(self, out: Tensor, i: int) -> None:
        bad = ~torch.isfinite(out).all()
        self.step = torch.where(bad & (self.step < 0), i, self.step)

    def check(self, sigmas: list[float]) -> None:
        i = int(self.step)  # the schedule index of the first bad evaluation
        if i >= 0:
            raise ValueError(f"denoiser output at sigma={sigmas[i]:.4g} (schedule index {i}) contains non-finite "
                             "values (NaN or inf)")


def _denoise(denoiser: Denoiser, x: Tensor, sigma: Tensor, cond: Any, watch: _FiniteWatch, i: int) -> Tensor:
    out = denoiser(x, sigma.expand(x.shape[0]), cond)
    if out.shape != x.shape:
        raise ValueError(f"denoiser returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
    watch.update(out, i)
    return out


def _heun_step(denoiser: Denoiser, x: Tensor, s: Tensor, s_next: Tensor, cond: Any, last: bool, watch: _FiniteWatch,
               i: int) -> tuple[Tensor, Tensor]:
    """One step of the probability-flow ODE from σ = s to s_next: Heun, or Euler onto σ = 0 (``last``)."""
    denoised = _denoise(denoiser, x, s, cond, watch, i)
    d = to_d(x, s.expand(x.shape[0]), denoised)
    x_next = x + d * (s_next - s)
    if not last:
        d2 = to_d(x_next, s_next.expand(x.shape[0]), _denoise(denoiser, x_next, s_next, cond, watch, i + 1))
        x_next = x + (d + d2) / 2 * (s_next - s)
    return x_next, denoised


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Any = None,
    *,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Deterministic 2nd-order Heun sampler on the probability-flow ODE (Algorithm 1 of Karras et al. 2022).

    Args:
        x: ``[B, ...]`` initial noise already scaled by ``sigmas[0]``.
        sigmas: ``[n + 1]`` decreasing schedule ending in 0 (see ``karras_sigmas``).
        callback: called after every step with ``{"i", "x", "sigma", "denoised"}``.
    """
    host = _check(x, sigmas)
    sigmas, watch = sigmas.to(x.device, x.dtype), _FiniteWatch(x)
    for i in range(len(host) - 1):
        s = sigmas[i]
        x, denoised = _heun_step(denoiser, x, s, sigmas[i + 1], cond, host[i + 1] == 0, watch, i)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s, "denoised": denoised})
    watch.check(host)
    return x


@torch.no_grad()
def sample_stochastic(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Any = None,
    *,
    s_churn: float = 30.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Stochastic EDM sampler (Algorithm 2 of Karras et al. 2022): Heun steps with noise "churn".

    ``s_churn = 0`` reduces it to ``sample_heun``. ``generator`` makes the injected noise reproducible.
    """
    host = _check(x, sigmas)
    if not (s_churn >= 0 and math.isfinite(s_churn) and math.isfinite(s_noise)):
        raise ValueError(f"s_churn must be finite and >= 0 and s_noise finite, got {s_churn}, {s_noise}")
    sigmas, watch = sigmas.to(x.device, x.dtype), _FiniteWatch(x)
    n = len(host) - 1
    gamma_max = min(s_churn / n, math.sqrt(2) - 1)
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        gamma = gamma_max if s_tmin <= host[i] <= s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            eps = _randn_like(x, generator) * s_noise
            x = x + eps * (s_hat**2 - s**2).sqrt()
        x, denoised = _heun_step(denoiser, x, s_hat, s_next, cond, host[i + 1] == 0, watch, i)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s_hat, "denoised": denoised})
    watch.check(host)
    return x


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Noise drawn on the generator's device (reproducible across devices), then moved to x's."""
    if generator is None:
        return torch.randn_like(x)
    return rng.randn(x.shape, generator, device=x.device, dtype=x.dtype)


SAMPLERS = {"heun": sample_heun, "stochastic": sample_stochastic}


def sample(
    denoiser: Denoiser,
    shape: tuple[int, ...],
    sigmas: Tensor,
    cond: Any = None,
    *,
    sampler: str = "heun",
    generator: torch.Generator | None = None,
    device=None,
    callback: Callable[[dict], None] | None = None,
    **sampler_kwargs,
) -> Tensor:
    """Draws ``shape[0]`` samples: initial noise from ``generator``, then the named sampler."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    x = _randn_like(torch.empty(shape, device=device), generator) * sigmas[0].item()
    if sampler == "stochastic":
        sampler_kwargs["generator"] = generator
    return SAMPLERS[sampler](denoiser, x, sigmas, cond, callback=callback, **sampler_kwargs)
