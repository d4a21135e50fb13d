"""Fitting a round's classifier: train it on the round's labelled samples, then calibrate it and measure its σ window
on held-out ones (docs/method.md); one classifier on the verdict, or one per reason of the oracle (``reasons.py``).

The held-out samples are a stratified tenth of the round's draw (``calibration_split = "train"``), or a separate
draw on the domain's ``val`` conditions (``"val"``: maps the classifier never trains on, as the evaluation's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from . import rng
from .batch import take
from .classifier import NoisyClassifier, calibrate, classifier_report, fit_classifier
from .config import RunConfig
from .context import RunContext
from .diffusion import Denoiser
from .domain import Domain
from .draws import draw_labelled
from .oracle import Oracle, OracleResult
from .reasons import ReasonClassifiers, member_file, reason_labels, skip_reason
from .rng import stream_seed
from .training import streamed

__all__ = ["Labelled", "split_held_out", "fit_judged", "fit_per_reason"]


@dataclass(frozen=True)
class Labelled:
    """Samples with their verdicts: ``x0 [B, ...]``, ``cond`` (or None) and the oracle's ``result`` (all defined)."""

    x0: Tensor
    cond: Any
    result: OracleResult

    def take(self, index: np.ndarray) -> "Labelled":
        return Labelled(self.x0[index], take(self.cond, index), self.result.take(index))

    @property
    def y(self) -> Tensor:
        return torch.as_tensor(self.result.valid)


def split_held_out(data: Labelled, teacher: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle, stream: str,
                   ctx: RunContext, resume: bool) -> tuple[Labelled, Labelled]:
    """``(train, held_out)``: a stratified tenth of ``data`` held out (stream ``(stream, "holdout")``), or with
    ``calibration_split = "val"`` all of ``data`` and a tenth as many samples drawn on ``val`` conditions (stream
    ``(stream, "val_samples")``, cached beside the round's draw), undefined verdicts dropped."""
    if cfg.genneg.calibration_split == "train":
        hold = _holdout_mask(data.y, stream_seed(cfg.seed, stream, "holdout"))
        return data.take(np.flatnonzero(~hold)), data.take(np.flatnonzero(hold))
    n = max(2, cfg.genneg.samples_per_round // 10)
    x0, cond, result = draw_labelled(teacher, domain, cfg, oracle, n, split="val",
                                     seed=stream_seed(cfg.seed, stream, "val_samples"), progress=ctx.progress,
                                     cache=ctx.file(f"labelled_{stream}_val.safetensors"), resume=resume)
    return data, Labelled(x0, cond, result).take(np.flatnonzero(result.defined))


def fit_judged(model: NoisyClassifier, train: Labelled, held: Labelled, cfg: RunConfig, ctx: RunContext, *,
               labels: tuple[Tensor, Tensor], elements=None, alpha: float, use_is: bool, weighted: bool,
               fixed_sigma: float | None, streams: tuple[str, str], stem: str) -> tuple[NoisyClassifier, dict]:
    """Trains ``model`` on ``train`` with ``labels = (train labels, held-out labels)``, restores the prior, calibrates
    it and sets its σ window on ``held``; returns the classifier and its report.

    ``streams``: (training stream: batches and noise; judging stream: calibration and report noise).
    """
    g = cfg.genneg
    sigma_range = (g.classifier_sigma_min, g.classifier_sigma_max)
    model = fit_classifier(model, train.x0, labels[0], streamed(cfg.classifier, cfg.seed, streams[0]),
                           cond=train.cond, alpha=alpha if weighted else None, sigma_range=sigma_range,
                           run_dir=ctx.run_dir, name=stem, resume=ctx.resume, callback=ctx.callback, elements=elements)
    if use_is and not weighted:  # same optimum as the weighted loss: P(valid | x_σ) under the model's prior
        model.logit_offset.fill_(math.log(alpha / (1 - alpha)))
    hx, hy, hc = held.x0, labels[1], held.cond
    # each classifier is judged (and calibrated) against the target it was trained for: the model's prior, or the
    # 50/50 problem of the ablation without importance weights
    target_w = None if use_is else _balancing_weights(hy)
    report = {"importance_weights": use_is, "prior_correction": g.prior_correction if use_is else "none",
              "fixed_sigma": fixed_sigma}
    if g.calibrate and fixed_sigma is None and (~hy).any() and hy.any():
        report["temperatures"] = calibrate(model, hx, hy, hc, seed=stream_seed(cfg.seed, streams[1], "calibrate"),
                                           device=cfg.device, weights=target_w).tolist()
    report.update(classifier_report(model, hx, hy, hc, sigma_range=sigma_range, weights=target_w,
                                    seed=stream_seed(cfg.seed, streams[1], "report"), device=cfg.device))
    if g.auto_window and fixed_sigma is None:
        model.sigma_max_guidance.fill_(report["informative_sigma_max"])
    return model, report


def fit_per_reason(build: Callable[[str, bool], NoisyClassifier], data: Labelled, train: Labelled, held: Labelled,
                   cfg: RunConfig, ctx: RunContext, *, stream: str, stem: str,
                   element_nets: bool) -> tuple[ReasonClassifiers | None, dict]:
    """One classifier per reason of the round's oracle (``GenNegConfig.classifier_per_reason``).

    Reason r's classifier learns "valid for r" with r's own α (from every sample of the round, ``data``) as
    importance weights; it is per-element (``build(r, True)``) where the oracle flags r per element and
    ``element_nets``. Per-element classifiers always use the weights: a logit offset has no per-element form. Each
    member trains on its own stream ``(stream/r)``; calibration and report noise are the round's, so members and a
    single classifier of the round are judged on the same noise. A reason committed by none (or by every) sample
    gets no member. Returns the members as one guide (None without any) and a report: the combined classifier judged
    on the verdict, each member's report under ``reasons``.
    """
    g = cfg.genneg
    members, reports = {}, {}
    for reason in train.result.reasons:
        elementwise = element_nets and reason in train.result.elements
        y, elements = reason_labels(train.result, reason, elementwise)
        why = skip_reason(y)
        if why:
            reports[reason] = {"skipped": why}
            continue
        alpha = float(np.mean(~data.result.reasons[reason]))
        hy, _ = reason_labels(held.result, reason, False)
        members[reason], reports[reason] = fit_judged(
            build(reason, elementwise), train, held, cfg, ctx, labels=(y, hy), elements=elements, alpha=alpha,
            use_is=g.importance_weights,
            weighted=g.importance_weights and (elementwise or g.prior_correction == "weights"),
            fixed_sigma=None, streams=(f"{stream}/{reason}", stream), stem=member_file(stem, reason))
        reports[reason].update(alpha=alpha, elementwise=elementwise)
    if not members:
        return None, {"per_reason": True, "reasons": reports}
    model = ReasonClassifiers(members)
    report = classifier_report(model, held.x0, held.y, held.cond, sigma_range=(g.classifier_sigma_min,
                               g.classifier_sigma_max), seed=stream_seed(cfg.seed, stream, "report"), device=cfg.device)
    return model, {"per_reason": True, "reasons": reports, **report}


def _balancing_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-example weights that give both classes equal total weight (the 50/50 problem)."""
    frac = labels.float().mean()
    return torch.where(labels.bool(), 0.5 / frac, 0.5 / (1 - frac))


def _holdout_mask(labels: torch.Tensor, seed: int, fraction: float = 0.1) -> torch.Tensor:
    """A stratified held-out mask: ``fraction`` of each class, always leaving at least one of each for training."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for cls in (True, False):
        idx = (labels == cls).nonzero().flatten()
        idx = idx[rng.randperm(len(idx), g)]
        mask[idx[: min(int(fraction * len(idx)), len(idx) - 1)]] = True
    return mask
