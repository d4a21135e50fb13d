"""Labelling samples with an oracle: in batches, optionally on any ``concurrent.futures.Executor`` (a process pool,
a Dask client's executor) with a per-sample time budget.

A batch whose call fails or times out is re-run one sample per call, so only the offending samples become
*undefined* (``OracleResult.defined`` False): they are excluded from every rate and counted. Calls that hang are
given up, so ``label`` always returns.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from typing import Callable, Sequence

import numpy as np

from .batch import batch_size_of, take
from .oracle import AllOf, Oracle, OracleOutputError, OracleResult

__all__ = ["label", "OnExecutor", "on_executor"]


class OnExecutor:
    """An oracle whose calls run on an executor with a per-sample timeout (``label``'s semantics).

    Return one from a domain's ``oracle()`` so every labelling of a run (rounds and evaluation) goes to the
    executor; samples whose call fails or times out are undefined and counted in the report.
    """

    def __init__(self, oracle: Oracle, executor: cf.Executor, *, timeout: float | None = None,
                 per_sample: bool = False, batch_size: int = 64):
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds per sample, got {timeout}")
        self.inner, self.executor = oracle, executor
        self.timeout, self.per_sample, self.batch_size = timeout, per_sample, batch_size
        self.name = oracle.name

    @property
    def reason_names(self) -> tuple[str, ...]:
        return tuple(_probe_reasons(self.inner, None, None))

    def __call__(self, samples, cond=None) -> OracleResult:
        return label(self.inner, samples, cond, batch_size=self.batch_size, executor=self.executor,
                     timeout=self.timeout, per_sample=self.per_sample)

    def __repr__(self):
        return f"OnExecutor({self.inner!r}, timeout={self.timeout}, per_sample={self.per_sample})"


def on_executor(oracle: Oracle, executor: cf.Executor, *, timeout: float | None = None, per_sample: bool = False,
                batch_size: int = 64) -> OnExecutor:
    """``oracle`` labelled on ``executor`` with ``timeout`` seconds per sample (see ``label``)."""
    return OnExecutor(oracle, executor, timeout=timeout, per_sample=per_sample, batch_size=batch_size)


def _safe_call(oracle: Oracle, samples, cond, n: int, names: Sequence[str]) -> OracleResult:
    """Calls the oracle on a batch; if it raises, retries sample by sample and marks failures undefined."""
    try:
        r = oracle(samples, cond)
        if len(r) != n:
            raise OracleOutputError(f"oracle {oracle.name!r} returned {len(r)} verdicts for {n} samples")
        return r
    except OracleOutputError:  # a malformed result is a bug in the oracle, not a property of one sample
        raise
    except Exception as e:  # noqa: BLE001 - any failure of user code is recorded, never fatal
        first = e
    if n == 1:
        return OracleResult.undefined(1, names, f"{type(first).__name__}: {first}")
    return OracleResult.concat([_safe_call(oracle, take(samples, [i]), take(cond, [i]), 1, names) for i in range(n)])


def _probe_reasons(oracle: Oracle, samples, cond) -> list[str]:
    names = getattr(oracle, "reason_names", None)
    if names:
        return list(names)
    if isinstance(oracle, AllOf):
        return [k for o in oracle.oracles for k in _probe_reasons(o, samples, cond)]
    return [oracle.name]


def label(
    oracle: Oracle,
    samples,
    cond=None,
    *,
    batch_size: int = 4096,
    executor: cf.Executor | None = None,
    timeout: float | None = None,
    per_sample: bool = False,
    callback: Callable[[int], None] | None = None,
) -> OracleResult:
    """Labels samples in batches, optionally in parallel on any ``concurrent.futures.Executor``.

    A sample whose verdict cannot be computed comes back undefined (``defined=False``, never valid) with a message
    in ``errors``; callers exclude and count it. What makes a sample undefined:

    - The oracle raises on a batch: the batch is retried one sample at a time (in the same worker) and only the
      samples that still raise are undefined.
    - ``timeout`` (seconds per sample, executor only) runs out: a batch of m samples may run for ``m * timeout``
      seconds, counted from when the executor reports its future running. A batch that times out, or whose
      future fails (a worker died), is re-submitted one sample per future with ``timeout`` each, so only the
      samples that are slow or fatal on their own are undefined. ``per_sample=True`` submits one future per sample
      from the start: use it for oracles that may hang, so no hanging call runs twice.
    - A timed-out call cannot be interrupted: it keeps its worker until it returns and its verdict is discarded.
      Calls that cannot start because such calls hold the workers wait for them, but are given up (undefined)
      once nothing has started or finished for ``STALL_FACTOR`` (10) times the largest call budget, so ``label``
      returns even when the oracle hangs for good.

    A malformed verdict (``OracleOutputError``: wrong shape or dtype) is a bug in the oracle and is raised.

    Args:
        batch_size: samples per oracle call (per future with an executor).
        executor: runs the calls (threads, processes, a Dask client); None runs them here, one after another.
        timeout: seconds allowed per sample; needs an executor (a call in this thread cannot be interrupted).
        per_sample: one future per sample instead of one per batch (executor only).
        callback: called with the number of samples finished after every batch (for progress bars).
    """
    n = batch_size_of(samples)
    if n == 0:
        raise ValueError("cannot label an empty batch of samples")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if executor is None and (timeout is not None or per_sample):
        raise ValueError("timeout and per_sample need an executor: a call in this thread cannot be interrupted")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds per sample, got {timeout}")
    names = _probe_reasons(oracle, samples, cond)
    step = 1 if per_sample else batch_size
    chunks = [(take(samples, slice(s, s + step)), take(cond, slice(s, s + step)), min(step, n - s))
              for s in range(0, n, step)]
    if executor is None:
        results = []
        for xs, cs, m in chunks:
            results.append(_safe_call(oracle, xs, cs, m, names))
            if callback:
                callback(m)
        return _align_reasons(results, names)
    results = _label_on(executor, oracle, chunks, names, timeout, callback, retry=not per_sample, stuck=[])
    return _align_reasons(results, names)


_TIMED_OUT, _STALLED = "timed out", "stalled"
STALL_FACTOR = 10  # calls waiting behind timed-out calls are given up after this many call budgets without progress


def _label_on(executor, oracle, chunks, names, timeout, callback, *, retry: bool, stuck: list) -> list[OracleResult]:
    """One future per chunk; failed or timed-out chunks are re-run one sample per future when ``retry``.
    ``stuck`` collects the futures that timed out (they may still hold workers)."""
    futures = [_submit(executor, oracle, xs, cs, m, names) for xs, cs, m in chunks]
    outcomes = _await(futures, [None if timeout is None else timeout * m for _, _, m in chunks], stuck)
    results: list[OracleResult | None] = [None] * len(chunks)
    for i, ((_, _, m), outcome) in enumerate(zip(chunks, outcomes)):
        if isinstance(outcome, OracleResult):
            results[i] = outcome
        elif not retry or m == 1:
            results[i] = OracleResult.undefined(m, names, _why(outcome, timeout))
        if results[i] is not None and callback:
            callback(m)
    failed = [i for i, r in enumerate(results) if r is None]
    if failed:  # re-run the failed batches sample by sample, each sample with the per-sample timeout
        singles = [(take(chunks[i][0], [j]), take(chunks[i][1], [j]), 1) for i in failed for j in range(chunks[i][2])]
        again = iter(_label_on(executor, oracle, singles, names, timeout, None, retry=False, stuck=stuck))
        for i in failed:
            results[i] = OracleResult.concat([next(again) for _ in range(chunks[i][2])])
            if callback:
                callback(chunks[i][2])
    return results


def _submit(executor, oracle, xs, cs, m, names) -> cf.Future:
    try:
        return executor.submit(_safe_call, oracle, xs, cs, m, names)
    except Exception as e:  # noqa: BLE001 - a broken or shut-down executor leaves these samples undefined
        failed: cf.Future = cf.Future()
        failed.set_exception(e)
        return failed


def _await(futures: list[cf.Future], budgets: list[float | None], stuck: list[cf.Future]) -> list:
    """Waits for every future; returns per future its OracleResult, its exception, ``_TIMED_OUT`` or ``_STALLED``.

    A future's budget counts from when it is first seen running. Futures that never start because timed-out calls
    still hold the workers are ``_STALLED`` once nothing has started or finished for ``STALL_FACTOR`` budgets.
    """
    outcomes: list = [None] * len(futures)
    pending = set(range(len(futures)))
    started: dict[int, float] = {}
    longest = max((b for b in budgets if b is not None), default=None)
    patience = None if longest is None else STALL_FACTOR * longest
    poll = None if longest is None else min(max(longest / 20, 0.005), 0.5)  # timeouts overshoot by <= 5 %
    last_progress = time.monotonic()
    while pending:
        cf.wait([futures[i] for i in pending], timeout=poll, return_when=cf.FIRST_COMPLETED)
        now = time.monotonic()
        for i in sorted(pending):
            fut = futures[i]
            if fut.done():
                outcomes[i] = _outcome(fut)
            elif budgets[i] is not None and (fut.running() or i in started):
                if i not in started:
                    started[i], last_progress = now, now
                if now - started[i] <= budgets[i]:
                    continue
                fut.cancel()
                stuck.append(fut)
                outcomes[i] = _TIMED_OUT
            else:
                continue
            pending.discard(i)
            last_progress = now
        blocked = pending and not any(i in started for i in pending) and any(not f.done() for f in stuck)
        if blocked and now - last_progress > patience:
            for i in pending:
                futures[i].cancel()
                outcomes[i] = _STALLED
            pending.clear()
    return outcomes


def _outcome(fut: cf.Future):
    if fut.cancelled():
        return cf.CancelledError("the oracle call was cancelled")
    e = fut.exception()
    if isinstance(e, OracleOutputError):
        raise e
    return fut.result() if e is None else e


def _why(outcome, timeout: float | None) -> str:
    if outcome == _TIMED_OUT:
        return f"oracle timed out after {timeout} s per sample"
    if outcome == _STALLED:
        return "oracle not run: every worker was held by a timed-out oracle call"
    return f"{type(outcome).__name__}: {outcome}"


def _align_reasons(results: list[OracleResult], names: Sequence[str]) -> OracleResult:
    # Undefined chunks carry the probed reason names; defined ones may report more (e.g. composite oracles).
    keys = list(dict.fromkeys([k for r in results for k in r.reasons] or list(names)))
    fixed = []
    for r in results:
        z = np.zeros(len(r), bool)
        fixed.append(OracleResult(r.valid, {k: r.reasons.get(k, z) for k in keys}, r.defined, r.errors, r.elements,
                                  r.element_defined))
    return OracleResult.concat(fixed)
