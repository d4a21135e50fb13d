"""The Domain protocol and its registry.

A domain pairs data, networks, an oracle and pictures; the engine never imports one. Domains are found, in order,
in the in-process registry (``register_domain``), in the ``genneg.domains`` entry-point group (this package declares
its built-ins there; third-party packages add theirs), and as a module ``genneg.domains.<name>`` or a folder given with
``domain_path`` that exposes ``make_domain``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
from torch import Tensor, nn

from .config import RunConfig
from .oracle import Oracle, OracleResult

__all__ = ["Domain", "register_domain", "get_domain", "available_domains"]


@runtime_checkable
class Domain(Protocol):
    """What the engine needs from a domain. Samples ``x0`` are normalised tensors ``[B, ...]``."""

    name: str
    sigma_data: float

    def presets(self) -> dict[str, RunConfig]: ...

    def dataset(self, split: str) -> tuple[Tensor, Any]:
        """Normalised data ``x0 [N, ...]`` and its conditions (None when unconditional) for 'train'/'val'/'test'."""

    def conditions(self, n: int, split: str, seed: int) -> Any:
        """``n`` conditions to generate on (drawn from the split's data), deterministic by seed."""

    def sample_shape(self, cond: Any, n: int) -> tuple[int, ...]: ...

    def make_denoiser_net(self, cfg: dict) -> nn.Module:
        """Raw network ``F(x_in, c_noise, cond) -> [B, ...]`` (the engine adds EDM preconditioning)."""

    def make_classifier_net(self, cfg: dict) -> nn.Module:
        """Raw network ``f(x_in, c_noise, cond) -> logits [B]``."""

    def decode(self, x0: Tensor, cond: Any) -> Any:
        """Samples in physical units (numpy) for oracles, plots and exports."""

    def oracle(self, names: list[str] | None = None) -> Oracle: ...

    def plot(self, samples: Any, cond: Any, result: OracleResult | None, ax, title: str = "") -> None: ...

    # Optional, found with hasattr:
    #   prepare_data(*, workers, progress) -> Path       `genneg data`: generate and cache the preset's data
    #   penalty(x0, cond) -> Tensor [B]                   a differentiable distance to validity (penalty baseline)


_REGISTRY: dict[str, Callable[..., Domain]] = {}


def register_domain(name: str, factory: Callable[..., Domain] | None = None):
    """Registers a domain factory under ``name`` (usable as a decorator)."""

    def _register(f):
        _REGISTRY[name] = f
        return f

    return _register if factory is None else _register(factory)


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="genneg.domains")}


def available_domains() -> list[str]:
    return sorted(set(_REGISTRY) | set(_entry_points()))


def _load_path(path: str | Path) -> Callable[..., Domain]:
    path = Path(path)
    init = path / "__init__.py" if path.is_dir() else path
    if not init.is_file():
        raise FileNotFoundError(f"--domain-path {path} is neither a package folder nor a .py file")
    mod_name = f"genneg_local_domain_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "make_domain"):
        raise AttributeError(f"{init} defines no make_domain(**kwargs) function")
    return module.make_domain


def get_domain(name: str, *, domain_path: str | Path | None = None, **kwargs) -> Domain:
    """Builds the named domain; ``kwargs`` go to its factory (e.g. a data folder)."""
    if domain_path is not None:
        factory = _load_path(domain_path)
    elif name in _REGISTRY:
        factory = _REGISTRY[name]
    elif name in (eps := _entry_points()):
        try:
            factory = eps[name].load()
        except ModuleNotFoundError as e:
            raise missing_dependency(name, e) from e
    else:
        try:
            factory = importlib.import_module(f"genneg.domains.{name}").make_domain
        except ModuleNotFoundError as e:
            # another module is missing: the domain exists but a dependency is not installed
            if e.name not in (f"genneg.domains.{name}", "genneg.domains"):
                raise missing_dependency(name, e) from e
            raise KeyError(f"unknown domain {name!r}; available: {', '.join(available_domains()) or 'none'}") from None
    domain = factory(**kwargs)
    missing = missing_members(domain)
    if missing:
        raise TypeError(f"domain {name!r} does not implement the Domain protocol: missing {', '.join(missing)}")
    return domain


def _extras() -> list[str]:
    """The optional extras the installed genneg distribution declares (a built-in domain's extra bears its name)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return metadata("genneg").get_all("Provides-Extra") or []
    except PackageNotFoundError:
        return []


def missing_dependency(domain: str, error: ModuleNotFoundError) -> ModuleNotFoundError:
    """A ModuleNotFoundError that names the missing module and the extra (or package) that provides it."""
    hint = f"pip install 'genneg[{domain}]'" if domain in _extras() else "install the domain's dependencies"
    return ModuleNotFoundError(f"domain {domain!r} needs the module {error.name!r}, which is not installed: {hint}",
                               name=error.name)


_MEMBERS = ("name", "sigma_data", "presets", "dataset", "conditions", "sample_shape", "make_denoiser_net",
            "make_classifier_net", "decode", "oracle", "plot")


def missing_members(domain) -> list[str]:
    """Members of the Domain protocol that ``domain`` lacks, looked up on its class so that properties (which may
    load data) are not evaluated."""
    cls = type(domain)
    return [m for m in _MEMBERS if not (hasattr(cls, m) or m in getattr(domain, "__dict__", {}))]


def validate_x0(x0: Tensor, shape: tuple[int, ...], what: str = "x0") -> Tensor:
    """Checks a batch of normalised samples: shape ``[B, *shape]``, B > 0, float, finite."""
    if not isinstance(x0, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x0).__name__}")
    if x0.ndim != 1 + len(shape) or tuple(x0.shape[1:]) != tuple(shape):
        raise ValueError(f"{what} must have shape [B, {', '.join(map(str, shape))}], got {tuple(x0.shape)}")
    if x0.shape[0] == 0:
        raise ValueError(f"{what} is an empty batch")
    if not x0.is_floating_point():
        raise ValueError(f"{what} must be floating point, got {x0.dtype}")
    if not np.isfinite(x0.detach().cpu().numpy()).all():
        raise ValueError(f"{what} contains NaN or inf")
    return x0
