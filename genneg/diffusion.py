"""EDM diffusion: preconditioning, sigma distributions, the weighted denoising loss, the Karras schedule.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM), Table 1.
A *denoiser* is any callable ``denoiser(x, sigma, cond) -> x0_hat`` with ``x`` of shape ``[B, ...]`` and ``sigma``
of shape ``[B]``; everything in the engine speaks that currency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from . import rng
from .batch import take

__all__ = [
    "Denoiser",
    "append_dims",
    "check_finite",
    "EDMPrecond",
    "SigmaHandoff",
    "LogNormalSigma",
    "LogUniformSigma",
    "edm_loss",
    "denoising_loss",
    "karras_sigmas",
    "as_sigma",
    "defined_mask",
    "masked_sum",
]

Denoiser = Callable[[Tensor, Tensor, Any], Tensor]


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """Appends trailing singleton dimensions so ``t`` broadcasts against a tensor with ``ndim`` dimensions."""
    if t.ndim > ndim:
        raise ValueError(f"tensor has {t.ndim} dims, more than the target {ndim}")
    return t[(...,) + (None,) * (ndim - t.ndim)]


def check_finite(x: Tensor, what: str) -> Tensor:
    """Raises a ValueError naming ``what`` if ``x`` holds NaN or inf; returns ``x``."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{what} contains {bad} non-finite value(s) (NaN or inf)")
    return x


def as_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Broadcasts a scalar or ``[B]`` sigma to shape ``[B]`` on x's device and dtype, validating it."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or of shape [{x.shape[0]}], got {tuple(sigma.shape)}")
    return sigma


class EDMPrecond(nn.Module):
    """Wraps a raw network ``F(x_in, c_noise, cond)`` into the EDM denoiser ``D = c_skip x + c_out F(c_in x, c_noise)``.

    Args:
        net: module called as ``net(x_in [B, ...], c_noise [B], cond)``, returning a tensor shaped like ``x_in``.
        sigma_data: standard deviation of the (normalised) data.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        sigma = as_sigma(sigma, x)
        s = append_dims(sigma, x.ndim)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / (s**2 + sd2).sqrt()
        c_in = 1 / (s**2 + sd2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise, cond)

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """EDM's λ(σ) = (σ² + σ_d²) / (σ σ_d)²: makes the effective training target unit-variance at every σ."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2


class SigmaHandoff(nn.Module):
    """``high`` for the rows with σ ≥ ``sigma``, ``low`` below it: each row still costs one network evaluation.

    A distilled student that learned the guided denoiser only where the guidance acts (``distil_sigma_min``) hands
    the small σ back to the base, whose likelihood it would otherwise pay for with its fitting error there.
    """

    def __init__(self, low: nn.Module, high: nn.Module, sigma: float):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"the hand-off σ must be positive, got {sigma}")
        self.low, self.high, self.sigma = low, high, float(sigma)

    def forward(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        sigma = as_sigma(sigma, x)
        high = sigma >= self.sigma
        if high.all():
            return self.high(x, sigma, cond)
        if not high.any():
            return self.low(x, sigma, cond)
        out = torch.empty_like(x)
        for rows, net in ((high.nonzero().squeeze(1), self.high), ((~high).nonzero().squeeze(1), self.low)):
            index = rows.cpu().numpy()
            out[rows] = net(x[rows], sigma[rows], take(cond, index))
        return out


@dataclass(frozen=True)
class LogNormalSigma:
    """ln σ ~ N(p_mean, p_std²): EDM's training distribution; with ``sigma_min`` > 0, conditioned on σ ≥ sigma_min
    (drawn by the inverse CDF)."""

    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.0

    def __post_init__(self):
        if not self.p_std > 0 or not self.sigma_min >= 0:
            raise ValueError(f"need p_std > 0 and sigma_min >= 0, got {self.p_std}, {self.sigma_min}")

    def __repr__(self) -> str:  # the untruncated form keeps its old name (it keys cached distillation pools)
        cut = f", sigma_min={self.sigma_min}" if self.sigma_min else ""
        return f"LogNormalSigma(p_mean={self.p_mean}, p_std={self.p_std}{cut})"

    def __call__(self, n: int, *, device=None, generator: torch.Generator | None = None) -> Tensor:
        if not self.sigma_min:
            z = rng.randn((n,), generator, device=device)
        else:
            lo = torch.special.ndtr(torch.tensor((math.log(self.sigma_min) - self.p_mean) / self.p_std,
                                                 dtype=torch.float64)).item()
            u = rng.rand((n,), generator, device=device, dtype=torch.float64)
            z = torch.special.ndtri(lo + (1 - lo) * u).clamp(max=40.0).float()
        return (self.p_mean + self.p_std * z).exp()


@dataclass(frozen=True)
class LogUniformSigma:
    """ln σ ~ U[ln sigma_min, ln sigma_max]: covers every σ a sampler visits (classifiers, the NLL bound)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def __call__(self, n: int, *, device=None, generator: torch.Generator | None = None) -> Tensor:
        u = rng.rand((n,), generator, device=device)
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return (lo + (hi - lo) * u).exp()


def edm_loss(
    denoiser: EDMPrecond,
    x0: Tensor,
    cond: Any = None,
    *,
    sigma_dist: Callable[..., Tensor] = LogNormalSigma(),
    target: Callable[[Tensor, Tensor, Any], Tensor] | None = None,
    extra: Callable[[Tensor, Tensor, Tensor, Any], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The weighted denoising loss λ(σ)‖D(x0 + σn; σ) − x0‖², per sample ``[B]`` (mean over feature dims).

    Args:
        target: if given, regress ``target(x, sigma, cond)`` instead of ``x0`` (distillation from a teacher).
        extra: a domain's term ``extra(denoised, x0, sigma, cond) -> [B]`` added per sample (e.g. the motion
            domain's forward-kinematics loss, ``denoised_loss``).
        cond: a dict may carry ``"defined"`` (bool ``[B, N]`` or ``[B, T]``) to ignore padded slots.
    """
    sigma = sigma_dist(x0.shape[0], device=x0.device, generator=generator).to(x0.dtype)
    noise = rng.randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    x = x0 + append_dims(sigma, x0.ndim) * noise
    goal = x0 if target is None else target(x, sigma, cond).detach()
    denoised = denoiser(x, sigma, cond)
    loss = weighted_error(denoiser, denoised, sigma, goal, cond)
    return loss if extra is None else loss + extra(denoised, x0, sigma, cond)


def denoising_loss(denoiser: EDMPrecond, x: Tensor, sigma: Tensor, goal: Tensor, cond: Any = None) -> Tensor:
    """λ(σ)‖D(x; σ) − goal‖² per sample ``[B]``, the mean over defined entries (``cond["defined"]``) of ``x``."""
    return weighted_error(denoiser, denoiser(x, sigma, cond), sigma, goal, cond)


def weighted_error(denoiser: EDMPrecond, denoised: Tensor, sigma: Tensor, goal: Tensor, cond: Any = None) -> Tensor:
    """λ(σ)‖denoised − goal‖² per sample ``[B]`` over the defined entries."""
    total, count = masked_sum((denoised - goal) ** 2, cond)
    return denoiser.loss_weight(sigma) * total / count


def defined_mask(cond: Any, like: Tensor) -> Tensor | None:
    """The mask of defined (non-padded) entries, broadcast to ``like``, or None when every entry is defined.

    Domains with a variable number of slots (vehicles, frames) put ``"defined"`` (bool ``[B, N]``) in ``cond``.
    """
    defined = cond.get("defined") if isinstance(cond, dict) else None
    if defined is None:
        return None
    if tuple(defined.shape) != tuple(like.shape[: defined.ndim]):
        raise ValueError(f"cond['defined'] of shape {tuple(defined.shape)} does not match x of shape "
                         f"{tuple(like.shape)}")
    return append_dims(defined.to(like.dtype), like.ndim).expand_as(like)


def masked_sum(err: Tensor, cond: Any) -> tuple[Tensor, Tensor]:
    """Per-sample sum of ``err [B, ...]`` over defined entries, and the number of those entries (``[B]`` each)."""
    m = defined_mask(cond, err)
    if m is None:
        return err.flatten(1).sum(1), err.new_full((err.shape[0],), err[0].numel())
    return (err * m).flatten(1).sum(1), m.flatten(1).sum(1).clamp_min(1)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device=None) -> Tensor:
    """The Karras et al. 2022 schedule (eq. 5): ``n`` sigmas from sigma_max down to sigma_min, then a final 0.

    Returns:
        ``[n + 1]`` tensor, strictly decreasing, ending in 0.
    """
    if n < 1:
        raise ValueError(f"need at least one sampling step, got n={n}")
    if not 0 < sigma_min < sigma_max < math.inf:
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    if not 0 < rho < math.inf:
        raise ValueError(f"rho must be positive and finite, got {rho}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(torch.float32).to(device)
