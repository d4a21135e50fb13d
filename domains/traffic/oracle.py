"""The traffic domain's oracle: decoded samples carry scene ids; the drivable area is looked up per scene.

``cond`` stays a dict of tensors (the engine slices it), so no Shapely geometry travels with a batch: decoded
samples are ``{"boxes" [B, N, 5], "defined" [B, N], "scene" [B]}`` and ``MapOracle`` adds each scene's
drivable-area crop from the domain's table before calling the inner oracle (any oracle of
``genneg.oracles.traffic``, or a composition of registered ones).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from genneg.oracle import AllOf, Oracle, OracleResult

__all__ = ["MapOracle", "reason_names"]


def reason_names(oracle: Oracle) -> tuple[str, ...]:
    """The reasons an oracle reports (composed oracles: the union, in order)."""
    if isinstance(oracle, AllOf):
        return tuple(dict.fromkeys(r for o in oracle.oracles for r in reason_names(o)))
    return tuple(getattr(oracle, "reason_names", None) or (oracle.name,))


class MapOracle:
    """Wraps ``inner`` so it sees ``drivable_area`` = the crop of each sample's scene.

    Args:
        inner: an Oracle reading ``boxes``, ``defined`` and ``drivable_area`` from the samples mapping.
        areas: [S] object array of Shapely geometries, indexed by the global scene id.
    """

    def __init__(self, inner: Oracle, areas: np.ndarray):
        self.inner, self.areas = inner, areas
        self.name = inner.name
        self.reason_names = reason_names(inner)

    def __call__(self, samples, cond=None) -> OracleResult:
        if not isinstance(samples, Mapping) or "scene" not in samples or "boxes" not in samples:
            raise KeyError("traffic samples must be a mapping with 'boxes', 'defined' and 'scene' "
                           "(TrafficDomain.decode)")
        ids = np.asarray(samples["scene"]).astype(np.int64)
        if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= len(self.areas))):
            raise ValueError(f"scene ids must be 1-D in [0, {len(self.areas)}), got shape {ids.shape}")
        return self.inner({**samples, "drivable_area": self.areas[ids]}, cond)

    def per_vehicle(self, samples) -> dict[str, np.ndarray]:
        """Per-vehicle flags of the inner oracle (it must have ``per_vehicle``, as ``SceneOracle`` does)."""
        ids = np.asarray(samples["scene"]).astype(np.int64)
        return self.inner.per_vehicle({**samples, "drivable_area": self.areas[ids]})
