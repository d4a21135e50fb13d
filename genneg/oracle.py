"""Oracles: non-differentiable valid/invalid verdicts on decoded samples.

An oracle is any object with a ``name`` and ``__call__(samples, cond) -> OracleResult``. Samples are whatever a
domain's ``decode`` returns (a numpy array, or a dict / tuple of arrays whose first axis is the batch); the engine
never looks inside them except to slice along the batch axis.

``OracleResult.reasons`` maps a reason name to a boolean *infraction* flag per sample ("collision": True means the
sample collides). ``valid`` is the oracle's verdict. ``defined`` is False where the verdict could not be computed
(the oracle raised or timed out): such samples are excluded and counted, never silently valid. An oracle may also
give per-element flags (``OracleResult.elements``: per vehicle of a scene, per frame of a motion), from which
per-element classifiers learn (docs/method.md, "One classifier per reason").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

__all__ = [
    "OracleOutputError",
    "OracleResult",
    "Oracle",
    "FunctionOracle",
    "AllOf",
    "all_of",
    "register_oracle",
    "get_oracle",
    "available_oracles",
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
        elements: optional per-element flags, reason -> bool [B, E] (E elements per sample, e.g. the vehicles of
            a scene), True where the element commits that infraction. A reason given here must be given in
            ``reasons`` too, flagged exactly on the samples where some defined element is flagged.
        element_defined: bool [B, E], False for elements that do not exist (padded vehicle slots) and on undefined
            samples; None: every element of a defined sample exists.
    """

    valid: np.ndarray
    reasons: Mapping[str, np.ndarray] = field(default_factory=dict)
    defined: np.ndarray | None = None
    errors: tuple[str, ...] = ()
    elements: Mapping[str, np.ndarray] = field(default_factory=dict)
    element_defined: np.ndarray | None = None

    def __post_init__(self):
        valid = _as_flags(self.valid, "valid")
        n = valid.shape[0]
        reasons = {str(k): _as_flags(v, f"reasons[{k!r}]", n) for k, v in self.reasons.items()}
        defined = np.ones(n, bool) if self.defined is None else _as_flags(self.defined, "defined", n)
        object.__setattr__(self, "valid", valid & defined)
        object.__setattr__(self, "reasons", {k: v & defined for k, v in reasons.items()})
        object.__setattr__(self, "defined", defined)
        object.__setattr__(self, "errors", tuple(self.errors))
        elements, exists = _element_flags(self.elements, self.element_defined, defined)
        for k, v in elements.items():
            if k not in self.reasons or not np.array_equal(self.reasons[k], v.any(axis=1)):
                raise OracleOutputError(f"oracle element flags of {k!r} disagree with its per-sample flags (a sample "
                                        "commits a reason exactly when one of its defined elements does)")
        object.__setattr__(self, "elements", elements)
        object.__setattr__(self, "element_defined", exists)

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
            **_concat_elements(results),
        )

    def take(self, index) -> "OracleResult":
        """The verdicts of the samples at ``index`` (an integer array or a boolean mask)."""
        exists = None if self.element_defined is None else self.element_defined[index]
        return OracleResult(self.valid[index], {k: v[index] for k, v in self.reasons.items()}, self.defined[index],
                            self.errors, {k: v[index] for k, v in self.elements.items()}, exists)

    @staticmethod
    def undefined(n: int, reasons: Iterable[str], error: str = "") -> "OracleResult":
        z = np.zeros(n, bool)
        return OracleResult(z, {k: z for k in reasons}, defined=z, errors=(error,) if error else ())


def _element_flags(elements: Mapping, exists, defined: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Validated per-element flags ``{reason: bool [B, E]}`` and existence mask ``[B, E]`` (None without elements);
    flags are cleared where an element does not exist or its sample is undefined."""
    if not elements:
        if exists is not None:
            raise OracleOutputError("oracle element_defined given without element flags")
        return {}, None
    flags = {str(k): _as_flags(v, f"elements[{k!r}]", len(defined), ndim=2) for k, v in elements.items()}
    shape = next(iter(flags.values())).shape
    mask = np.ones(shape, bool) if exists is None else _as_flags(exists, "element_defined", len(defined), ndim=2)
    for k, v in flags.items():
        if v.shape != shape or mask.shape != shape:
            raise OracleOutputError(f"oracle elements[{k!r}] has shape {v.shape}; every element flag and "
                                    f"element_defined must share one shape, here {mask.shape}")
    mask = mask & defined[:, None]
    return {k: v & mask for k, v in flags.items()}, mask


def _concat_elements(results: Sequence[OracleResult]) -> dict:
    """The element fields of concatenated results; results without them (e.g. undefined chunks) get elements that
    do not exist."""
    shaped = [r for r in results if r.elements]
    if not shaped:
        return {}
    names, width = list(shaped[0].elements), shaped[0].element_defined.shape[1]
    for r in shaped[1:]:
        if list(r.elements) != names or r.element_defined.shape[1] != width:
            raise ValueError(f"OracleResults disagree on elements: {names} x {width} vs {list(r.elements)} x "
                             f"{r.element_defined.shape[1]}")
    absent = lambda r: np.zeros((len(r), width), bool)  # noqa: E731
    return {"elements": {k: np.concatenate([r.elements[k] if r.elements else absent(r) for r in results])
                         for k in names},
            "element_defined": np.concatenate([r.element_defined if r.elements else absent(r) for r in results])}


def _as_flags(a, what: str, n: int | None = None, ndim: int = 1) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != ndim:
        kind = "a 1-D boolean array of per-sample flags" if ndim == 1 else "a [B, E] boolean array of per-element flags"
        raise OracleOutputError(f"oracle {what} must be {kind}, got shape {a.shape}")
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
        return OracleResult(valid, reasons, defined, tuple(e for r in results for e in r.errors),
                            **_merge_elements(results, reasons, defined))


def _merge_elements(results: Sequence[OracleResult], reasons: dict, defined: np.ndarray) -> dict:
    """The members' element flags, kept for each reason whose merged per-sample flags they still explain (a reason
    reported by two members, only one with elements, loses its elements). Members must share one element axis."""
    shaped = [r for r in results if r.elements]
    if not shaped:
        return {}
    exists = shaped[0].element_defined & defined[:, None]
    if any(r.element_defined.shape != exists.shape for r in shaped):
        raise OracleOutputError("members of all_of report elements of different shapes")
    flags = {k: v & exists for r in shaped for k, v in r.elements.items()}
    flags = {k: v for k, v in flags.items() if np.array_equal(reasons[k] & defined, v.any(axis=1))}
    return {"elements": flags, "element_defined": exists} if flags else {}


def all_of(*oracles: Oracle, name: str | None = None) -> AllOf:
    return AllOf(oracles, name=name)


# ---------------------------------------------------------------------------------------------------------- registry
# One way in: a factory of no arguments that returns an Oracle, under a name ("domain:rule" for a rule of one
# domain). In the process, ``register_oracle`` (a call or a decorator); from an installed package, an entry point of
# the group ``genneg.oracles`` that names the factory, imported only when its name is looked up.

ENTRY_POINT_GROUP = "genneg.oracles"
_REGISTRY: dict[str, Callable[[], Oracle]] = {}


def register_oracle(name: str, factory: Callable[[], Oracle] | None = None, *, overwrite: bool = False):
    """Registers ``factory`` (no arguments -> an Oracle) under ``name``; without ``factory``, decorates one.

    Args:
        name: ``"domain:rule"`` for a rule of one domain, which its ``oracle(names)`` then finds by ``rule``.
        overwrite: replace the factory already registered under ``name`` (a module imported again, a notebook
            cell run again).

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is False.
    """

    def _register(f):
        if not callable(f):
            raise TypeError(f"oracle {name!r}: register a factory of no arguments that returns an Oracle, got {f!r}")
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"an oracle named {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = f
        return f

    return _register if factory is None else _register(factory)


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_oracles() -> list[str]:
    """Registered names and the names the ``genneg.oracles`` entry points declare (none of them is imported)."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def _factory(key: str) -> Callable[[], Oracle] | None:
    """The factory registered under ``key``; else the one its entry point names, imported now and registered."""
    if key not in _REGISTRY:
        ep = _entry_points().get(key)
        if ep is None:
            return None
        register_oracle(key, ep.load())
    return _REGISTRY[key]


def get_oracle(name: str, domain: str | None = None) -> Oracle:
    """A new Oracle from the factory registered as ``"domain:name"`` (with ``domain``), else as ``name``.

    Raises:
        KeyError: no factory has either name.
        TypeError: the factory takes arguments or returns no Oracle.
    """
    for key in ([f"{domain}:{name}"] if domain else []) + [name]:
        factory = _factory(key)
        if factory is None:
            continue
        try:
            made = factory()
        except TypeError as e:
            raise TypeError(f"oracle {key!r}: its factory must take no arguments and return an Oracle ({e})") from e
        if not isinstance(made, Oracle):
            raise TypeError(f"oracle {key!r}: its factory returned {type(made).__name__}, not an Oracle "
                            "(a name and __call__(samples, cond) -> OracleResult)")
        return made
    known = ", ".join(available_oracles()) or "none"
    raise KeyError(f"unknown oracle {name!r}{f' for domain {domain!r}' if domain else ''}; registered: {known}")
