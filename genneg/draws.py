"""Drawing samples from a denoiser on a domain's conditions, labelled by an oracle, cached so a killed run resumes
without redrawing or relabelling (the first step of every Gen-neG round)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import load_cache, save_cache
from .config import RunConfig
from .diffusion import Denoiser
from .domain import Domain
from .generate import generate
from .labelling import label
from .oracle import Oracle, OracleResult
from .rng import stream_seed

__all__ = ["draw_labelled", "draw_cached"]


def draw_labelled(denoiser: Denoiser, domain: Domain, cfg: RunConfig, oracle: Oracle, n: int, *, split: str = "train",
                  seed: int = 0, progress: Callable[[int], None] | None = None, cache: str | Path | None = None,
                  resume: bool = False) -> tuple[torch.Tensor, Any, OracleResult]:
    """Samples n x0 from ``denoiser`` on the split's conditions and labels them with the oracle.

    Args:
        seed: the stream seed of this draw: the sampler's noise comes from it, the conditions from its child stream
            ``stream_seed(seed, "conditions")``.
        cache: a ``.safetensors`` path: the samples are written there as soon as they are drawn and again with their
            labels once the oracle has judged them, so a killed round resumes without redrawing or relabelling.
        resume: read ``cache`` if it holds this draw (same n, split, seed and oracle); otherwise start afresh.
    """
    cond = domain.conditions(n, split, stream_seed(seed, "conditions"))
    key = {"n": n, "split": split, "seed": seed, "oracle": getattr(oracle, "name", "")}
    tensors, extra = draw_cached(denoiser, domain, cfg, cond, n, seed, key, cache=cache, resume=resume,
                                 progress=progress)
    x0 = tensors["x0"]
    if "valid" in tensors:
        reasons = {k: tensors[f"reason_{k}"].numpy() for k in extra["reasons"]}  # in the oracle's order
        elements = {k: tensors[f"element_{k}"].numpy() for k in extra.get("elements", ())}
        exists = tensors["element_defined"].numpy() if elements else None
        return x0, cond, OracleResult(tensors["valid"].numpy(), reasons, tensors["defined"].numpy(),
                                      tuple(extra.get("errors", ())), elements, exists)
    result = label(oracle, domain.decode(x0, cond), cond)
    labels = {"valid": result.valid, "defined": result.defined, **{f"reason_{k}": v for k, v in result.reasons.items()}}
    if result.elements:  # per-element flags, for per-element classifiers
        labels.update({f"element_{k}": v for k, v in result.elements.items()}, element_defined=result.element_defined)
    save_cache(cache, {"x0": x0, **{k: torch.from_numpy(v.copy()) for k, v in labels.items()}},
               {"errors": list(result.errors), "reasons": list(result.reasons),
                **({"elements": list(result.elements)} if result.elements else {})}, key)
    return x0, cond, result


def draw_cached(denoiser: Denoiser, domain: Domain, cfg: RunConfig, cond, n: int, seed: int, key: dict, *,
                cache: str | Path | None = None, resume: bool = False,
                progress: Callable[[int], None] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """``n`` samples of ``denoiser`` on ``cond`` as ``({"x0": ...} plus whatever was cached with them, extra)``.

    With ``resume``, what ``cache`` holds under ``key`` is returned as it is; otherwise the samples are drawn and
    written to ``cache`` at once (a later stage may add labels to the same file under the same key).
    """
    cached = load_cache(cache, key) if resume else None
    if cached is None:
        x0 = generate(denoiser, domain.sample_shape, n, cfg.sampler, cond, seed=seed, device=cfg.device,
                      callback=progress)
        cached = ({"x0": x0}, {})
        save_cache(cache, *cached, key)
    return cached
