"""The 2-D toy domain: points on a checkerboard (or rings), an oracle that knows the valid cells.

Physical units are the board's coordinates; the model sees them divided by ``scale`` (the board's half-width), so
normalised data lie in [−1, 1]².
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from genneg.config import EvalConfig, GenNegConfig, RunConfig, SamplerConfig
from genneg.domain import validate_x0
from genneg.oracle import Oracle, all_of, get_oracle
from genneg.training import TrainConfig
from genneg.oracles.toy import Checkerboard, Rings

from .net import ToyNet
from .plot import plot_points

__all__ = ["ToyDomain", "make_domain", "SHAPES"]

SHAPES = ("checkerboard", "rings")
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def make_domain(**kwargs) -> "ToyDomain":
    return ToyDomain(**kwargs)


class ToyDomain:
    """2-D points uniform on the valid region of a shape.

    Args:
        shape: "checkerboard" or "rings".
        k, extent: checkerboard size (k×k cells on [−extent, extent]²).
        n_train, n_eval: points in the train split and in each of val / test.
        seed: offsets the data seeds (each split has its own fixed seed).
    """

    name = "toy"

    def __init__(self, shape: str = "checkerboard", k: int = 4, extent: float = 2.0, n_train: int = 100_000,
                 n_eval: int = 20_000, seed: int = 0):
        if shape not in SHAPES:
            raise ValueError(f"unknown toy shape {shape!r}; choose one of {SHAPES}")
        if n_train < 1 or n_eval < 1:
            raise ValueError("n_train and n_eval must be >= 1")
        self.shape_name, self.n_train, self.n_eval, self.seed = shape, n_train, n_eval, seed
        self.shape = Checkerboard(k=k, extent=extent) if shape == "checkerboard" else Rings()
        self.scale = extent if shape == "checkerboard" else self.shape.radii[-1][1]

    # ---------------------------------------------------------------------------------------------- data
    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if isinstance(self.shape, Checkerboard):
            cells = self.shape.black_cells()
            c = cells[rng.integers(0, len(cells), n)]
            return c[:, :2] + rng.random((n, 2)) * (c[:, 2:] - c[:, :2])
        radii = np.asarray(self.shape.radii)
        areas = radii[:, 1] ** 2 - radii[:, 0] ** 2
        ring = radii[rng.choice(len(radii), n, p=areas / areas.sum())]
        r = np.sqrt(ring[:, 0] ** 2 + rng.random(n) * (ring[:, 1] ** 2 - ring[:, 0] ** 2))
        phi = rng.random(n) * 2 * np.pi
        return np.stack([r * np.cos(phi), r * np.sin(phi)], 1)

    def points(self, split: str) -> np.ndarray:
        """Data in physical units, ``[N, 2]`` (float64), deterministic per split and seed."""
        if split not in SPLIT_SEEDS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_SEEDS)}")
        rng = np.random.default_rng([self.seed, SPLIT_SEEDS[split]])
        return self._draw(self.n_train if split == "train" else self.n_eval, rng)

    def dataset(self, split: str) -> tuple[Tensor, None]:
        return self.encode(self.points(split)), None

    @cached_property
    def sigma_data(self) -> float:
        return round(self.encode(self._draw(50_000, np.random.default_rng(123))).std().item(), 3)

    def conditions(self, n: int, split: str = "test", seed: int = 0):
        if split not in SPLIT_SEEDS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_SEEDS)}")
        return None

    def sample_shape(self, cond, n: int) -> tuple[int, ...]:
        return (n, 2)

    def encode(self, points) -> Tensor:
        return torch.as_tensor(np.asarray(points) / self.scale, dtype=torch.float32)

    def decode(self, x0: Tensor, cond=None) -> np.ndarray:
        validate_x0(x0, (2,))
        return x0.detach().cpu().double().numpy() * self.scale

    # ---------------------------------------------------------------------------------------------- oracle
    def oracle(self, names: list[str] | None = None) -> Oracle:
        """The shape's oracle, optionally composed with registered oracles named in ``names``."""
        if not names or list(names) == [self.shape.name]:
            return self.shape
        members = [self.shape if n == self.shape.name else get_oracle(n, domain=self.name) for n in names]
        return all_of(*members)

    def penalty(self, x0: Tensor, cond=None) -> Tensor:
        """Differentiable distance ``[B]`` (physical units) from normalised points ``x0 [B, 2]`` to the valid set."""
        points = x0 * self.scale
        if isinstance(self.shape, Checkerboard):
            cells = torch.as_tensor(self.shape.black_cells(), dtype=points.dtype)
            lo, hi = cells[:, :2], cells[:, 2:]
            gap = torch.maximum(lo - points[:, None], points[:, None] - hi).clamp_min(0)  # [B, C, 2]
            return gap.norm(dim=-1).min(1).values
        r = points.norm(dim=-1, keepdim=True)
        radii = torch.as_tensor(self.shape.radii, dtype=points.dtype)
        return torch.maximum(radii[:, 0] - r, r - radii[:, 1]).clamp_min(0).min(1).values

    def data_denoiser(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        """The exact denoiser E[x0 | x0 + σ n = x] of the checkerboard's data (uniform on the black cells), in
        normalised units: ``x [B, 2]``, ``sigma [B]`` -> ``[B, 2]``.

        The posterior over cells weighs each by the Gaussian mass it holds around x; within a cell, each axis is a
        truncated normal. Computed in float64 with log-CDFs, so it is exact down to the sampler's smallest σ. A
        reference teacher: what a student distilled from a perfect teacher reaches (benchmarks/distil_floor.py).
        """
        if not isinstance(self.shape, Checkerboard):
            raise ValueError("data_denoiser is closed-form for the checkerboard only")
        cells = torch.as_tensor(self.shape.black_cells() / self.scale, dtype=torch.float64, device=x.device)
        xd, s = x.double()[:, None], sigma.double().reshape(-1, 1, 1)
        lo, hi = (cells[None, :, :2] - xd) / s, (cells[None, :, 2:] - xd) / s  # [B, C, 2] standardised bounds
        right = lo > 0  # both bounds right of x: use the mirrored tail, where the CDF difference does not cancel
        a, b = torch.where(right, -hi, lo), torch.where(right, -lo, hi)
        log_b = torch.special.log_ndtr(b)
        log_mass = log_b + torch.log1p(-torch.exp(torch.special.log_ndtr(a) - log_b).clamp(max=1 - 1e-16))
        log_pdf = lambda t: -0.5 * t**2 - 0.5 * math.log(2 * math.pi)
        means = xd + s * (torch.exp(log_pdf(lo) - log_mass) - torch.exp(log_pdf(hi) - log_mass))
        weights = torch.softmax(log_mass.sum(-1), 1)[..., None]  # P(cell | x)
        return (weights * means).sum(1).to(x.dtype)

    # ---------------------------------------------------------------------------------------------- nets, plots
    def make_denoiser_net(self, cfg: dict) -> ToyNet:
        return ToyNet(out_dim=2, **cfg)

    def make_classifier_net(self, cfg: dict) -> ToyNet:
        return ToyNet(out_dim=1, **cfg)

    def plot(self, samples, cond, result, ax, title: str = "") -> None:
        plot_points(samples, result, ax, self.shape, title)

    # ---------------------------------------------------------------------------------------------- presets
    def presets(self) -> dict[str, RunConfig]:
        default = RunConfig(
            domain="toy",
            preset="default",
            data={"shape": "checkerboard"},
            net={"width": 128, "depth": 3},
            classifier_net={"width": 128, "depth": 3},
            base=TrainConfig(steps=3000, batch_size=512, lr=2e-3, warmup=200, checkpoint_every=500),
            # measured on seed 0 (docs/experiments.md): longer classifier training on more samples per round sharpens
            # each classifier's boundary (fewer infractions and a better NLL bound per round), and the student needs
            # a long distillation over every σ the guidance acts at, affordable from a pool of teacher targets
            classifier=TrainConfig(steps=15000, batch_size=512, lr=2e-3, warmup=100, ema_decay=0.995),
            distil=TrainConfig(steps=27000, batch_size=512, lr=5e-4, warmup=100, checkpoint_every=1000),
            sampler=SamplerConfig(steps=18),
            genneg=GenNegConfig(rounds=3, samples_per_round=150_000, distil_samples=60_000, distil_sigma="loguniform",
                                distil_pool=2_000_000),
            eval=EvalConfig(num_samples=20_000, num_nll=4000, nll_sigmas=32),
        )
        demo = replace(  # what `make demo` runs: the same method, lighter (2 rounds, fewer samples and steps)
            default,
            preset="demo",
            classifier=replace(default.classifier, steps=1000),
            distil=replace(default.distil, steps=1000),
            genneg=replace(default.genneg, rounds=2, samples_per_round=20_000, distil_samples=20_000,
                           distil_sigma="lognormal", distil_pool=0),  # a short distillation: EDM's σ, fresh targets
            eval=EvalConfig(num_samples=10_000, num_nll=1000, nll_sigmas=32),
        )
        tiny = replace(
            default,
            preset="tiny",
            data={"shape": "checkerboard", "n_train": 4000, "n_eval": 1000},
            net={"width": 64, "depth": 2},
            classifier_net={"width": 64, "depth": 2},
            base=replace(default.base, steps=300, batch_size=256, checkpoint_every=100),
            classifier=replace(default.classifier, steps=200, batch_size=256),
            distil=replace(default.distil, steps=150, batch_size=256, checkpoint_every=50),
            sampler=SamplerConfig(steps=12),
            genneg=GenNegConfig(rounds=2, samples_per_round=1000, distil_samples=1000),
            eval=EvalConfig(num_samples=1000, num_nll=200, nll_sigmas=8),
        )
        rings = replace(default, preset="rings", data={"shape": "rings"})
        return {"default": default, "demo": demo, "tiny": tiny, "rings": rings}
