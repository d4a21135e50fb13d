"""Scale-out on existing engines: ``torchrun`` (DDP) for training and sampling, any ``concurrent.futures.Executor``
(a process pool, or a Dask cluster) for oracle labelling and data generation.

Under ``torchrun`` the environment names the rank and the world size; :func:`init` joins the process group (gloo on
CPU, NCCL on CUDA). In a single process the world size is 1 and every helper here is a no-op, so library code
calls them unconditionally. The rules the engine follows:

- training: every rank holds the same model (DDP all-reduces gradients), draws its batches from its own shard of the
  data, and rank 0 alone writes checkpoints and weights (:func:`is_main`);
- sampling: ranks draw disjoint batches and gather them (``genneg.generate``), unless inside :func:`local`;
- logs, progress bars and prints: rank 0 only.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import multiprocessing as mp
import os
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .oracle import Oracle

__all__ = [
    "init",
    "shutdown",
    "is_distributed",
    "rank",
    "world_size",
    "is_main",
    "barrier",
    "all_reduce_sum",
    "all_gather_objects",
    "gather_objects",
    "broadcast_object",
    "local",
    "splitting",
    "rank_seed",
    "shard_indices",
    "executor",
    "executor_width",
    "labelling_oracle",
    "gather_chunks",
]

_LOCAL = contextvars.ContextVar("genneg_local", default=False)


def init(device: str = "cpu") -> str:
    """Joins the ``torchrun`` process group when ``WORLD_SIZE`` > 1; returns this rank's device.

    ``device`` is "cpu" or "cuda"; on CUDA each rank takes the GPU ``LOCAL_RANK`` and the NCCL backend, on CPU the
    gloo backend. Outside ``torchrun`` (no ``WORLD_SIZE``, or 1) nothing happens and ``device`` comes back as is.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run without torchrun")
    backend = "gloo"
    if str(device).startswith("cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) here; "
                               "start at most one process per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(local_rank)
        device, backend = f"cuda:{local_rank}", "nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return device


def shutdown() -> None:
    """Leaves the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True in a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files, logs and draws progress bars."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over ranks (a new tensor; ``t`` itself when there is one rank)."""
    if not is_distributed():
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (pickled; for arrays of moderate size)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_objects(obj: Any) -> list | None:
    """``[obj of rank 0, obj of rank 1, ...]`` on rank 0, None on the other ranks."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def local() -> Iterator[None]:
    """Inside, each rank computes everything itself (no split, no gather): for work that only some ranks do."""
    token = _LOCAL.set(True)
    try:
        yield
    finally:
        _LOCAL.reset(token)


def splitting() -> bool:
    """Whether sampling is split across ranks here: in a process group and not inside :func:`local`."""
    return is_distributed() and not _LOCAL.get()


def rank_seed(seed: int) -> int:
    """``seed`` in a single process; a distinct seed per rank (derived from it and the world size) under torchrun."""
    if not is_distributed():
        return seed
    return int(np.random.SeedSequence([seed, rank(), world_size()]).generate_state(1)[0])


def shard_indices(n: int) -> range:
    """This rank's rows of ``n`` (rank r takes r, r + W, ...): every row belongs to exactly one rank."""
    return range(rank(), n, world_size())


def gather_chunks(parts: Sequence[tuple[int, Any]]) -> list:
    """Every rank's ``(chunk index, batch)`` pairs, merged in chunk order, on every rank."""
    merged = [p for ranks in all_gather_objects(list(parts)) for p in ranks]
    return [b for _, b in sorted(merged, key=lambda p: p[0])]


# ---------------------------------------------------------------------------------------------------------- executors


@contextmanager
def executor(workers: int = 1, dask_scheduler: str | None = None, *,
             connect_timeout: float = 30.0) -> Iterator[cf.Executor | None]:
    """The executor that labelling and data generation run on.

    Args:
        workers: processes of a local pool (spawned); 1 or less runs everything in this process (yields None).
        dask_scheduler: address of a running Dask scheduler ("tcp://host:8786"); its cluster's workers run the jobs
            instead (``workers`` is then ignored). Needs ``pip install 'genneg[dask]'``; the workers must be able
            to import genneg and the domain's oracles.
        connect_timeout: seconds to wait for the scheduler before giving up with a ValueError.
    """
    if dask_scheduler:
        try:
            from distributed import Client
        except ImportError as e:
            raise ImportError("--dask-scheduler needs dask.distributed: pip install 'genneg[dask]'") from e
        try:
            client = Client(dask_scheduler, timeout=f"{connect_timeout}s")
        except OSError as e:
            raise ValueError(f"cannot reach the Dask scheduler at {dask_scheduler!r} ({e})") from None
        try:
            yield client.get_executor(pure=False)
        finally:
            client.close()
    elif workers > 1:
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            yield pool
    else:
        yield None


def executor_width(ex: cf.Executor | None) -> int:
    """How many jobs ``ex`` runs at once (processes of a pool, threads of a Dask cluster), 1 for None."""
    if ex is None:
        return 1
    if hasattr(ex, "_max_workers"):
        return max(1, int(ex._max_workers))
    client = getattr(ex, "_client", None)
    if client is not None:
        info = client.scheduler_info()
        return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))
    return 1


def labelling_oracle(oracle: Oracle, ex: cf.Executor | None) -> Oracle:
    """``oracle`` itself when ``ex`` is None, else the same oracle with its batches run on ``ex``
    (``genneg.labelling.on_executor``), cut so that every worker gets a few batches of a typical call."""
    if ex is None:
        return oracle
    from .labelling import on_executor

    return on_executor(oracle, ex, batch_size=max(64, 4096 // (2 * executor_width(ex))))
