"""Time-conditioned (noisy) classifiers P(valid | x_σ) trained on oracle-labelled model samples.

Training pairs are samples x0 of the *current* model with oracle labels y, re-noised with a fresh σ (log-uniform
over the sampler's range) at every step. Batches are balanced (invalid samples are oversampled to the number of
valid ones) and carry importance weights α (valid) and 1 − α (invalid), α the model's valid fraction, so the
optimum is P(y = 1 | x_σ) under the model's own prior (docs/method.md). The same machinery trains the time-independent
ablation (σ fixed near 0) and discriminator guidance (data vs model samples).

A *per-element* classifier (``elementwise=True``) has a logit ℓ_e per element of a sample (the vehicles of a scene),
is trained on the oracle's per-element labels (``element_bce``) and guides with log C = Σ_e log σ(ℓ_e): the sample is
valid when every element is, the elements' validity taken as independent given x_σ (an approximation,
docs/method.md, "One classifier per reason").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batch import batch_size_of, concat, take, to_device
from . import rng
from .diffusion import LogUniformSigma, append_dims, as_sigma
from .training import TrainConfig, train

__all__ = ["NoisyClassifier", "importance_weights", "balanced_set", "balanced_index", "fit_classifier",
           "classifier_report", "calibrate", "informative_sigma_max", "auc", "element_bce", "logit_of_log_prob"]


class NoisyClassifier(nn.Module):
    """Logit ``f(x, σ, cond)`` with EDM input scaling and an optional temperature per ln σ bin.

    Args:
        net: raw network ``net(x_in, c_noise, cond) -> [B]`` (``[B, E]`` per-element logits when ``elementwise``,
            +inf on elements that do not exist: an absent vehicle is always valid).
        sigma_data: data scale for the input scaling c_in = 1/√(σ² + σ_d²).
        fixed_sigma: if set, the classifier ignores σ and always evaluates as if σ = fixed_sigma (the
            "time-independent classifier" ablation: trained at σ ≈ 0, applied at every σ).
        elementwise: a per-element classifier; ``logit`` is then the logit of C = Π_e σ(ℓ_e / T), so reports,
            calibration and the σ window judge it on the sample's label like any classifier.
        denoiser: read the denoised estimate D(x, σ, cond) in x's place (``GenNegConfig.classifier_input =
            "denoised"``), with the same input scaling and σ. Not part of the classifier's weights: a loaded
            classifier gets it again (``genneg.genneg.load_classifier``). Gradients flow through D, so guidance
            differentiates the composition; D's own weights are not trained.
    """

    def __init__(self, net: nn.Module, sigma_data: float, fixed_sigma: float | None = None, num_bins: int = 8,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, elementwise: bool = False,
                 denoiser: Callable | None = None):
        super().__init__()
        if denoiser is not None and fixed_sigma is not None:
            raise ValueError("a classifier reads either the denoised estimate or x at a fixed σ, not both")
        self.net, self.sigma_data, self.fixed_sigma = net, float(sigma_data), fixed_sigma
        self._denoiser = _Shared(denoiser) if denoiser is not None else None  # not a submodule, not in state_dict
        self.elementwise = bool(elementwise)
        self.register_buffer("bin_centres", torch.linspace(math.log(sigma_min), math.log(sigma_max), num_bins))
        self.register_buffer("log_temperature", torch.zeros(num_bins))
        # guidance is applied only up to this σ: above it the classifier was measured to carry no information
        self.register_buffer("sigma_max_guidance", torch.tensor(math.inf))
        # prior correction added to the logit: log(α / (1 − α)) when trained balanced without weights ("offset")
        self.register_buffer("logit_offset", torch.tensor(0.0))

    def _sigma(self, x: Tensor, sigma: Tensor) -> Tensor:
        sigma = as_sigma(sigma, x)
        return sigma if self.fixed_sigma is None else torch.full_like(sigma, self.fixed_sigma)

    @property
    def denoiser(self) -> Callable | None:
        """The denoiser whose estimate the classifier reads, or None (it reads x_σ)."""
        return self._denoiser.value if self._denoiser is not None else None

    def read(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        """What the network reads at (x, σ): x itself, or the denoiser's estimate D(x; σ)."""
        if self._denoiser is None:
            return x
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):  # no graph while training
            return self._denoiser.value(x, self._sigma(x, sigma), cond)

    def raw_logit(self, x: Tensor, sigma: Tensor, cond: Any = None, *, read: Tensor | None = None) -> Tensor:
        """The network's logit before temperature and prior offset: ``[B]``, or ``[B, E]`` when ``elementwise``.
        ``read``: ``self.read(x, sigma, cond)`` when the caller has it already (classifiers sharing one base)."""
        sigma = self._sigma(x, sigma)
        x = self.read(x, sigma, cond) if read is None else read
        c_in = 1 / (append_dims(sigma, x.ndim) ** 2 + self.sigma_data**2).sqrt()
        raw = self.net(c_in * x, sigma.log() / 4, cond)
        if self.elementwise and (raw.ndim != 2 or raw.shape[0] != sigma.shape[0]):
            raise ValueError(f"per-element classifier net returned shape {tuple(raw.shape)}, "
                             f"expected [{sigma.shape[0]}, E]")
        if not self.elementwise and raw.shape != sigma.shape:
            raise ValueError(f"classifier net returned shape {tuple(raw.shape)}, expected [{sigma.shape[0]}]")
        return raw

    def tempered(self, raw: Tensor, temperature: Tensor) -> Tensor:
        """The sample's logit ``[B]`` from ``raw_logit`` at a temperature (a scalar or one per sample)."""
        t = temperature if temperature.ndim == 0 else append_dims(temperature, raw.ndim)
        return logit_of_log_prob(F.logsigmoid(raw / t).sum(1)) if self.elementwise else raw / t

    def logit(self, x: Tensor, sigma: Tensor, cond: Any = None, *, read: Tensor | None = None) -> Tensor:
        """The logit of C(x, σ) = P(valid | x_σ), ``[B]``."""
        raw = self.raw_logit(x, sigma, cond, read=read)
        return self.tempered(raw, self.temperature(self._sigma(x, sigma))) + self.logit_offset

    def element_logits(self, x: Tensor, sigma: Tensor, cond: Any = None, *, read: Tensor | None = None) -> Tensor:
        """Per-element logits ``[B, E]`` of a per-element classifier, at its fitted temperature."""
        if not self.elementwise:
            raise ValueError("element_logits needs a per-element classifier (elementwise=True)")
        return self.raw_logit(x, sigma, cond, read=read) / append_dims(self.temperature(self._sigma(x, sigma)), 2)

    def temperature(self, sigma: Tensor) -> Tensor:
        """Per-sample temperature, linearly interpolated in ln σ between the bin centres."""
        c, t = self.bin_centres, self.log_temperature
        u = sigma.log().clamp(c[0], c[-1])
        i = torch.searchsorted(c, u.detach()).clamp(1, len(c) - 1)
        w = (u - c[i - 1]) / (c[i] - c[i - 1])
        return (t[i - 1] * (1 - w) + t[i] * w).exp()

    def log_prob(self, x: Tensor, sigma: Tensor, cond: Any = None, *, read: Tensor | None = None) -> Tensor:
        """log C(x, σ) = log P(valid | x_σ), ``[B]``: the quantity guidance differentiates (per-element:
        Σ_e log σ(ℓ_e), summed directly for an exact gradient)."""
        if self.elementwise:
            return F.logsigmoid(self.element_logits(x, sigma, cond, read=read)).sum(1)
        return F.logsigmoid(self.logit(x, sigma, cond, read=read))

    def forward(self, x, sigma, cond=None, *, elements: bool = False):
        """The logit ``[B]``; with ``elements`` the per-element logits ``[B, E]`` (training calls go through forward
        so that DDP syncs their gradients)."""
        return self.element_logits(x, sigma, cond) if elements else self.logit(x, sigma, cond)


class _Shared:
    """A reference that copies of its owner share: ``copy.deepcopy`` (the EMA copy of a classifier in training)
    keeps the one base denoiser instead of cloning its weights."""

    def __init__(self, value):
        self.value = value

    def __deepcopy__(self, memo):
        return self


def logit_of_log_prob(log_c: Tensor) -> Tensor:
    """logit(C) = log C − log(1 − C) from log C ``[B]``; log C is capped just below 0 so a sure sample stays finite."""
    log_c = log_c.clamp_max(-1e-6)
    return log_c - torch.log(-torch.expm1(log_c))


def element_bce(logits: Tensor, valid: Tensor, exists: Tensor, weights: Tensor) -> Tensor:
    """Importance-weighted per-element BCE of each sample, ``[B]``: w_b Σ_e 1[e exists] BCE(ℓ_be, y_be).

    The sum over elements is the negative log-likelihood of the factorised model P(y | x) = Π_e P(y_e | x) whose
    product guides; elements that do not exist (+inf logits on padded slots) contribute nothing.

    Args:
        logits: ``[B, E]``; valid: ``[B, E]`` (1 = the element is valid); exists: bool ``[B, E]``; weights: ``[B]``.
    """
    exists = exists.bool()
    per = F.binary_cross_entropy_with_logits(torch.where(exists, logits, 0.0), valid.to(logits.dtype), reduction="none")
    return weights * torch.where(exists, per, 0.0).sum(1)


def importance_weights(labels: Tensor, alpha: float) -> Tensor:
    """Weights that restore the model's prior on a 50/50 set: 2α for valid, 2(1 − α) for invalid."""
    if not 0 < alpha < 1:
        raise ValueError(f"importance weights need 0 < alpha < 1, got {alpha}")
    return torch.where(labels.bool(), 2 * alpha, 2 * (1 - alpha)).float()


def balanced_index(labels: Tensor, *, seed: int = 0) -> Tensor:
    """Indices of a 50/50 set: the minority class oversampled (with replacement) to the size of the majority."""
    pos, neg = labels.bool().nonzero().flatten(), (~labels.bool()).nonzero().flatten()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"a balanced set needs both classes, got {len(pos)} valid and {len(neg)} invalid samples")
    g = torch.Generator().manual_seed(seed)
    m = max(len(pos), len(neg))
    grow = lambda idx: idx[rng.randint(0, len(idx), (m,), g)] if len(idx) < m else idx
    return torch.cat([grow(pos), grow(neg)])


def balanced_set(x0: Tensor, labels: Tensor, cond: Any = None, *, seed: int = 0) -> tuple[Tensor, Tensor, Any]:
    """The 50/50 set of ``balanced_index``: ``(x0, labels, cond)``."""
    idx = balanced_index(labels, seed=seed)
    return x0[idx], labels[idx], take(cond, idx.numpy())


@dataclass(frozen=True)
class _Objective:
    sigma_dist: Callable
    fixed_sigma: float | None
    elements: bool = False  # per-element labels (batch["ey"], batch["em"]) and ``element_bce``

    def __call__(self, model: NoisyClassifier, batch: dict, gen: torch.Generator) -> Tensor:
        x0 = batch["x0"]
        if self.fixed_sigma is None:
            sigma = self.sigma_dist(x0.shape[0], generator=gen).to(x0.device, x0.dtype)
        else:
            sigma = torch.full((x0.shape[0],), self.fixed_sigma, device=x0.device, dtype=x0.dtype)
        noise = rng.randn(x0.shape, gen, device=x0.device, dtype=x0.dtype)
        # through forward (= logit), so that DDP syncs the gradients under torchrun
        x = x0 + append_dims(sigma, x0.ndim) * noise
        if self.elements:
            return element_bce(model(x, sigma, batch.get("cond"), elements=True), batch["ey"], batch["em"], batch["w"])
        logit = model(x, sigma, batch.get("cond"))
        return batch["w"] * F.binary_cross_entropy_with_logits(logit, batch["y"], reduction="none")


def fit_classifier(
    model: NoisyClassifier,
    x0: Tensor,
    labels: Tensor,
    cfg: TrainConfig,
    *,
    cond: Any = None,
    alpha: float | None = None,
    sigma_range: tuple[float, float] = (0.002, 80.0),
    run_dir: str | Path | None = None,
    name: str = "classifier",
    resume: bool = False,
    callback: Callable[[dict], None] | None = None,
    elements: tuple[Tensor, Tensor] | None = None,
) -> NoisyClassifier:
    """Trains ``model`` on a balanced set of (x0, label) pairs, noised afresh at every step.

    Args:
        labels: bool ``[N]`` (True = valid / real); the set is balanced and weighted on them.
        alpha: the model's valid fraction for importance weights; None trains unweighted (the "w/o IS" ablation
            and the data-vs-model discriminator).
        elements: for a per-element classifier, ``(valid [N, E], exists [N, E])`` per-element labels; the loss is
            ``element_bce`` with each sample's importance weight.
    Returns:
        The EMA classifier.
    """
    if batch_size_of(x0) != labels.shape[0]:
        raise ValueError(f"{batch_size_of(x0)} samples but {labels.shape[0]} labels")
    if (elements is not None) != model.elementwise:
        raise ValueError("a per-element classifier trains on per-element labels, a sample classifier without them")
    idx = balanced_index(labels, seed=rng.stream_seed(cfg.seed, "balanced_set"))
    xb, yb, cb = x0[idx], labels[idx], take(cond, idx.numpy())
    w = importance_weights(yb, alpha) if alpha is not None else torch.ones(len(yb))
    model.logit_offset.zero_()  # training sees the balanced problem; a prior offset is applied afterwards
    data = {"x0": xb, "y": yb.float(), "w": w}
    if elements is not None:
        data["ey"], data["em"] = elements[0][idx].float(), elements[1][idx].bool()
    if cb is not None:
        data["cond"] = cb
    objective = _Objective(LogUniformSigma(*sigma_range), model.fixed_sigma, elements is not None)
    return train(model, objective, data, cfg, run_dir=run_dir, name=name, resume=resume, callback=callback).model


@torch.no_grad()
def classifier_report(model: NoisyClassifier, x0: Tensor, labels: Tensor, cond: Any = None, *,
                      sigma_range=(0.002, 80.0), num_bins: int = 8, seed: int = 0, device="cpu",
                      weights: Tensor | None = None, z: float = 2.0) -> dict:
    """Per ln σ bin, on held-out samples: the classifier's BCE, the best x-blind BCE, the paired gain with its
    standard error, AUC, accuracy and calibration error; and the σ window where the classifier is informative.

    Held-out samples in natural proportions follow the model's prior, so unweighted metrics are the right ones for
    Gen-neG classifiers; ``weights`` (per example) evaluate against another target, e.g. the 50/50 problem the
    ablation without importance weights is trained on. A bin is *informative* when the classifier beats the best
    x-blind predictor by a significant paired margin: mean(ℓ_ref − ℓ) > z · s.e. over the same examples and noise
    (``informative_sigma_max``). ``collapsed``: not even the smallest bin is informative.
    """
    g = torch.Generator().manual_seed(seed)
    y = labels.float()
    w = torch.ones_like(y) if weights is None else weights.float() / weights.float().mean()
    prior = float((w * y).sum() / w.sum())
    edges = torch.linspace(math.log(sigma_range[0]), math.log(sigma_range[1]), num_bins + 1)
    losses, logits = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sigma = (lo + (hi - lo) * rng.rand((len(y),), g)).exp()
        x = x0 + append_dims(sigma, x0.ndim) * rng.randn(x0.shape, g, dtype=x0.dtype)
        logit = model.logit(x.to(device), sigma.to(device), to_device(cond, device)).cpu()
        logits.append(logit)
        losses.append(w * F.binary_cross_entropy_with_logits(logit, y, reduction="none"))
    reference = _x_blind_losses(y, w, prior, losses[-1])
    bins = []
    for (lo, hi), loss, logit in zip(zip(edges[:-1].tolist(), edges[1:].tolist()), losses, logits):
        gain = reference - loss  # paired: same examples, same noise
        se = gain.std().item() / math.sqrt(len(gain)) if len(gain) > 1 else math.inf
        p = logit.sigmoid()
        bins.append({
            "sigma_lo": math.exp(lo), "sigma_hi": math.exp(hi),
            "bce": loss.mean().item(), "reference_bce": reference.mean().item(),
            "gain": gain.mean().item(), "gain_se": se, "informative": bool(gain.mean().item() > z * se),
            "auc": auc(logit, labels.bool(), w),
            "accuracy": (w * ((p > 0.5).float() == y).float()).mean().item(),
            "ece": expected_calibration_error(p, y),
        })
    return {"prior": prior, "bins": bins, "reference_bce": bins[0]["reference_bce"],
            "collapsed": not bins[0]["informative"], "informative_sigma_max": informative_sigma_max(bins), "z": z}


def _x_blind_losses(y: Tensor, w: Tensor, prior: float, top_bin: Tensor) -> Tensor:
    """Per-example losses of the best predictor that does not look at x: the constant prior, or, when the condition
    alone predicts validity (a map, a vehicle count), the classifier itself at the largest σ, where x_σ is noise."""
    p = min(max(prior, 1e-12), 1 - 1e-12)
    constant = w * -(y * math.log(p) + (1 - y) * math.log(1 - p))
    return top_bin if top_bin.mean() < constant.mean() else constant


def informative_sigma_max(bins: list[dict]) -> float:
    """Upper edge of the contiguous run of σ-bins, from the smallest, marked ``informative`` (a significant paired
    gain over the best x-blind predictor, ``classifier_report``).

    Above it the learned log C is flat in x up to noise, which guidance would multiply by σ²; the exact Bayes
    classifier's gradient is ~0 there too, so stopping guidance loses nothing the theory asks for. 0.0 if even the
    smallest bin is uninformative (a collapsed classifier).
    """
    edge = 0.0
    for b in bins:
        if not b["informative"]:
            break
        edge = b["sigma_hi"]
    return edge


def auc(score: Tensor, positive: Tensor, weights: Tensor | None = None) -> float:
    """Area under the ROC curve (weighted Mann–Whitney statistic, ties count one half); NaN with one class only."""
    w = torch.ones_like(score) if weights is None else weights.float()
    pos, neg = positive.bool(), ~positive.bool()
    if not pos.any() or not neg.any():
        return float("nan")
    order = torch.argsort(score.double())
    s, wp, wn = score.double()[order], (w * pos).double()[order], (w * neg).double()[order]
    uniq, inverse = torch.unique_consecutive(s, return_inverse=True)
    tie_p = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, wp)
    tie_n = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, wn)
    below_n = torch.cumsum(tie_n, 0) - tie_n  # negative weight strictly below each score
    num = (tie_p * (below_n + 0.5 * tie_n)).sum()
    return float(num / (tie_p.sum() * tie_n.sum()))


def expected_calibration_error(p: Tensor, y: Tensor, num_bins: int = 10) -> float:
    """Mean |confidence − frequency| over equal-width probability bins, weighted by bin occupancy."""
    idx = (p * num_bins).long().clamp(max=num_bins - 1)
    ece = 0.0
    for b in range(num_bins):
        m = idx == b
        if m.any():
            ece += m.float().mean().item() * abs(p[m].mean().item() - y[m].mean().item())
    return ece


@torch.no_grad()
def calibrate(model: NoisyClassifier, x0: Tensor, labels: Tensor, cond: Any = None, *, seed: int = 0,
              device="cpu", draws: int = 4, weights: Tensor | None = None) -> Tensor:
    """Fits one temperature per ln σ bin centre on held-out samples (natural proportions) by grid search on BCE.

    An over-confident classifier has a steep log C near the oracle boundary, which guidance multiplies by σ²;
    a temperature > 1 flattens it where the held-out data say it is over-confident (docs/method.md, "Two traps").
    ``weights`` (per example) calibrate against another target than the held-out proportions, e.g. the 50/50
    problem of the ablation without importance weights. Returns the fitted temperatures ``[num_bins]`` (also stored
    in the model).
    """
    g = torch.Generator().manual_seed(seed)
    y = labels.float().repeat(draws)
    w = (torch.ones(len(labels)) if weights is None else weights.float()).repeat(draws)
    xs, cs = x0.repeat((draws,) + (1,) * (x0.ndim - 1)), cond
    if cond is not None:
        cs = concat([cond] * draws)
    grid = torch.linspace(-1.0, 3.0, 81)  # log T: T from 0.37 to 20
    offset = model.logit_offset.item()
    model.log_temperature.zero_()
    model.logit_offset.zero_()
    fitted = torch.zeros_like(model.log_temperature)
    for b, centre in enumerate(model.bin_centres.cpu()):
        sigma = centre.exp().expand(len(y))
        x = xs + append_dims(sigma, xs.ndim) * rng.randn(xs.shape, g, dtype=xs.dtype)
        raw = model.raw_logit(x.to(device), sigma.to(device), to_device(cs, device)).cpu()
        losses = torch.stack([F.binary_cross_entropy_with_logits(model.tempered(raw, t.exp()) + offset, y, w)
                              for t in grid])
        fitted[b] = grid[losses.argmin()]
    model.logit_offset.fill_(offset)
    model.log_temperature.copy_(fitted.to(model.log_temperature.device))
    return fitted.exp()
