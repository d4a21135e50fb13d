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
            _REGISTRY[ep.name] = ep.load()


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
    callback: Callable[[int], None] | None = None,
) -> OracleResult:
    """Labels samples in batches, optionally in parallel on any ``concurrent.futures.Executor``.

    A batch whose oracle raises is retried per sample; samples that still fail, or batches that exceed
    ``timeout`` seconds (executor only), come back undefined (``defined=False``) and are counted by the caller.

    Args:
        callback: called with the number of samples finished after every batch (for progress bars).
    """
    n = batch_size_of(samples)
    if n == 0:
        raise ValueError("cannot label an empty batch of samples")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = list(range(0, n, batch_size))
    names = _probe_reasons(oracle, samples, cond)
    chunks = [(take(samples, slice(s, s + batch_size)), take(cond, slice(s, s + batch_size))) for s in starts]
    sizes = [min(batch_size, n - s) for s in starts]
    results: list[OracleResult] = []
    if executor is None:
        for (xs, cs), m in zip(chunks, sizes):
            results.append(_safe_call(oracle, xs, cs, m, names))
            if callback:
                callback(m)
    else:
        futures = [executor.submit(_safe_call, oracle, xs, cs, m, names) for (xs, cs), m in zip(chunks, sizes)]
        for fut, m in zip(futures, sizes):
            try:
                results.append(fut.result(timeout=timeout))
            except cf.TimeoutError:
                fut.cancel()
                results.append(OracleResult.undefined(m, names, f"oracle timed out after {timeout} s"))
            except Exception as e:  # noqa: BLE001 - a worker that died is recorded like a failing oracle
                results.append(OracleResult.undefined(m, names, f"{type(e).__name__}: {e}"))
            if callback:
                callback(m)
    return _align_reasons(results, names)


def _align_reasons(results: list[OracleResult], names: Sequence[str]) -> OracleResult:
    # Undefined chunks carry the probed reason names; defined ones may report more (e.g. composite oracles).
    keys = list(dict.fromkeys([k for r in results for k in r.reasons] or list(names)))
    fixed = []
    for r in results:
        z = np.zeros(len(r), bool)
        fixed.append(OracleResult(r.valid, {k: r.reasons.get(k, z) for k in keys}, r.defined, r.errors))
    return OracleResult.concat(fixed)
