"""Guidance: a function from a denoiser to a denoiser (k-diffusion's ``make_cond_model_fn`` idea).

    D_g(x; σ) = D(x; σ) + σ² Σ_k w_k 1[σ ∈ window_k] ∇ₓ log C_k(x, σ)

which adds w_k ∇ log C_k to the score (score = (D − x)/σ²). Gradients are taken with autograd inside the wrapper,
so guided denoisers work under an outer ``torch.no_grad`` (as samplers run) and stack any number of terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .diffusion import Denoiser, append_dims, as_sigma

__all__ = ["GuidanceTerm", "guided", "GuidedDenoiser"]


@dataclass(frozen=True)
class GuidanceTerm:
    """One additive term of the guided score.

    Attributes:
        log_prob: ``log_prob(x, sigma, cond) -> [B]``, differentiable in x (e.g. ``NoisyClassifier.log_prob``).
        weight: w; 0 disables the term.
        sigma_range: (lo, hi): the term acts only where lo <= σ <= hi.
        max_ratio: optional clip of the guidance step's norm to ``max_ratio · σ · √d`` per sample (keeps it
            finite at the smallest σ when a classifier is over-sharp); None leaves it unclipped.
        name: for reports.
    """

    log_prob: Callable[[Tensor, Tensor, Any], Tensor]
    weight: float = 1.0
    sigma_range: tuple[float, float] = (0.0, math.inf)
    max_ratio: float | None = None
    name: str = "term"

    def __post_init__(self):
        lo, hi = self.sigma_range
        if not 0 <= lo <= hi:
            raise ValueError(f"GuidanceTerm.sigma_range must satisfy 0 <= lo <= hi, got {self.sigma_range}")
        if not math.isfinite(self.weight):
            raise ValueError(f"GuidanceTerm.weight must be finite, got {self.weight}")
        if self.max_ratio is not None and not 0 < self.max_ratio < math.inf:
            raise ValueError(f"GuidanceTerm.max_ratio must be None or positive and finite, got {self.max_ratio}")

    def active(self, sigma: Tensor) -> Tensor:
        lo, hi = self.sigma_range
        return (sigma >= lo) & (sigma <= hi) & (self.weight != 0)


class GuidedDenoiser:
    """``denoiser`` plus σ²·Σ w ∇ log C. Callable like any denoiser; ``terms`` can be extended (stacking)."""

    def __init__(self, denoiser: Denoiser, terms: Sequence[GuidanceTerm]):
        self.denoiser = denoiser
        self.terms = list(terms)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        sigma = as_sigma(sigma, x)
        with torch.no_grad():
            denoised = self.denoiser(x, sigma, cond)
        masks, live = self._masks(sigma)
        if not any(live):
            return denoised  # identity when no term is active
        return denoised + append_dims(sigma**2, x.ndim) * self.score_correction(x, sigma, cond, (masks, live))

    def _masks(self, sigma: Tensor) -> tuple[list[Tensor], list[bool]]:
        """Each term's mask ``[B]`` and whether it is active anywhere in the batch. The flags are the one
        device-to-host read of a guided call (all terms in one transfer): it lets inactive classifiers cost nothing."""
        masks = [t.active(sigma) for t in self.terms]
        live = torch.stack([m.any() for m in masks]).tolist() if masks else []
        return masks, live

    def score_correction(self, x: Tensor, sigma: Tensor, cond: Any, masks=None) -> Tensor:
        """Σ_k w_k ∇ₓ log C_k(x, σ) (zero where a term is inactive), ``[B, ...]``."""
        masks, live = masks or self._masks(sigma)
        total = torch.zeros_like(x)
        with torch.enable_grad():
            for term, m, on in zip(self.terms, masks, live):
                if not on:
                    continue
                xg = x.detach().requires_grad_(True)
                lp = term.log_prob(xg, sigma, cond)
                if lp.shape != sigma.shape:
                    raise ValueError(f"guidance term {term.name!r} returned shape {tuple(lp.shape)}, expected [B]")
                (grad,) = torch.autograd.grad((lp * m).sum(), xg)
                step = term.weight * grad
                if term.max_ratio is not None:
                    step = _clip(step, sigma, term.max_ratio)
                total = total + step.detach()
        return total


def _clip(step: Tensor, sigma: Tensor, max_ratio: float) -> Tensor:
    """Limits ‖σ² · step‖ to max_ratio · σ · √d per sample, i.e. ‖step‖ to max_ratio · √d / σ.

    A step with infinite entries, or whose norm overflows, keeps its direction (infinite entries dominate) and gets
    the limit's length, so clipping keeps guidance finite however sharp the classifier. NaN stays NaN (the sampler
    and the NLL bound report it). Branch-free: no device-to-host read.
    """
    d = step[0].numel()
    limit = max_ratio * math.sqrt(d) / sigma  # [B]
    flat = step.flatten(1)
    norm = flat.norm(dim=1)
    clipped = step * append_dims((limit / norm.clamp_min(1e-30)).clamp(max=1.0), step.ndim)
    scale = flat.abs().amax(1, keepdim=True)
    unit = torch.where(flat.isinf(), flat.sign(), torch.where(scale.isinf(), 0.0, flat / scale.clamp_min(1e-30)))
    capped = (unit / unit.norm(dim=1, keepdim=True).clamp_min(1e-30) * limit[:, None]).view_as(step)
    return torch.where(append_dims(norm.isfinite(), step.ndim), clipped, capped)


def guided(denoiser: Denoiser, terms: Sequence[GuidanceTerm]) -> GuidedDenoiser:
    """Wraps ``denoiser`` with guidance terms; an empty list (or all-zero weights) gives back the same outputs."""
    return GuidedDenoiser(denoiser, terms)
