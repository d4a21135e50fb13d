"""Analytic references for testing samplers, likelihoods, guidance and distillation without training anything.

A Gaussian mixture with diagonal covariances has a closed-form noisy density p_σ, score and exact denoiser
E[x0 | x0 + σn = x] (EDM2's ``toy_example.py`` uses the same idea), and a half-plane oracle has a closed-form
noisy Bayes classifier P(valid | x_σ) under the mixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

import torch
from torch import Tensor

from . import rng

__all__ = ["GaussianMixture", "HalfPlane", "GaussianMixtureDomain"]


@dataclass
class GaussianMixture:
    """Mixture of diagonal Gaussians. ``weights [K]``, ``means [K, D]``, ``stds [K, D]``."""

    weights: Tensor
    means: Tensor
    stds: Tensor

    def __post_init__(self):
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64)
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        self.stds = torch.as_tensor(self.stds, dtype=torch.float64).expand_as(self.means).clone()
        if self.means.ndim != 2 or self.weights.shape != self.means.shape[:1]:
            raise ValueError("need weights [K] and means [K, D]")
        if (self.stds <= 0).any() or (self.weights < 0).any():
            raise ValueError("stds must be positive and weights non-negative")
        self.weights = self.weights / self.weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _log_components(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """log π_k N(x; μ_k, s_k² + σ²) per component ``[B, K]`` and the variances ``[B, K, D]``."""
        var = self.stds**2 + sigma.double()[:, None, None] ** 2  # [B, K, D]
        diff = x.double()[:, None, :] - self.means  # [B, K, D]
        logn = -0.5 * ((diff**2 / var) + var.log() + math.log(2 * math.pi)).sum(-1)
        return self.weights.log() + logn, var

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log p_σ(x), ``[B]`` (float64)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        lc, _ = self._log_components(x, sigma)
        return lc.logsumexp(-1)

    def denoiser(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        """The exact E[x0 | x], ``[B, D]``, in x's dtype: a denoiser in the engine's currency."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        lc, var = self._log_components(x, sigma)
        r = lc.softmax(-1)[..., None]  # [B, K, 1]
        s2 = self.stds**2
        post = self.means + s2 / var * (x.double()[:, None, :] - self.means)
        return (r * post).sum(1).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = rng.multinomial(self.weights, n, generator)
        z = rng.randn((n, self.dim), generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k] * z).float()

    def moments(self) -> tuple[Tensor, Tensor]:
        """Exact mean ``[D]`` and covariance ``[D, D]``."""
        w = self.weights[:, None]
        mean = (w * self.means).sum(0)
        second = sum(
            self.weights[k] * (torch.diag(self.stds[k] ** 2) + torch.outer(self.means[k], self.means[k]))
            for k in range(len(self.weights))
        )
        return mean, second - torch.outer(mean, mean)


@dataclass
class HalfPlane:
    """Oracle "valid iff a·x0 ≥ b" with its exact noisy Bayes classifier under a GaussianMixture prior."""

    normal: Tensor
    offset: float

    def __post_init__(self):
        self.normal = torch.as_tensor(self.normal, dtype=torch.float64)

    def valid(self, x0) -> Tensor:
        return (torch.as_tensor(x0).double() @ self.normal) >= self.offset

    def log_prob_valid(self, gmm: GaussianMixture, x: Tensor, sigma: Tensor) -> Tensor:
        """log P(a·x0 ≥ b | x_σ = x) under the mixture: a responsibility-weighted sum of Gaussian tails. ``[B]``."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        lc, var = gmm._log_components(x, sigma)
        logr = lc.log_softmax(-1)  # [B, K]
        s2 = gmm.stds**2
        post_mean = gmm.means + s2 / var * (x.double()[:, None, :] - gmm.means)  # [B, K, D]
        post_var = s2 * (sigma.double()[:, None, None] ** 2) / var
        m = post_mean @ self.normal  # [B, K]
        sd = (post_var * self.normal**2).sum(-1).sqrt()
        z = (m - self.offset) / sd
        log_tail = torch.special.log_ndtr(z)
        return (logr + log_tail).logsumexp(-1).to(x.dtype)

    def acceptance(self, gmm: GaussianMixture) -> float:
        """α = P(a·x0 ≥ b) under the mixture."""
        m = gmm.means @ self.normal
        sd = ((gmm.stds**2) * self.normal**2).sum(-1).sqrt()
        return float((gmm.weights * torch.special.ndtr((m - self.offset) / sd)).sum())


class GaussianMixtureDomain:
    """A complete 2-D Domain whose base model needs no training: a mixture, its exact denoiser, a half-plane oracle.

    Use it to test a pipeline end to end in seconds: ``gmm.denoiser`` is the exact base model, and
    ``plane.log_prob_valid`` the exact noisy Bayes classifier a round should learn.

    Args:
        oracle_fn: replaces the half-plane verdict, ``fn(points [B, 2], cond) -> bool [B]`` (to inject failures).
    """

    name = "gmm"
    sigma_data = 0.8

    def __init__(self, oracle_fn: Callable | None = None, n_data: int = 4000):
        self.gmm = GaussianMixture(weights=[0.6, 0.4], means=[[-0.8, 0.0], [0.8, 0.3]], stds=[[0.4, 0.3], [0.3, 0.4]])
        self.plane = HalfPlane(normal=[1.0, 0.5], offset=-0.6)
        self.oracle_fn = oracle_fn or self._halfplane_valid
        self.n_data = n_data

    def presets(self):
        from .config import EvalConfig, GenNegConfig, RunConfig, SamplerConfig
        from .training import TrainConfig

        quick = TrainConfig(steps=400, batch_size=256, lr=3e-3, warmup=20, ema_decay=0.99, checkpoint_every=0)
        return {"default": RunConfig(
            domain="gmm", net={"width": 64, "depth": 2}, classifier_net={"width": 64, "depth": 2},
            base=quick, classifier=quick, distil=replace(quick, steps=1500, warmup=50),
            sampler=SamplerConfig(steps=24),
            genneg=GenNegConfig(rounds=1, samples_per_round=4000, distil_samples=4000),
            eval=EvalConfig(num_samples=2000, num_nll=300, nll_sigmas=16),
        )}

    def dataset(self, split: str):
        seeds = {"train": 0, "val": 1, "test": 2}
        x = self.gmm.sample(self.n_data, generator=torch.Generator().manual_seed(seeds[split]))
        return x[self.plane.valid(x)], None

    def conditions(self, n, split="test", seed=0):
        return None

    def sample_shape(self, cond, n):
        return (n, 2)

    def make_denoiser_net(self, cfg):
        from .nn import PointMLP

        return PointMLP(2, 2, **cfg)

    def make_classifier_net(self, cfg):
        from .nn import PointMLP

        return PointMLP(2, 1, **cfg)

    def _halfplane_valid(self, points, cond=None) -> np.ndarray:
        """The default verdict on decoded ``points [B, 2]``; rejects empty, malformed or non-finite batches."""
        p = np.asarray(points)
        if p.ndim != 2 or p.shape[1:] != (2,) or p.shape[0] == 0 or not np.isfinite(p).all():
            raise ValueError(f"halfplane oracle needs a non-empty, finite batch of points [B, 2], got {p.shape}")
        return self.plane.valid(p).numpy()

    def decode(self, x0, cond=None):
        from .domain import validate_x0

        return validate_x0(x0, (2,)).detach().cpu().numpy()

    def oracle(self, names=None):
        from .oracle import FunctionOracle

        return FunctionOracle("halfplane", self.oracle_fn)

    def plot(self, samples, cond, result, ax, title=""):
        colours = np.where(result.valid, "tab:blue", "tab:red") if result is not None else "tab:blue"
        ax.scatter(samples[:, 0], samples[:, 1], s=1, c=colours)
        ax.set_title(title)
