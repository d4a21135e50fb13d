"""Drawing samples from any denoiser on a domain's conditions, in bounded-memory batches.

``generate`` returns the samples as one tensor (rounds, evaluation). ``sample_to_disk`` streams any number of them to
disk batch by batch, labelled by the oracle, holding one batch at a time (``genneg sample``). Under ``torchrun`` both
split the batches across ranks (``genneg.distributed``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from . import distributed, rng
from .batch import batch_size_of, concat, take, to_device
from .config import SamplerConfig
from .diffusion import Denoiser, karras_sigmas
from .domain import Domain
from .oracle import Oracle
from .labelling import label
from .sampling import SAMPLERS
from .streaming import ArrayWriter

__all__ = ["generate", "timed_generate", "chunk_seed", "sample_chunks", "sample_to_disk"]


def chunk_seed(seed: int, index: int) -> int:
    """The seed of batch ``index`` when batches are drawn independently (split across ranks, or streamed)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _draw(denoiser, shape_fn, cond, m: int, cfg: SamplerConfig, sigmas: Tensor, gen, device) -> Tensor:
    """One batch: initial noise from ``gen`` (on the CPU, so results do not depend on the device), then the sampler."""
    extra = {"generator": gen} if cfg.kind == "stochastic" else {}
    x = rng.randn(shape_fn(cond, m), gen, device=device) * cfg.sigma_max
    return SAMPLERS[cfg.kind](denoiser, x, sigmas, cond, **extra)


def generate(
    denoiser: Denoiser,
    shape_fn: Callable[[Any, int], tuple[int, ...]],
    n: int,
    cfg: SamplerConfig,
    cond: Any = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: Callable[[int], None] | None = None,
) -> Tensor:
    """Samples ``n`` x0 with ``cfg``'s sampler, ``cfg.batch_size`` rows at a time; returns them on the CPU.

    Args:
        shape_fn: ``shape_fn(cond_batch, m) -> (m, ...)``, the domain's ``sample_shape``.
        cond: ``n`` conditions (batch-first) or None.
        seed: the initial noise and any sampler noise come from a generator seeded with it. Under ``torchrun`` each
            batch instead gets its own generator (``chunk_seed``), the batches are split across ranks and every rank
            gets all ``n`` rows back; the draw then depends on ``seed`` and ``cfg.batch_size``, not on the number
            of ranks.
        callback: called with the number of rows finished after each batch.
    """
    if n < 1:
        raise ValueError(f"need n >= 1 samples, got {n}")
    if cond is not None and batch_size_of(cond) != n:
        raise ValueError(f"got {batch_size_of(cond)} conditions for {n} samples")
    sigmas = karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)  # the samplers move it once
    if distributed.splitting():
        return _generate_split(denoiser, shape_fn, n, cfg, cond, sigmas, seed, device, callback)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for s in range(0, n, cfg.batch_size):
        m = min(cfg.batch_size, n - s)
        c = to_device(take(cond, slice(s, s + m)), device)
        out.append(_draw(denoiser, shape_fn, c, m, cfg, sigmas, gen, device).cpu())
        if callback:
            callback(m)
    return concat(out)


def _generate_split(denoiser, shape_fn, n, cfg, cond, sigmas, seed, device, callback) -> Tensor:
    parts, done = [], 0
    for index, s, m in _my_chunks(n, cfg.batch_size):
        gen = torch.Generator(device="cpu").manual_seed(chunk_seed(seed, index))
        c = to_device(take(cond, slice(s, s + m)), device)
        parts.append((index, _draw(denoiser, shape_fn, c, m, cfg, sigmas, gen, device).cpu()))
        done += m
        if callback:
            callback(m)
    out = concat(distributed.gather_chunks(parts))
    if callback and n > done:
        callback(n - done)  # the other ranks' rows, now here too
    return out


def _my_chunks(n: int, batch_size: int) -> list[tuple[int, int, int]]:
    """(batch index, first row, rows) of this rank's batches: batch i goes to rank i mod W."""
    starts = range(0, n, batch_size)
    return [(i, starts[i], min(batch_size, n - starts[i])) for i in distributed.shard_indices(len(starts))]


def timed_generate(*args, **kwargs) -> tuple[Tensor, float]:
    """``generate`` plus its wall time in seconds."""
    t0 = time.perf_counter()
    x = generate(*args, **kwargs)
    return x, time.perf_counter() - t0


def sample_chunks(denoiser: Denoiser, domain: Domain, n: int, cfg: SamplerConfig, *, split: str = "test", seed: int = 0,
                  device: str | torch.device = "cpu") -> Iterator[tuple[int, int, Tensor, Any]]:
    """Yields ``(batch index, first row, x0 [m, ...] on the CPU, cond of those rows)`` for this rank's batches.

    Batch i draws its ``m <= cfg.batch_size`` conditions (``domain.conditions(m, split, chunk_seed(seed, i))``) and
    its noise from its own seed, so nothing of size ``n`` is ever built and the rows do not depend on how the batches
    are spread over ranks.
    """
    if n < 1:
        raise ValueError(f"need n >= 1 samples, got {n}")
    sigmas = karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    for index, start, m in _my_chunks(n, cfg.batch_size):
        s = chunk_seed(seed, index)
        cond = domain.conditions(m, split, s)
        gen = torch.Generator(device="cpu").manual_seed(s)
        x0 = _draw(denoiser, domain.sample_shape, to_device(cond, device), m, cfg, sigmas, gen, device).cpu()
        yield index, start, x0, cond


def _labelled_arrays(domain: Domain, oracle: Oracle, x0: Tensor, cond) -> dict[str, np.ndarray]:
    """One batch as the named arrays ``genneg sample`` writes: decoded samples, verdicts, reasons."""
    samples = domain.decode(x0, cond)
    result = label(oracle, samples, cond)
    arrays = dict(samples) if isinstance(samples, dict) else {"samples": samples}
    arrays.update(valid=result.valid, defined=result.defined, **{f"reason_{k}": v for k, v in result.reasons.items()})
    return {k: np.asarray(v) for k, v in arrays.items()}


def sample_to_disk(denoiser: Denoiser, domain: Domain, n: int, cfg: SamplerConfig, out: str | Path, *, oracle: Oracle,
                   split: str = "test", seed: int = 0, device: str | torch.device = "cpu",
                   callback: Callable[[int], None] | None = None) -> dict:
    """Draws, decodes and labels ``n`` samples and streams them to ``out``, one batch in memory at a time.

    ``out`` ending in ``.npz`` gets one archive; any other path becomes a folder of ``.npy`` files (one per array,
    ``np.load(..., mmap_mode="r")`` reads them lazily). Arrays: the decoded samples (``samples``, or the domain's
    named arrays), ``valid``, ``defined`` and ``reason_<name>``. The result appears only once complete (written
    beside it, then renamed). Under ``torchrun`` ranks draw and label alternate batches and rank 0 writes.

    Returns:
        ``{"n", "invalid", "undefined", "path"}`` (on every rank).
    """
    writer = ArrayWriter(out, n) if distributed.is_main() else None
    counts = np.zeros(2, np.int64)  # invalid, undefined
    chunks = sample_chunks(denoiser, domain, n, cfg, split=split, seed=seed, device=device)
    rounds = math.ceil(math.ceil(n / cfg.batch_size) / distributed.world_size())  # batches per rank, at most
    try:
        for _ in range(rounds):
            mine = next(chunks, None)
            part = None
            if mine is not None:
                index, start, x0, cond = mine
                part = (index, start, _labelled_arrays(domain, oracle, x0, cond))
            for got in distributed.gather_objects(part) or ():
                if got is None:
                    continue
                _, start, arrays = got
                counts += [int((~arrays["valid"] & arrays["defined"]).sum()), int((~arrays["defined"]).sum())]
                if writer is not None:
                    writer.write(start, arrays)
                if callback:
                    callback(batch_size_of(arrays["valid"]))
        path = writer.close() if writer is not None else Path(out)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    distributed.barrier()
    return {"n": n, "invalid": int(counts[0]), "undefined": int(counts[1]), "path": str(path)}
