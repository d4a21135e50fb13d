"""Traffic scenes: road maps (SUMO, lanelet2), scene data (SUMO simulation, INTERACTION), the scene transformer.

``TrafficDomain`` implements ``genneg.domain.Domain``: a scene has N vehicle slots; slot 0 is the ego (the centre
vehicle, at the origin facing +x, its box known, as a simulator would give it) and the model generates the N - 1
others, features ``[N - 1, 6]`` (``features.encode_boxes``), on a map crop. ``cond`` is a dict of tensors only:
``ego [B, 6]``, ``defined [B, N - 1]`` (padded slots False), ``map [B, L, P, 6]`` and ``map_defined [B, L]`` (the lane
segments within the scene radius plus a margin, normalised), ``scene [B]`` (global scene id into the domain's
``SceneTable``, which holds the drivable areas, the world origin and the network of each scene). Decoded samples are
``{"boxes" [B, N, 5] metres/radians (ego first), "defined", "scene"}``: the oracle checks the ego too.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from genneg.config import RunConfig
from genneg.domain import validate_x0
from genneg.oracle import Oracle, all_of, get_oracle
from genneg.oracles.traffic import SceneOracle

from .features import SceneTable, decode_boxes, encode_boxes
from .net import VEHICLE_FEATURES, SceneNet
from .oracle import MapOracle
from .penalty import scene_penalty
from .presets import traffic_presets

__all__ = ["TrafficDomain", "make_domain", "SIGMA_DATA"]

SIGMA_DATA = 0.6  # std of the normalised features of defined vehicles on SUMO scenes (0.57 measured on "tiny")
SPLITS = ("train", "val", "test")


def make_domain(**kwargs) -> "TrafficDomain":
    return TrafficDomain(**kwargs)


def default_cache() -> Path:
    return Path(os.environ.get("GENNEG_CACHE", "~/.cache/genneg")).expanduser() / "traffic"


class TrafficDomain:
    """Scenes of up to N vehicles (the ego and N - 1 others) on SUMO road networks (generated and real), split by
    network.

    Args:
        preset: SUMO data preset (``genneg.domains.traffic.data.PRESETS``: "tiny", "demo", "cpu", "paper").
        data_dir: cache root of the scene data (default ``$GENNEG_CACHE/traffic`` or ``~/.cache/genneg/traffic``).
        seed: data seed (networks, demand, scene draws); independent of the run seed.
        workers: SUMO processes when the data must be generated.
        map_lines: most lane segments a scene sees (nearest first; padded).
        map_points: points per lane segment.
        segment_length: lanes are cut into segments of at most this many metres.
        map_margin: a scene sees every segment that comes within its radius plus this many metres.
        scene: overrides of ``SceneConfig`` (e.g. ``{"max_vehicles": 8}``), which change the data's cache key.
        max_vehicles: keep only the K vehicle slots nearest each scene's ego, ego included (stored scenes are sorted
            by distance, so this is the K-nearest scene, still valid); None keeps the stored N. Same cache as N.
        splits: the splits this domain generates, loads and serves (default all). ``("test",)`` simulates and loads
            the held-out networks only (what ``genneg demo`` needs); asking it for another split raises. The data
            are those of the full data set, in the same cache folder.
    """

    name = "traffic"
    sigma_data = SIGMA_DATA

    def __init__(self, preset: str = "demo", data_dir: str | os.PathLike | None = None, seed: int = 0,
                 workers: int = 2, map_lines: int = 96, map_points: int = 5, segment_length: float = 20.0,
                 map_margin: float = 5.0, scene: dict | None = None, max_vehicles: int | None = None,
                 splits=SPLITS):
        from .data import SceneConfig, sumo_preset
        from .data.store import check_splits

        self.data_cfg = sumo_preset(preset, seed=seed, workers=workers, scene=SceneConfig(**(scene or {})))
        if map_lines < 1 or map_points < 2 or not segment_length > 0 or map_margin < 0:
            raise ValueError(f"need map_lines >= 1, map_points >= 2, segment_length > 0 and map_margin >= 0, got "
                             f"map_lines={map_lines}, map_points={map_points}, segment_length={segment_length}, "
                             f"map_margin={map_margin}")
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_cache()
        self.map_lines, self.map_points = int(map_lines), int(map_points)
        self.segment_length, self.map_margin = float(segment_length), float(map_margin)
        stored = self.data_cfg.scene.max_vehicles
        if max_vehicles is not None and not 2 <= max_vehicles <= stored:
            raise ValueError(f"max_vehicles must be in [2, {stored}] (the ego and at least one other, at most the "
                             f"data's slots), got {max_vehicles}")
        self.max_vehicles = stored if max_vehicles is None else max_vehicles
        self.tolerance = self.data_cfg.scene.offroad_tolerance
        self.splits = check_splits(splits)
        self._reference_features: dict = {}

    # ---------------------------------------------------------------------------------------------- data
    def presets(self) -> dict[str, RunConfig]:
        return traffic_presets()

    def prepare_data(self, *, workers: int | None = None, progress: Callable[[str], None] | None = None,
                     executor=None, splits=None) -> Path:
        """Generates (or finds in the cache) the SUMO scenes of this domain's data config; returns their folder.

        ``executor`` (e.g. a Dask client's) runs the SUMO jobs instead of a local pool of ``workers`` processes
        (``generate_scenes`` says what its workers need). ``splits`` generates those splits only (default: the
        domain's ``splits``)."""
        from dataclasses import replace

        from .data import generate_scenes

        cfg = self.data_cfg if workers is None else replace(self.data_cfg, workers=workers)
        report = None if progress is None else lambda net, st: progress(
            f"{net}: {st['scenes_kept']}/{st['scenes_tried']} scenes kept")
        return generate_scenes(self.data_dir, cfg, report, executor, self.splits if splits is None else splits)

    def data_ready(self) -> bool:
        """Whether this data config's scenes of the domain's splits are generated already (nothing is generated to
        find out)."""
        from .data.store import is_generated

        return is_generated(self.data_dir, self.data_cfg, self.splits)

    def check_split(self, split: str) -> str:
        """``split``, after checking that this domain serves it.

        Raises:
            ValueError: an unknown split, or one this domain was not opened for (``splits``).
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if split not in self.splits:
            raise ValueError(f"this traffic domain was opened for the split(s) {list(self.splits)} only, not "
                             f"{split!r}; open it with splits including {split!r} (the default: every split)")
        return split

    @property
    def reach(self) -> float:
        """Metres from the ego within which a scene sees every lane segment."""
        return self.data_cfg.scene.radius + self.map_margin

    @cached_property
    def table(self) -> SceneTable:
        """The scenes of the domain's splits (generated on first use) with their map crops (cached beside the
        data)."""
        from .tables import build_table

        scene = self.data_cfg.scene
        return build_table(self.prepare_data(), self.splits, self.max_vehicles, self.map_lines, self.map_points,
                           self.segment_length, self.reach, scene.radius + scene.area_margin)

    def dataset(self, split: str) -> tuple[Tensor, dict]:
        """Normalised scenes ``x0 [S, N - 1, 6]`` (the vehicles other than the ego) and their conditions."""
        ids = self.table.ids(self.check_split(split))
        return encode_boxes(self.table.boxes[ids, 1:], self.table.defined[ids, 1:]), self.cond_of(ids)

    def cond_of(self, ids) -> dict[str, Tensor]:
        return self.table.cond(self.table.lookup(ids))

    def conditions(self, n: int, split: str = "test", seed: int = 0) -> dict[str, Tensor]:
        """``n`` scenes' conditions drawn with replacement from the split (map, ego, vehicle slots), by seed."""
        from genneg.rng import numpy_rng

        if n < 1:
            raise ValueError(f"need n >= 1 conditions, got {n}")
        ids = self.table.ids(self.check_split(split))
        return self.cond_of(numpy_rng(seed, "traffic", "conditions", split).choice(ids, size=n))

    def coverage(self, split: str, limit: float = 2.0, max_scenes: int | None = 5000,
                 networks=None) -> dict[str, float]:
        """Share of the split's data vehicles (the ego included) farther than ``limit`` metres from every lane
        segment their scene sees, optionally on the named ``networks`` only (``tables.coverage``)."""
        from .tables import coverage

        return coverage(self.table, self.check_split(split), limit, max_scenes, networks)

    def data_report(self, max_scenes: int = 5000) -> dict:
        """Scene counts per split and network kind, generation throughput, and map coverage (``coverage``)."""
        from .tables import data_report

        return data_report(self, max_scenes)

    def sample_shape(self, cond, n: int) -> tuple[int, ...]:
        return (n, self.max_vehicles - 1, len(VEHICLE_FEATURES))

    def decode(self, x0: Tensor, cond) -> dict[str, np.ndarray]:
        """Physical boxes ``[B, N, 5]`` (float64; the ego first, from the condition), ``defined [B, N]`` and
        ``scene [B]`` (numpy) for oracles, plots and exports."""
        validate_x0(x0, (self.max_vehicles - 1, len(VEHICLE_FEATURES)))
        if not isinstance(cond, dict) or not {"defined", "scene", "ego"} <= set(cond):
            raise ValueError("decoding traffic samples needs their cond (with 'ego', 'defined' and 'scene')")
        return {"boxes": decode_boxes(self.with_ego(x0.detach().cpu().double(), cond)).numpy(),
                "defined": self.with_ego_mask(cond).numpy(), "scene": self.table.lookup(cond["scene"])}

    @staticmethod
    def with_ego(x0: Tensor, cond: dict) -> Tensor:
        """``[B, N, 6]``: the ego's features (from ``cond``) in front of the generated ``x0 [B, N - 1, 6]``."""
        return torch.cat([cond["ego"].to(x0)[:, None], x0], 1)

    @staticmethod
    def with_ego_mask(cond: dict) -> Tensor:
        defined = cond["defined"].detach().cpu().bool()
        return torch.cat([torch.ones_like(defined[:, :1]), defined], 1)

    # ---------------------------------------------------------------------------------------------- oracle
    def oracle(self, names: list[str] | None = None) -> Oracle:
        """Collision + off-road on each scene's map; ``names`` composes registered traffic oracles instead
        (e.g. ``["collision"]`` for ``traffic:collision``; "scene" is the default oracle)."""
        scene = SceneOracle(tolerance=self.tolerance)
        if not names or list(names) == ["scene"]:
            return MapOracle(scene, self.table.areas)
        members = [scene if n == "scene" else get_oracle(n, domain=self.name) for n in names]
        return MapOracle(members[0] if len(members) == 1 else all_of(*members), self.table.areas)

    def penalty(self, x0: Tensor, cond: dict) -> Tensor:
        """Differentiable overlap + off-road distance ``[B]`` in metres (``penalty.scene_penalty``) of normalised
        scenes ``x0 [B, N - 1, 6]`` with their ego; each scene's drivable area is looked up by ``cond["scene"]``."""
        areas = self.table.areas[self.table.lookup(cond["scene"])]
        defined = self.with_ego_mask(cond).to(x0.device)
        return scene_penalty(self.with_ego(x0, cond), defined, areas, self.tolerance)

    def metrics(self, samples: dict, cond, result, split: str, networks=None) -> dict[str, dict]:
        """Infraction rates per scene and per generated vehicle (by distance band from the ego) with 95 % intervals
        bootstrapped over road networks, and W1 realism distances to the ``split``'s data (``metrics.traffic_metrics``;
        ``docs/traffic.md``, "Evaluation"). Samples without an oracle verdict (``result.defined``) are left out.
        ``networks`` (names) compares with the data of those networks only (default: the whole split)."""
        from .metrics import traffic_metrics

        ids = self.table.lookup(samples["scene"])
        keep = np.ones(len(ids), bool) if result is None else np.asarray(result.defined, bool)
        if not keep.any():
            return {}
        ids = ids[keep]
        return traffic_metrics(np.asarray(samples["boxes"])[keep], np.asarray(samples["defined"])[keep],
                               self.table.areas[ids], lambda rows: self.table.polylines(ids[rows]),
                               self.table.network[ids], self.reference_features(split, networks),
                               tolerance=self.tolerance, radius=self.data_cfg.scene.radius)

    def reference_features(self, split: str, networks=None, max_scenes: int = 5000) -> dict[str, np.ndarray]:
        """``metrics.scene_features`` of the split's data vehicles (on the named ``networks`` only, if given; at most
        ``max_scenes`` evenly spaced scenes) and their networks (``"network"``): what the realism distances compare
        with. Computed once per setting."""
        from .metrics import scene_features

        key = (self.check_split(split), None if networks is None else tuple(sorted(networks)), max_scenes)
        if key not in self._reference_features:
            ids = self.table.ids(split)
            if networks is not None:
                ids = ids[np.isin(self.table.network[ids], list(networks))]
                if len(ids) == 0:
                    raise ValueError(f"split {split!r} holds no scene of the networks {sorted(networks)}")
            ids = ids[np.linspace(0, len(ids) - 1, min(max_scenes, len(ids))).round().astype(np.int64)]
            feats = scene_features(self.table.boxes[ids], self.table.defined[ids],
                                   lambda rows: self.table.polylines(ids[rows]))
            self._reference_features[key] = {**feats, "network": self.table.network[ids]}
        return self._reference_features[key]

    def export(self, samples: dict, cond, result, path: str | os.PathLike) -> Path:
        """Writes decoded samples (``decode``) as JSON (``export.export_scenes``): per scene the boxes in the scene
        and world frames, the network's name and file, the drivable-area crop as WKT, the verdict per scene and
        per reason (``result``, an ``OracleResult`` of these samples; None labels them here), per-vehicle flags.
        ``cond`` is not needed (the samples carry their scene ids); it is accepted for the engine's call."""
        from .export import export_scenes

        return export_scenes(self, samples, result, path)

    # ---------------------------------------------------------------------------------------------- nets, plots
    def make_denoiser_net(self, cfg: dict) -> SceneNet:
        return SceneNet(out="denoiser", **{"sigma_data": self.sigma_data, **cfg})

    def make_classifier_net(self, cfg: dict) -> SceneNet:
        return SceneNet(out="classifier", **{"sigma_data": self.sigma_data, **cfg})

    def make_element_classifier_net(self, cfg: dict, reason: str) -> SceneNet:
        """A per-vehicle classifier of ``reason`` (logits ``[B, N]``, the ego first, as the oracle's per-vehicle
        flags); the collision classifier reads each vehicle's pairs (``SceneNet`` ``pair_head``)."""
        return SceneNet(out="vehicle_classifier", pair_head=reason == "collision",
                        **{"sigma_data": self.sigma_data, **cfg})

    def plot(self, samples, cond, result, ax, title: str = "", index: int = 0) -> None:
        """Scene ``index`` of the batch on its map; infracting boxes red; the title gets the batch's rates."""
        from .plot import plot_sample

        plot_sample(self, samples, result, ax, title=title, index=index)
