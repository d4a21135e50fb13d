"""Baselines and ablations every report carries (METHOD.md): each returns a denoiser to evaluate like any stage.

Rejection sampling is evaluated analytically from the base model instead (its samples are exactly the target).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from .batch import concat, take
from .classifier import NoisyClassifier, classifier_report, fit_classifier
from .config import RunConfig
from .diffusion import Denoiser
from .genneg import build_classifier, draw_cached, run_round, stack
from .guidance import GuidanceTerm, guided
from .oracle import Oracle

__all__ = ["ablation_round", "discriminator_guidance", "penalty_guidance"]


def ablation_round(base: Denoiser, domain, cfg: RunConfig, oracle: Oracle, kind: str, *, run_dir=None,
                   resume=False, progress=None, callback=None):
    """One Gen-neG round with a change: "no_is" (no importance weights) or "time_independent" (σ ≈ 0 only).

    Returns the guided denoiser and the round's summary; compare with the "round 1" row.
    """
    if kind not in ("no_is", "time_independent"):
        raise ValueError(f"unknown ablation {kind!r}")
    kwargs = {"importance": False} if kind == "no_is" else {"fixed_sigma": cfg.genneg.classifier_sigma_min}
    r = run_round(base, domain, cfg, oracle, 1, run_dir=run_dir, name=kind, resume=resume, progress=progress,
                  callback=callback, **kwargs)
    return (stack(base, [r.classifier], cfg) if r.classifier is not None else base), r


def discriminator_guidance(base: Denoiser, domain, cfg: RunConfig, *, run_dir=None, resume=False,
                           progress: Callable[[int], None] | None = None, callback=None):
    """Kim et al. 2023: a time-conditioned discriminator d between data (1) and model samples (0); the score gets
    ∇ log(d / (1 − d)) = ∇ logit d, within the σ range where d is informative on held-out pairs.
    Returns the guided denoiser and the discriminator's held-out report."""
    m = cfg.genneg.samples_per_round
    data_x0, data_cond = domain.dataset("train")
    idx = torch.randperm(data_x0.shape[0], generator=torch.Generator().manual_seed(cfg.seed + 5))[:m]
    seed = cfg.seed * 1000 + 555
    gen_cond = domain.conditions(len(idx), "train", seed)
    cache = Path(run_dir) / "drawn_discriminator.safetensors" if run_dir is not None else None
    # model samples are cached as soon as drawn: a resumed baseline does not redraw them
    fake = draw_cached(base, domain, cfg, gen_cond, len(idx), seed, {"n": len(idx), "split": "train", "seed": seed},
                       cache=cache, resume=resume, progress=progress)[0]["x0"]
    x0 = torch.cat([data_x0[idx], fake])
    cond = None if data_cond is None else concat([take(data_cond, idx.numpy()), gen_cond])
    y = torch.cat([torch.ones(len(idx), dtype=torch.bool), torch.zeros(len(idx), dtype=torch.bool)])
    hold = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed + 6)) < len(y) // 10
    g = cfg.genneg
    sigma_range = (g.classifier_sigma_min, g.classifier_sigma_max)
    disc: NoisyClassifier = build_classifier(domain, cfg)
    disc = fit_classifier(disc, x0[~hold], y[~hold], cfg.classifier, cond=take(cond, (~hold).numpy()), alpha=None,
                          sigma_range=sigma_range, run_dir=run_dir, name="discriminator", resume=resume,
                          callback=callback)
    report = classifier_report(disc, x0[hold], y[hold], take(cond, hold.numpy()), sigma_range=sigma_range,
                               seed=cfg.seed, device=cfg.device)
    hi = min(g.guidance_sigma_max, report["informative_sigma_max"] if g.auto_window else math.inf)
    terms = [GuidanceTerm(disc.logit, weight=g.guidance_weight, sigma_range=(g.guidance_sigma_min, hi),
                          name="discriminator")] if hi >= g.guidance_sigma_min else []
    return guided(base, terms), report


def penalty_guidance(base: Denoiser, domain, cfg: RunConfig) -> Denoiser:
    """CTG-style guidance by a domain's differentiable penalty on the denoised estimate: log C = −λ·pen(D(x; σ))."""
    if not hasattr(domain, "penalty"):
        raise ValueError(f"domain {domain.name!r} has no differentiable penalty")
    lam = cfg.genneg.penalty_weight

    def log_prob(x, sigma, cond):
        return -lam * domain.penalty(base(x, sigma, cond), cond)

    # the penalty's gradient is not a score: keep each step within the noise level (‖step‖ ≤ σ√d) and act only at
    # σ ≤ penalty_sigma_max, where D(x; σ) is a sample-like estimate the penalty can judge
    g = cfg.genneg
    return guided(base, [GuidanceTerm(log_prob, max_ratio=1.0, sigma_range=(0.0, g.penalty_sigma_max), name="penalty")])
