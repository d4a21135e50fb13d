"""Samples written in a domain's own export format (``genneg sample --out FILE.json``), with the oracle's verdicts.

A domain opts in with a method ``export(samples, cond, result, path)`` (decoded samples, their conditions and the
``OracleResult`` with a verdict per sample and per reason) and, optionally, ``export_suffixes`` (the file suffixes
it writes; default ``(".json",)``). Any other ``--out`` goes to ``genneg.generate.sample_to_disk``, which streams.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from . import distributed
from .batch import concat
from .config import SamplerConfig
from .domain import Domain
from .generate import sample_chunks
from .oracle import Oracle, OracleResult
from .labelling import label

__all__ = ["export_suffixes", "exports", "export_samples"]


def export_suffixes(domain: Domain) -> tuple[str, ...]:
    """The suffixes ``domain.export`` writes; empty when the domain has no ``export``."""
    if not callable(getattr(domain, "export", None)):
        return ()
    return tuple(getattr(domain, "export_suffixes", (".json",)))


def exports(domain: Domain, out: str | Path) -> bool:
    """Whether ``out`` is written by the domain's ``export`` (its suffix is one the domain handles)."""
    return Path(out).suffix.lower() in export_suffixes(domain)


def export_samples(denoiser, domain: Domain, n: int, cfg: SamplerConfig, out: str | Path, *, oracle: Oracle,
                   split: str = "test", seed: int = 0, device="cpu",
                   callback: Callable[[int], None] | None = None) -> dict:
    """Draws, decodes and labels ``n`` samples batch by batch (the rows equal ``sample_to_disk``'s for the same
    seed and batch size), then writes them once through ``domain.export``: the decoded samples are held in memory
    (the draw is not). The file appears only once complete.

    Returns:
        ``{"n", "invalid", "undefined", "path"}`` (on every rank).
    """
    if not exports(domain, out):
        raise ValueError(f"domain {domain.name!r} does not export {Path(out).suffix!r} files (it exports "
                         f"{list(export_suffixes(domain)) or 'nothing'})")
    parts = []
    for _, start, x0, cond in sample_chunks(denoiser, domain, n, cfg, split=split, seed=seed, device=device):
        samples = domain.decode(x0, cond)
        parts.append((start, samples, cond, label(oracle, samples, cond)))
        if callback:
            callback(x0.shape[0])
    gathered = distributed.gather_objects(parts)
    out = Path(out)
    counts = np.zeros(2, np.int64)
    if gathered is not None:
        parts = sorted((p for rank in gathered for p in rank), key=lambda p: p[0])
        result = _concat_results([p[3] for p in parts])
        counts[:] = [int((~result.valid & result.defined).sum()), result.num_undefined]
        _write(domain, concat([p[1] for p in parts]), concat([p[2] for p in parts]), result, out)
    counts = distributed.broadcast_object(counts)
    return {"n": n, "invalid": int(counts[0]), "undefined": int(counts[1]), "path": str(out)}


def _concat_results(results: list[OracleResult]) -> OracleResult:
    return OracleResult(np.concatenate([r.valid for r in results]),
                        {k: np.concatenate([r.reasons[k] for r in results]) for k in results[0].reasons},
                        np.concatenate([r.defined for r in results]),
                        tuple(e for r in results for e in r.errors)[:10])


def _write(domain: Domain, samples, cond, result: OracleResult, out: Path) -> None:
    """``domain.export`` into a temporary name with ``out``'s suffix, then renamed: never half a file at ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        domain.export(samples, cond, result, tmp)
        if not tmp.is_file():
            raise ValueError(f"domain {domain.name!r}: export(..., {tmp}) wrote no file at that path")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
