"""Gen-neG (Naderiparizi et al. 2024): rounds of sample → oracle → classifier → stack, then distillation.

``gen_neg`` is the method top-down; each step is a small function below it. Round k samples from the base denoiser
guided by classifiers 1..k−1, labels the samples with the oracle and fits classifier k on a balanced, importance-
weighted set (docs/method.md). ``distil`` regresses a student on the guided teacher, so sampling costs one network
evaluation again; rounds can continue on top of a student (guide → distil cycles). Files, resume and progress come
in through a ``RunContext``; ``genneg.run`` wraps the method with evaluation and reporting.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from . import rng
from .batch import concat, take, to_device
from .checkpoint import load_cache, load_weights, save_cache, save_weights, state_step
from .classifier import NoisyClassifier
from .config import GenNegConfig, RunConfig
from .context import RunContext
from .diffusion import (Denoiser, EDMPrecond, LogNormalSigma, LogUniformSigma, SigmaHandoff, append_dims,
                        check_finite, denoising_loss, edm_loss)
from .domain import Domain
from .draws import draw_cached, draw_labelled
from .fitting import Labelled, fit_judged, fit_per_reason, split_held_out
from .guidance import GuidanceTerm, guided
from .models import load_denoiser
from .oracle import Oracle, OracleResult
from .reasons import ReasonClassifiers
from .rng import stream_seed
from .stats import wilson_interval
from .training import seeded, streamed, train

__all__ = ["gen_neg", "Stage", "RoundResult", "run_round", "labelled_round", "LabelledRound", "save_round",
           "finished_round", "round_oracle", "round_size", "stack", "guidance_term", "distil", "build_classifier",
           "load_classifier", "target_pool", "teacher_samples", "draw_labelled", "RunContext"]


@dataclass
class Stage:
    """A finished stage of the method: its name ("round<k>", "distilled"), the model it yields, and its round."""

    name: str
    model: Denoiser
    round: RoundResult | None = None


def gen_neg(base: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle,
            ctx: RunContext = RunContext()) -> Iterator[Stage]:
    """Runs Gen-neG from ``base`` and yields each stage as soon as it is done: round 1..K, then the distilled model.

    With ``ctx.resume`` every step reads back what ``ctx.run_dir`` holds (drawn and labelled samples, finished or
    interrupted trainings, the distillation pool), so a resumed run redoes only unfinished work.
    """
    g, classifiers = cfg.genneg, []
    for k in range(1, g.rounds + 1):
        teacher = stack(base, classifiers, cfg.genneg)  # the model round k samples from
        phase = ctx.phase(f"round {k}", cfg.classifier.steps, g.samples_per_round)
        r = run_round(teacher, domain, cfg, oracle, k, phase, base=base)  # sample → label → α → fit classifier k
        if r.classifier is not None:
            classifiers.append(r.classifier)
        yield Stage(f"round{k}", stack(base, classifiers, cfg.genneg), r)
    guided_model = stack(base, classifiers, cfg.genneg)  # the teacher: base guided by every classifier
    phase = ctx.phase("distil", cfg.distil.steps, g.distil_samples)
    yield Stage("distilled", distil(guided_model, base, domain, cfg, phase))


@dataclass
class RoundResult:
    """What one round produced. ``classifier`` is None when the round was skipped (``skipped`` says why)."""

    index: int
    alpha: float
    alpha_ci: tuple[float, float]
    num_samples: int
    num_undefined: int
    classifier: NoisyClassifier | ReasonClassifiers | None = None
    report: dict = field(default_factory=dict)
    skipped: str = ""

    def summary(self) -> dict:
        return {"round": self.index, "alpha": self.alpha, "alpha_ci": list(self.alpha_ci), "n": self.num_samples,
                "undefined": self.num_undefined, "skipped": self.skipped, "classifier": self.report}


def build_classifier(domain: Domain, cfg: RunConfig, *, fixed_sigma: float | None = None,
                     stream: str = "classifier", element_reason: str | None = None,
                     base: Denoiser | None = None) -> NoisyClassifier:
    """A freshly initialised classifier; its initial weights come from the stream ``(cfg.seed, stream, "init")``.
    With ``element_reason`` a per-element one, on the domain's ``make_element_classifier_net(cfg, reason)``. With
    ``cfg.genneg.classifier_input = "denoised"`` it reads ``base``'s denoised estimate (not at a ``fixed_sigma``:
    the time-independent ablation reads x)."""
    g = cfg.genneg
    reads = None
    if g.classifier_input == "denoised" and fixed_sigma is None:
        if base is None:
            raise ValueError("classifier_input = 'denoised' needs the base denoiser whose estimate the classifier "
                             "reads (build_classifier / load_classifier base=...)")
        reads = base
    with seeded(stream_seed(cfg.seed, stream, "init")):
        if element_reason is None:
            net = domain.make_classifier_net(dict(cfg.classifier_net))
        else:
            net = domain.make_element_classifier_net(dict(cfg.classifier_net), element_reason)
    return NoisyClassifier(net, domain.sigma_data, fixed_sigma=fixed_sigma, sigma_min=g.classifier_sigma_min,
                           sigma_max=g.classifier_sigma_max, elementwise=element_reason is not None,
                           denoiser=reads).to(cfg.device)


def load_classifier(domain: Domain, cfg: RunConfig, path: str | Path,
                    base: Denoiser | None = None) -> NoisyClassifier | ReasonClassifiers:
    """A round's classifier (or its per-reason classifiers) as ``run_round`` saved it to ``path``; ``base``: the
    denoiser it reads under ``classifier_input = "denoised"``."""
    state, meta = load_weights(path)
    if "reasons" in meta:
        model = ReasonClassifiers({r: build_classifier(domain, cfg, element_reason=r if elementwise else None,
                                                       base=base)
                                   for r, elementwise in meta["reasons"].items()})
    else:
        model = build_classifier(domain, cfg, fixed_sigma=meta.get("fixed_sigma"), base=base)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # missing, unexpected or reshaped tensors: another architecture
        raise ValueError(f"{path} does not match the {cfg.domain!r} classifier of this config: {e}") from e
    return model.eval().requires_grad_(False)


@dataclass
class LabelledRound:
    """A round's draw: its summary (α, counts, ``skipped``), every judged sample, and the train / held-out sets."""

    summary: RoundResult
    data: Labelled | None = None
    train: Labelled | None = None
    held: Labelled | None = None


def run_round(teacher: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle, index: int,
              ctx: RunContext = RunContext(), *, base: Denoiser | None = None) -> RoundResult:
    """One round: M samples from ``teacher``, oracle labels, α with its Wilson interval, a calibrated classifier.

    M is ``samples_per_round``, or more under ``min_minority`` (``round_size``); the labels come from
    ``round_oracle`` (the run's oracle, or the threshold curriculum's for an early round). The classifier is
    calibrated and windowed on held-out samples (``labelled_round``). With ``classifier_per_reason`` the round fits
    one classifier per reason of the oracle (``fitting.fit_per_reason``) and returns them as one guide.

    Args:
        base: the denoiser a classifier reads under ``classifier_input = "denoised"`` (default: ``teacher``, which
            is the base in round 1; later rounds pass the unguided base, not the guided teacher).
    """
    g = cfg.genneg
    base = teacher if base is None else base
    stream, stem = f"round{index}", f"classifier{index}"
    finished = finished_round(domain, cfg, ctx.file(f"{stem}.safetensors"), base) if ctx.resume else None
    if finished is not None:
        return finished
    drawn = labelled_round(teacher, domain, cfg, oracle, index, ctx)
    out, train_set, held = drawn.summary, drawn.train, drawn.held
    if out.skipped:
        return out
    meta = {"fixed_sigma": None, "alpha": out.alpha}
    if g.classifier_per_reason:  # one classifier per reason
        build = lambda reason, elementwise: build_classifier(  # noqa: E731
            domain, cfg, stream=f"{stream}/{reason}", element_reason=reason if elementwise else None, base=base)
        model, report = fit_per_reason(build, drawn.data, train_set, held, cfg, ctx, stream=stream, stem=stem,
                                       element_nets=hasattr(domain, "make_element_classifier_net"))
        meta["reasons"] = {r: rep["elementwise"] for r, rep in report["reasons"].items() if "elementwise" in rep}
        out.skipped = "" if model is not None else "no reason has both classes in the round's samples"
    else:
        clf = build_classifier(domain, cfg, stream=stream, base=base)
        model, report = fit_judged(clf, train_set, held, cfg, ctx, labels=(train_set.y, held.y), alpha=out.alpha,
                                   use_is=g.importance_weights,
                                   weighted=g.importance_weights and g.prior_correction == "weights",
                                   fixed_sigma=None, streams=(stream, stream), stem=stem)
    return save_round(out, model, report, meta, ctx, stem)


def labelled_round(teacher: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle, index: int,
                   ctx: RunContext = RunContext(), *,
                   resume: bool | None = None) -> LabelledRound:
    """Round ``index``'s labelled samples, α and hold-out split (``fitting.split_held_out``); without samples sets
    when the round is skipped (``summary.skipped`` says why: one class is missing).

    Every random draw comes from the round's streams ``(cfg.seed, "round<index>", purpose)``, so an ablation of
    round ``index`` that reads them (``baselines``) uses the same samples, hold-out split, initial weights,
    training batches and noise as the round, and differs from it in what it changes and nothing else. Undefined
    verdicts are excluded, and counted. ``resume`` (default ``ctx.resume``): read the draws cached in the run's
    folder.
    """
    stream = f"round{index}"
    resume = ctx.resume if resume is None else resume
    oracle = round_oracle(domain, cfg, oracle, index)
    x0, cond, result = _draw_round(teacher, domain, cfg, oracle, stream, ctx, resume=resume)
    keep = np.flatnonzero(result.defined)
    n_valid = int(result.valid[keep].sum())
    alpha = n_valid / len(keep) if len(keep) else float("nan")
    out = RoundResult(index, alpha, wilson_interval(n_valid, len(keep)), len(keep), result.num_undefined)
    out.skipped = _skip_reason(len(keep), n_valid)
    if out.skipped:
        return LabelledRound(out)
    data = Labelled(x0, cond, result).take(keep)
    train_set, held = split_held_out(data, teacher, domain, cfg, oracle, stream, ctx, resume=resume)
    return LabelledRound(out, data, train_set, held)


def save_round(out: RoundResult, model: NoisyClassifier | ReasonClassifiers | None, report: dict, meta: dict,
               ctx: RunContext, stem: str) -> RoundResult:
    """``out`` with its classifier and report, written to ``<stem>.safetensors`` with ``meta`` and the round's
    summary (what ``finished_round`` reads back)."""
    out.classifier, out.report = model, report
    if ctx.run_dir is not None and model is not None:
        save_weights(ctx.file(f"{stem}.safetensors"), model, {**meta, "report": report, "round": out.summary()})
    return out


def round_oracle(domain: Domain, cfg: RunConfig, oracle: Oracle, index: int) -> Oracle:
    """The oracle round ``index`` labels with: ``domain.oracle(**cfg.genneg.oracle_curriculum[index - 1])`` while
    the curriculum lists the round (labelled in this process), else the run's ``oracle``."""
    curriculum = cfg.genneg.oracle_curriculum
    return domain.oracle(**curriculum[index - 1]) if index <= len(curriculum) else oracle


def round_size(n: int, n_valid: int, g: GenNegConfig) -> int:
    """Samples a round needs in all after ``n`` labelled ones of which ``n_valid`` are valid: ``n``, or with
    ``g.min_minority`` = N > 0 up to ⌈N / min(α̂, 1 − α̂)⌉, capped at ``g.max_samples_per_round`` (the cap when
    the n hold none of a class)."""
    if g.min_minority == 0 or n == 0:
        return n
    rare = min(n_valid, n - n_valid) / n
    need = g.max_samples_per_round if rare == 0 else math.ceil(g.min_minority / rare)
    return max(n, min(need, g.max_samples_per_round))


def _draw_round(teacher: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle, stream: str, ctx: RunContext,
                resume: bool):
    """A round's labelled samples: ``samples_per_round`` first, then (``round_size``) more from the stream's
    ``"more_samples"``, each draw cached apart so a resumed round redraws neither."""
    n = cfg.genneg.samples_per_round
    x0, cond, result = draw_labelled(teacher, domain, cfg, oracle, n, seed=stream_seed(cfg.seed, stream, "samples"),
                                     progress=ctx.progress, cache=ctx.file(f"labelled_{stream}.safetensors"),
                                     resume=resume)
    judged = result.defined
    more = round_size(int(judged.sum()), int((result.valid & judged).sum()), cfg.genneg) - int(judged.sum())
    if more <= 0:
        return x0, cond, result
    x1, c1, r1 = draw_labelled(teacher, domain, cfg, oracle, more, seed=stream_seed(cfg.seed, stream, "more_samples"),
                               progress=ctx.progress, cache=ctx.file(f"labelled_{stream}_more.safetensors"),
                               resume=resume)
    return torch.cat([x0, x1]), concat([cond, c1]), OracleResult.concat([result, r1])


def finished_round(domain: Domain, cfg: RunConfig, path: Path | None, base: Denoiser) -> RoundResult | None:
    """The round a previous process finished and saved to ``path`` (its calibrated classifier and summary), or None
    (no such file, or only the classifier's training weights: the round stopped before its end)."""
    if path is None or not path.is_file():
        return None
    meta = load_weights(path)[1]
    if "round" not in meta:
        return None
    s = meta["round"]
    return RoundResult(s["round"], s["alpha"], tuple(s["alpha_ci"]), s["n"], s["undefined"],
                       load_classifier(domain, cfg, path, base), s["classifier"], s["skipped"])


def _skip_reason(n_defined: int, n_valid: int) -> str:
    if n_defined == 0:
        return "the oracle gave no defined verdict"
    if n_valid == n_defined:
        return f"alpha = 1: all {n_defined} samples valid, nothing to guide away from"
    if n_valid == 0:
        return f"alpha = 0: none of {n_defined} samples valid, no valid class to learn"
    return ""


def stack(denoiser: Denoiser, classifiers: list[NoisyClassifier], g: GenNegConfig, weight: float | None = None):
    """The base denoiser guided by every classifier so far, with the run's weight, σ window and clipping (``g``,
    the run's ``genneg`` section)."""
    terms = [guidance_term(c.log_prob, float(c.sigma_max_guidance), g, f"classifier{i + 1}", weight)
             for i, c in enumerate(classifiers)]
    return guided(denoiser, [t for t in terms if t is not None])


def guidance_term(log_prob: Callable, sigma_max: float, g: GenNegConfig, name: str,
                  weight: float | None = None) -> GuidanceTerm | None:
    """The one way a guide enters a run: the run's weight, its σ window cut at ``sigma_max`` (where the guide was
    measured informative, ``classifier_report``) and its clipping. None when the window is empty (a collapsed guide
    guides nothing)."""
    hi = min(g.guidance_sigma_max, sigma_max)
    if hi < g.guidance_sigma_min or hi <= 0:
        return None
    return GuidanceTerm(log_prob, weight=g.guidance_weight if weight is None else weight,
                        sigma_range=(g.guidance_sigma_min, hi), max_ratio=g.guidance_max_ratio, name=name)


def distil(teacher: Denoiser, init: EDMPrecond, domain: Domain, cfg: RunConfig, ctx: RunContext = RunContext(), *,
           name: str = "distilled") -> EDMPrecond:
    """Trains a copy of ``init`` to match the guided ``teacher``: λ(σ)‖S(x; σ) − D_g(x; σ)‖² on noised teacher samples.

    A fraction ``cfg.genneg.distil_data_fraction`` of the x0 are training data instead of teacher samples (the
    regression target is still the teacher's denoiser). ``cfg.genneg.distil_sigma`` picks the loss's σ distribution
    (see GenNegConfig). With ``cfg.genneg.distil_pool`` the teacher's targets are computed once (``target_pool``) and
    the student trains on them. Teacher samples and the pool are cached in ``run_dir`` so a resumed distillation
    redraws neither.
    """
    g = cfg.genneg
    # with a hand-off σ the student trains as "<name>.student" and "<name>.safetensors" (student and base) is written
    # once it has finished, so a finished file always holds the whole distilled model
    stem = f"{name}.student" if g.distil_sigma_min else name
    done = ctx.file(f"{name}.safetensors")
    if ctx.resume and done is not None and done.is_file() and _trained(ctx.file(f"{stem}.state.pt"), cfg.distil.steps):
        return load_denoiser(domain, cfg, done)  # a previous process finished this distillation
    x0, cond = teacher_samples(teacher, domain, cfg, ctx, name)
    if g.distil_data_fraction > 0:
        x0, cond = _mix_with_data(domain, x0, cond, g.distil_data_fraction, stream_seed(cfg.seed, name, "data_mix"))
    student = copy.deepcopy(init).requires_grad_(True)
    sigma_dist = _distil_sigma_dist(g)
    if g.distil_pool:
        data = target_pool(teacher, x0, cond, g.distil_pool, sigma_dist, seed=stream_seed(cfg.seed, name, "pool"),
                           batch_size=cfg.sampler.batch_size, device=cfg.device,
                           cache=ctx.file(f"{name}.targets.safetensors"), resume=ctx.resume)
        objective = pool_objective(cond)
    else:
        data = {"x0": x0} if cond is None else {"x0": x0, "cond": cond}

        def objective(model, batch, gen):
            return edm_loss(model, batch["x0"], batch.get("cond"), sigma_dist=sigma_dist, target=teacher,
                            generator=gen)

    # the student regresses a deterministic teacher, so it trains as it samples (no dropout, no condition dropout:
    # a row whose label were dropped would ask it for a target it cannot know, and pull it away from the base)
    meta = {"run": cfg.to_dict(), "sigma_data": domain.sigma_data}
    res = train(student, objective, data, streamed(cfg.distil, cfg.seed, name), run_dir=ctx.run_dir, name=stem,
                resume=ctx.resume, callback=ctx.callback, dropout=False, config_to_save=meta)
    model = res.model.eval().requires_grad_(False)
    if not g.distil_sigma_min:
        return model
    model = SigmaHandoff(copy.deepcopy(init).eval().requires_grad_(False), model, g.distil_sigma_min)
    if done is not None:
        save_weights(done, model, {**meta, "handoff_sigma": g.distil_sigma_min})
    return model


def pool_objective(cond: Any) -> Callable:
    """The distillation loss on rows of a ``target_pool``: λ(σ)‖S(x; σ) − D_g(x; σ)‖² with each row's condition
    (``cond`` of the teacher samples, picked by the row's ``index``)."""

    def objective(model, batch, gen):
        c = to_device(take(cond, batch["index"].cpu().numpy()), batch["x"].device)
        return denoising_loss(model, batch["x"], batch["sigma"], batch["target"], c)

    return objective


def target_pool(teacher: Denoiser, x0: torch.Tensor, cond: Any, size: int, sigma_dist: Callable, *, seed: int = 0,
                batch_size: int = 8192, device="cpu", cache: str | Path | None = None, resume: bool = False) -> dict:
    """``size`` distillation targets: ``{"index", "x", "sigma", "target"}`` with ``x = x0[index] + σ·n`` (index drawn
    with replacement, σ from ``sigma_dist``, n standard normal) and ``target = teacher(x, σ, cond[index])``,
    evaluated ``batch_size`` rows at a time. With ``cache`` the pool is written there, and read back on ``resume``
    when it was drawn the same way (size, seed, number of x0, σ distribution)."""
    key = {"pool": size, "seed": seed, "n": int(x0.shape[0]), "sigma": repr(sigma_dist)}
    cached = load_cache(cache, key) if resume else None
    if cached is not None:
        return cached[0]
    g = torch.Generator().manual_seed(seed)
    index = rng.randint(0, x0.shape[0], (size,), g)
    sigma = sigma_dist(size, generator=g).to(x0.dtype)
    x = x0[index] + append_dims(sigma, x0.ndim) * rng.randn((size,) + tuple(x0.shape[1:]), g, dtype=x0.dtype)
    target = torch.empty_like(x)
    for s in range(0, size, batch_size):
        sl = slice(s, s + batch_size)
        c = to_device(take(cond, index[sl].numpy()), device)
        target[sl] = teacher(x[sl].to(device), sigma[sl].to(device), c).detach().cpu()
    pool = {"index": index, "x": x, "sigma": sigma, "target": check_finite(target, "distillation targets")}
    save_cache(cache, pool, {}, key)
    return pool


def _trained(state: Path, steps: int) -> bool:
    """Whether the train state at ``state`` has reached ``steps``."""
    return state.is_file() and state_step(state) >= steps


def _distil_sigma_dist(g):
    if g.distil_sigma == "loguniform":
        return LogUniformSigma(max(g.classifier_sigma_min, g.distil_sigma_min), g.classifier_sigma_max)
    return LogNormalSigma(sigma_min=g.distil_sigma_min)


def teacher_samples(teacher: Denoiser, domain: Domain, cfg: RunConfig, ctx: RunContext, name: str = "distilled"):
    """The distillation's ``distil_samples`` teacher samples ``x0`` and their training conditions, from the stream
    ``(cfg.seed, name, "samples")``; cached in ``ctx.run_dir`` and read back on ``ctx.resume`` (then ``teacher`` is
    not called)."""
    n, seed = cfg.genneg.distil_samples, stream_seed(cfg.seed, name, "samples")
    cond = domain.conditions(n, "train", stream_seed(seed, "conditions"))
    tensors, _ = draw_cached(teacher, domain, cfg, cond, n, seed, {"n": n, "split": "train", "seed": seed},
                             cache=ctx.file(f"{name}.teacher_samples.safetensors"), resume=ctx.resume,
                             progress=ctx.progress)
    return tensors["x0"], cond


def _mix_with_data(domain: Domain, x0, cond, fraction: float, seed: int):
    data_x0, data_cond = domain.dataset("train")
    n_data = int(round(fraction * x0.shape[0]))
    g = torch.Generator().manual_seed(seed)
    idx = rng.randint(0, data_x0.shape[0], (n_data,), g)
    keep = x0.shape[0] - n_data
    cond_mix = None if cond is None else concat([take(cond, slice(0, keep)), take(data_cond, idx.numpy())])
    return torch.cat([x0[:keep], data_x0[idx]]), cond_mix
