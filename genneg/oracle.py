"""Oracles: non-differentiable valid/invalid verdicts on decoded samples.

An oracle is any object with a ``name`` and ``__call__(samples, cond) -> OracleResult``. Samples are whatever a
domain's ``decode`` returns (a numpy array, or a dict / tuple of arrays whose first axis is the batch); the engine
never looks inside them except to slice along the batch axis.

``OracleResult.reasons`` maps a reason name to a boolean *infraction* flag per sample ("collision": True means the
sample collides). ``valid`` is the oracle's verdict. ``defined`` is False where the verdict could not be computed
(the oracle raised or timed out): such samples are excluded and counted, never silently valid.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from .batch import batch_size_of, take

__all__ = [
    "OracleOutputError",
    "OracleResult",
    "Oracle",
    "FunctionOracle",
    "AllOf",
    "all_of",
    "OnExecutor",
    "on_executor",
    "oracle",
    "register_oracle",
    "get_oracle",
    "available_oracles",
    "label",
]


class OracleOutputError(ValueError):
    """An oracle returned a malformed verdict (wrong shape, dtype or length): a bug in the oracle, never retried
    sample by sample or recorded as undefined."""


@dataclass(frozen=True)
class OracleResult:
    """Verdicts for a batch of B samples.

    Attributes:
        valid: bool [B], True where the sample passes every check (False where undefined).
        reasons: name -> bool [B], True where the sample commits that infraction.
        defined: bool [B], False where the oracle failed on the sample (excluded from rates).
        errors: a few messages of failures, for the report.
    """

    valid: np.ndarray
    reasons: Mapping[str, np.ndarray] = field(default_factory=dict)
    defined: np.ndarray | None = None
    errors: tuple[str, ...] = ()

    def __post_init__(self):
        valid = _as_flags(self.valid, "valid")
        n = valid.shape[0]
        reasons = {str(k): _as_flags(v, f"reasons[{k!r}]", n) for k, v in self.reasons.items()}
        defined = np.ones(n, bool) if self.defined is None else _as_flags(self.defined, "defined", n)
        object.__setattr__(self, "valid", valid & defined)
        object.__setattr__(self, "reasons", {k: v & defined for k, v in reasons.items()})
        object.__setattr__(self, "defined", defined)
        object.__setattr__(self, "errors", tuple(self.errors))

    def __len__(self) -> int:
        return int(self.valid.shape[0])

    @property
    def num_undefined(self) -> int:
        return int((~self.defined).sum())

    @staticmethod
    def concat(results: Sequence["OracleResult"]) -> "OracleResult":
        if not results:
            raise ValueError("cannot concatenate an empty list of OracleResults")
        names = list(results[0].reasons)
        for r in results[1:]:
            if list(r.reasons) != names:
                raise ValueError(f"OracleResults disagree on reasons: {names} vs {list(r.reasons)}")
        return OracleResult(
            valid=np.concatenate([r.valid for r in results]),
            reasons={k: np.concatenate([r.reasons[k] for r in results]) for k in names},
            defined=np.concatenate([r.defined for r in results]),
            errors=tuple(e for r in results for e in r.errors)[:20],
        )

    @staticmethod
    def undefined(n: int, reasons: Iterable[str], error: str = "") -> "OracleResult":
        z = np.zeros(n, bool)
        return OracleResult(z, {k: z for k in reasons}, defined=z, errors=(error,) if error else ())


def _as_flags(a, what: str, n: int | None = None) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 1:
        raise OracleOutputError(f"oracle {what} must be a 1-D boolean array of per-sample flags, got shape {a.shape}")
    if a.dtype != bool:
        if a.dtype.kind not in "biu" or not np.isin(a, (0, 1)).all():
            raise OracleOutputError(f"oracle {what} must be boolean, got dtype {a.dtype}")
        a = a.astype(bool)
    if n is not None and a.shape[0] != n:
        raise OracleOutputError(f"oracle {what} has {a.shape[0]} entries for a batch of {n} samples")
    return a


@runtime_checkable
class Oracle(Protocol):
    name: str

    def __call__(self, samples: Any, cond: Any = None) -> OracleResult: ...


class FunctionOracle:
    """Wraps ``fn(samples, cond) -> bool[B]`` (True = valid) as an Oracle with one reason, its name."""

    def __init__(self, name: str, fn: Callable[[Any, Any], Any], reasons: Sequence[str] | None = None):
        self.name = name
        self.fn = fn
        self.reason_names = tuple(reasons) if reasons else (name,)

    def __call__(self, samples, cond=None) -> OracleResult:
        out = self.fn(samples, cond)
        if isinstance(out, OracleResult):
            return out
        if isinstance(out, Mapping):  # several named infraction flags
            flags = {k: _as_flags(v, f"reasons[{k!r}] of oracle {self.name!r}") for k, v in out.items()}
            bad = np.zeros_like(next(iter(flags.values())))
            for v in flags.values():
                bad = bad | v
            return OracleResult(~bad, flags)
        valid = _as_flags(out, f"output of oracle {self.name!r}")
        return OracleResult(valid, {self.name: ~valid})

    def __repr__(self):
        return f"FunctionOracle({self.name!r})"


class AllOf:
    """Valid where every member oracle is valid; reasons are the union of the members' reasons."""

    def __init__(self, oracles: Sequence[Oracle], name: str | None = None):
        if not oracles:
            raise ValueError("all_of needs at least one oracle")
        self.oracles = tuple(oracles)
        self.name = name or "+".join(o.name for o in self.oracles)

    def __call__(self, samples, cond=None) -> OracleResult:
        results = [o(samples, cond) for o in self.oracles]
        n = len(results[0])
        valid, defined, reasons = np.ones(n, bool), np.ones(n, bool), {}
        for o, r in zip(self.oracles, results):
            if len(r) != n:
                raise OracleOutputError(f"oracle {o.name!r} returned {len(r)} verdicts for {n} samples")
            valid &= r.valid
            defined &= r.defined
            for k, v in r.reasons.items():
                reasons[k] = reasons[k] | v if k in reasons else v
        return OracleResult(valid, reasons, defined, tuple(e for r in results for e in r.errors))


def all_of(*oracles: Oracle, name: str | None = None) -> AllOf:
    return AllOf(oracles, name=name)


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


# ---------------------------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[[], Oracle]] = {}


def register_oracle(name: str, factory: Callable[[], Oracle] | None = None, *, overwrite: bool = False):
    """Registers an oracle factory under ``name`` (usable as a decorator). Factories take no arguments."""

    def _register(f):
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"an oracle named {name!r} is already registered")
        _REGISTRY[name] = f
        return f

    return _register if factory is None else _register(factory)


def oracle(name: str, *, domain: str | None = None, reasons: Sequence[str] | None = None):
    """Decorator: turns ``fn(samples, cond) -> bool[B]`` into a registered FunctionOracle.

    ``domain`` namespaces the registration as ``"domain:name"`` so a domain can look up its own oracles.
    """

    def _wrap(fn):
        key = f"{domain}:{name}" if domain else name
        register_oracle(key, lambda: FunctionOracle(name, fn, reasons), overwrite=True)
        return fn

    return _wrap


def _load_entry_points():
    from importlib.metadata import entry_points

    for ep in entry_points(group="genneg.oracles"):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = _entry_point_factory(ep.name, ep.load())


def _entry_point_factory(name: str, obj) -> Callable[[], Oracle]:
    """What a ``genneg.oracles`` entry point may name: an Oracle object, a no-argument factory returning one, or a
    plain oracle function ``fn(samples, cond) -> bool[B]`` (e.g. one decorated with ``@oracle``), wrapped here."""
    import inspect

    if hasattr(obj, "reason_names") and callable(obj):
        return lambda: obj
    if not callable(obj):
        raise TypeError(f"entry point {name!r} of group genneg.oracles names {obj!r}, which is not callable")
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: treat as a factory
        return obj
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not required:
        return obj
    return lambda: FunctionOracle(name, obj)


def available_oracles() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get_oracle(name: str, domain: str | None = None) -> Oracle:
    _load_entry_points()
    for key in ([f"{domain}:{name}"] if domain else []) + [name]:
        if key in _REGISTRY:
            return _REGISTRY[key]()
    known = ", ".join(available_oracles()) or "none"
    raise KeyError(f"unknown oracle {name!r}{f' for domain {domain!r}' if domain else ''}; registered: {known}")


# ---------------------------------------------------------------------------------------------------------- labelling


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
        fixed.append(OracleResult(r.valid, {k: r.reasons.get(k, z) for k in keys}, r.defined, r.errors))
    return OracleResult.concat(fixed)
