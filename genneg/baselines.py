"""Baselines and ablations every report carries (docs/method.md): each returns a denoiser to evaluate like any stage.

Every guide enters through ``genneg.guidance_term`` (the run's weight, σ window rule and clipping), and every
ablation of round 1 draws from round 1's streams, so a row differs from the one it is compared with only in what it
ablates. Rejection sampling is evaluated analytically from the base model instead (its samples are exactly the
target).
"""

from __future__ import annotations

import math

import torch

from . import rng
from .batch import concat, take
from .classifier import NoisyClassifier, classifier_report, fit_classifier
from .config import GenNegConfig, RunConfig
from .diffusion import Denoiser
from .context import RunContext
from .domain import Domain
from .draws import draw_cached
from .fitting import fit_judged
from .genneg import (RoundResult, build_classifier, finished_round, guidance_term, labelled_round, save_round,
                     stack)
from .guidance import GuidanceTerm, guided
from .oracle import Oracle
from .rng import stream_seed
from .training import streamed

__all__ = ["no_importance_weights", "time_independent_guidance", "on_denoised", "discriminator_guidance",
           "penalty_guidance"]


def no_importance_weights(base: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle,
                          ctx: RunContext = RunContext()):
    """Round 1 without importance weights: the same samples, split, initial weights, batches and noise as round 1,
    calibrated and windowed the same way, but trained (and judged) on the 50/50 problem, so its classifier models a
    balanced prior instead of the model's. Returns the guided denoiser and the round's summary."""
    r = _round1_variant(base, domain, cfg, oracle, ctx, "no_is", use_is=False)
    return (stack(base, [r.classifier], cfg.genneg) if r.classifier is not None else base), r


def time_independent_guidance(base: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle,
                              round1: NoisyClassifier | None = None, ctx: RunContext = RunContext()):
    """A classifier of clean samples (trained at σ = classifier_sigma_min on round 1's samples and streams) applied
    to the denoised estimate: log C(D(x; σ)), its gradient taken through D, with round 1's σ window (``round1``'s
    ``sigma_max_guidance``; the run's window when round 1 has none) and the run's clipping.
    Returns the guided denoiser and the round's summary."""
    r = _round1_variant(base, domain, cfg, oracle, ctx, "time_independent", fixed_sigma=cfg.genneg.classifier_sigma_min)
    return (base if r.classifier is None else on_denoised(base, r.classifier, round1, cfg.genneg)), r


def _round1_variant(base: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle, ctx: RunContext, stem: str, *,
                    use_is: bool = True, fixed_sigma: float | None = None) -> RoundResult:
    """Round 1's classifier with one thing changed (importance weights off, or trained at one fixed σ): round 1's
    cached draw, split and streams (``genneg.labelled_round``), one classifier whatever ``classifier_per_reason``
    says, saved as ``<stem>.safetensors``."""
    finished = finished_round(domain, cfg, ctx.file(f"{stem}.safetensors"), base) if ctx.resume else None
    if finished is not None:
        return finished
    drawn = labelled_round(base, domain, cfg, oracle, 1, ctx, resume=True)  # round 1's draw when it is cached
    out, train_set, held = drawn.summary, drawn.train, drawn.held
    if out.skipped:
        return out
    clf = build_classifier(domain, cfg, fixed_sigma=fixed_sigma, stream="round1", base=base)
    model, report = fit_judged(clf, train_set, held, cfg, ctx, labels=(train_set.y, held.y), alpha=out.alpha,
                               use_is=use_is, weighted=use_is and cfg.genneg.prior_correction == "weights",
                               fixed_sigma=fixed_sigma, streams=("round1", "round1"), stem=stem)
    return save_round(out, model, report, {"fixed_sigma": fixed_sigma, "alpha": out.alpha}, ctx, stem)


def on_denoised(base: Denoiser, clean: NoisyClassifier, round1: NoisyClassifier | None, g: GenNegConfig) -> Denoiser:
    """``base`` guided by a clean-sample classifier applied to its denoised estimate, ∇ₓ log C(D(x; σ)), within
    ``round1``'s σ window (the run's window when there is no round-1 classifier)."""

    def log_prob(x, sigma, cond):
        return clean.log_prob(base(x, sigma, cond), sigma, cond)  # ``clean`` evaluates at its fixed σ

    hi = float(round1.sigma_max_guidance) if round1 is not None else math.inf
    term = guidance_term(log_prob, hi, g, "time_independent")
    return guided(base, [term] if term is not None else [])


def discriminator_guidance(base: Denoiser, domain: Domain, cfg: RunConfig, ctx: RunContext = RunContext()):
    """Kim et al. 2023: a time-conditioned discriminator d between data (1) and model samples (0); the score gets
    ∇ log(d / (1 − d)) = ∇ logit d, within the σ range where d is measured informative on held-out pairs (the same
    rule and clipping as Gen-neG's classifiers). Returns the guided denoiser and the discriminator's held-out report."""
    m, g, stream = cfg.genneg.samples_per_round, cfg.genneg, "discriminator"
    data_x0, data_cond = domain.dataset("train")
    idx = rng.randperm(data_x0.shape[0], rng.generator(cfg.seed, stream, "data"))[:m]
    seed = stream_seed(cfg.seed, stream, "samples")
    gen_cond = domain.conditions(len(idx), "train", stream_seed(seed, "conditions"))
    # model samples are cached as soon as drawn: a resumed baseline does not redraw them
    fake = draw_cached(base, domain, cfg, gen_cond, len(idx), seed, {"n": len(idx), "split": "train", "seed": seed},
                       cache=ctx.file("drawn_discriminator.safetensors"), resume=ctx.resume,
                       progress=ctx.progress)[0]["x0"]
    x0 = torch.cat([data_x0[idx], fake])
    cond = None if data_cond is None else concat([take(data_cond, idx.numpy()), gen_cond])
    y = torch.cat([torch.ones(len(idx), dtype=torch.bool), torch.zeros(len(idx), dtype=torch.bool)])
    hold = rng.randperm(len(y), rng.generator(cfg.seed, stream, "holdout")) < len(y) // 10
    sigma_range = (g.classifier_sigma_min, g.classifier_sigma_max)
    disc: NoisyClassifier = build_classifier(domain, cfg, stream=stream, base=base)
    disc = fit_classifier(disc, x0[~hold], y[~hold], streamed(cfg.classifier, cfg.seed, stream),
                          cond=take(cond, (~hold).numpy()), alpha=None, sigma_range=sigma_range, run_dir=ctx.run_dir,
                          name="discriminator", resume=ctx.resume, callback=ctx.callback)
    report = classifier_report(disc, x0[hold], y[hold], take(cond, hold.numpy()), sigma_range=sigma_range,
                               seed=stream_seed(cfg.seed, stream, "report"), device=cfg.device)
    term = guidance_term(disc.logit, report["informative_sigma_max"] if g.auto_window else math.inf, g, stream)
    return guided(base, [term] if term is not None else []), report


def penalty_guidance(base: Denoiser, domain: Domain, cfg: RunConfig) -> Denoiser:
    """CTG-style guidance by a domain's differentiable penalty on the denoised estimate: log C = −λ·pen(D(x; σ)).

    The penalty's gradient is not a score, so unlike the classifiers it is always clipped to the noise level
    (‖step‖ ≤ σ√d, or the run's tighter ``guidance_max_ratio``) and acts only at σ ≤ ``penalty_sigma_max``, where
    D(x; σ) is a sample-like estimate the penalty can judge.
    """
    if not hasattr(domain, "penalty"):
        raise ValueError(f"domain {domain.name!r} has no differentiable penalty")
    g = cfg.genneg
    lam = g.penalty_weight

    def log_prob(x, sigma, cond):
        return -lam * domain.penalty(base(x, sigma, cond), cond)

    ratio = min(1.0, g.guidance_max_ratio or 1.0)
    return guided(base, [GuidanceTerm(log_prob, max_ratio=ratio, sigma_range=(0.0, g.penalty_sigma_max),
                                      name="penalty")])
