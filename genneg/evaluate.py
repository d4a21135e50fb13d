"""Evaluating a denoiser on a domain: infraction rates (Wilson intervals, per reason), NLL bound, sampler cost."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from . import rng
from .batch import take, to_device
from .config import RunConfig
from .diffusion import Denoiser
from .domain import Domain
from .generate import timed_generate
from .likelihood import mean_and_stderr, nll_bound
from .oracle import Oracle, OracleResult
from .labelling import label
from .rng import stream_seed
from .stats import wilson_interval

__all__ = ["infraction_summary", "format_infractions", "evaluate_denoiser", "nll_points", "EvalData", "domain_metrics"]


def infraction_summary(result: OracleResult) -> dict:
    """Infraction rate over defined samples with a Wilson interval, per reason, and the undefined count."""
    n = int(result.defined.sum())
    k = int((~result.valid & result.defined).sum())

    def rate(count: int) -> dict:
        lo, hi = wilson_interval(count, n)
        return {"rate": count / n if n else float("nan"), "lo": lo, "hi": hi, "count": count}

    return {
        "n": n,
        "undefined": result.num_undefined,
        "total": rate(k),
        "reasons": {name: rate(int((flags & result.defined).sum())) for name, flags in result.reasons.items()},
    }


def format_infractions(result: OracleResult, digits: int = 1) -> str:
    """One line for people: the invalid rate and each reason's, in % with 95 % Wilson intervals."""

    def pct(r: dict) -> str:
        return f"{100 * r['rate']:.{digits}f} % [{100 * r['lo']:.{digits}f}, {100 * r['hi']:.{digits}f}]"

    s = infraction_summary(result)
    reasons = ", ".join(f"{k} {pct(v)}" for k, v in s["reasons"].items())
    undefined = f", {s['undefined']} undefined" if s["undefined"] else ""
    return f"invalid {pct(s['total'])} ({reasons}){undefined}"


class EvalData:
    """The held-out data and generation conditions shared by every stage of a run (so rows are comparable), drawn
    from the run's ``("eval", ...)`` streams."""

    def __init__(self, domain: Domain, cfg: RunConfig, split: str = "test"):
        self.split = split
        x0, cond = domain.dataset(split)
        n = min(cfg.eval.num_nll, x0.shape[0])
        idx = rng.randperm(x0.shape[0], rng.generator(cfg.seed, "eval", "nll_points"))[:n]
        self.x0, self.cond = x0[idx], take(cond, idx)
        self.gen_cond = domain.conditions(cfg.eval.num_samples, split, stream_seed(cfg.seed, "eval", "conditions"))


def evaluate_denoiser(
    denoiser: Denoiser,
    domain,
    cfg: RunConfig,
    data: EvalData,
    oracle: Oracle,
    *,
    seed: int | None = None,
    with_nll: bool = True,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict, Any, OracleResult]:
    """Generates ``cfg.eval.num_samples`` samples, labels them and bounds the NLL of the held-out data.

    Args:
        seed: the evaluation's stream seed (default: the run's ``("eval",)`` stream): the sampler's noise comes from
            its child stream ``"samples"``, the bound's from ``"nll"``. Every stage of a run is evaluated with the
            same seed, so stages are compared on the same noise.

    Returns:
        (metrics, decoded samples, oracle result). Metrics hold ``infraction``, ``nll`` (mean, se in nats),
        ``seconds_per_1000`` (sampler wall time), ``valid_per_second``, and ``domain`` where the domain measures
        more (``domain_metrics``).
    """
    n = cfg.eval.num_samples
    seed = stream_seed(cfg.seed, "eval") if seed is None else seed
    x0, wall = timed_generate(denoiser, domain.sample_shape, n, cfg.sampler, data.gen_cond,
                              seed=stream_seed(seed, "samples"), device=cfg.device, callback=progress)
    samples = domain.decode(x0, data.gen_cond)
    result = label(oracle, samples, data.gen_cond)
    metrics = {"infraction": infraction_summary(result), "seconds_per_1000": 1000 * wall / n}
    n_valid = int(result.valid.sum())
    metrics["valid_per_second"] = n_valid / wall if wall > 0 else float("nan")
    if callable(getattr(domain, "metrics", None)):
        metrics["domain"] = domain_metrics(domain, samples, data.gen_cond, result, data.split)
    if with_nll:
        metrics["nll"] = dict(zip(("mean", "se"), mean_and_stderr(nll_points(denoiser, cfg, data, seed))))
    return metrics, samples, result


def domain_metrics(domain: Domain, samples, cond, result: OracleResult, split: str) -> dict[str, dict]:
    """The domain's own measures of a stage's samples: ``domain.metrics(samples, cond, result, split)`` returns
    ``{name: value}`` or ``{name: {"value", "lo", "hi"}}`` (an interval the domain computed, e.g. bootstrapped over
    road networks); returned as ``{name: {"value", "lo", "hi"}}`` (NaN bounds where none was given).

    Raises:
        TypeError / ValueError: a name that is not a string, or a value that is not a finite number.
    """
    out = {}
    for name, v in dict(domain.metrics(samples, cond, result, split)).items():
        if not isinstance(name, str):
            raise TypeError(f"{type(domain).__name__}.metrics returned a non-string name {name!r}")
        entry = dict(v) if isinstance(v, dict) else {"value": v}
        try:
            entry = {k: float(entry.get(k, math.nan)) for k in ("value", "lo", "hi")}
        except (TypeError, ValueError) as e:
            raise TypeError(f"{type(domain).__name__}.metrics[{name!r}] is not a number: {v!r}") from e
        if not math.isfinite(entry["value"]):
            raise ValueError(f"{type(domain).__name__}.metrics[{name!r}] is not finite: {entry['value']}")
        out[name] = entry
    return out


def nll_points(denoiser: Denoiser, cfg: RunConfig, data: EvalData, seed: int) -> torch.Tensor:
    """The NLL bound (nats) of each held-out point of ``data``, ``[num_nll]``, with noise from the child stream
    ``"nll"`` of ``seed``: two denoisers bounded with the same seed see the same points and noise (paired)."""
    e = cfg.eval
    return nll_bound(denoiser, data.x0.to(cfg.device), to_device(data.cond, cfg.device), sigma_min=e.nll_sigma_min,
                     sigma_max=e.nll_sigma_max, num_sigmas=e.nll_sigmas,
                     generator=rng.generator(seed, "nll"), batch_size=cfg.sampler.batch_size).cpu()

