"""Traffic scenes: road maps (SUMO, lanelet2), scene data (SUMO simulation, INTERACTION), the scene transformer.

``TrafficDomain`` implements ``genneg.domain.Domain``: a sample is one scene of N vehicle slots with features
``[N, 6]`` (``features.encode_boxes``), generated on a map crop. ``cond`` is a dict of tensors only:
``defined [B, N]`` (padded slots False), ``map [B, L, P, 5]`` and ``map_defined [B, L]`` (normalised lane pieces),
``scene [B]`` (global scene id into the domain's ``SceneTable``, which holds the drivable areas, the world origin
and the network of each scene). Decoded samples are ``{"boxes" [B, N, 5] metres/radians, "defined", "scene"}``.
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
from oracles.traffic import SceneOracle

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
    """Scenes of up to N vehicles on SUMO road networks (generated and real), split by network.

    Args:
        preset: SUMO data preset (``domains.traffic.data.PRESETS``: "tiny", "demo").
        data_dir: cache root of the scene data (default ``$GENNEG_CACHE/traffic`` or ``~/.cache/genneg/traffic``).
        seed: data seed (networks, demand, scene draws); independent of the run seed.
        workers: SUMO processes when the data must be generated.
        map_lines, map_points: lane pieces and points per piece the model sees (nearest first; subsampled from the
            stored crop).
        scene: overrides of ``SceneConfig`` (e.g. ``{"max_vehicles": 8}``), which change the data's cache key.
        max_vehicles: keep only the K vehicle slots nearest each scene's centre vehicle (stored scenes are sorted by
            distance, so this is the K-nearest scene, still valid); None keeps the stored N. Same cache as N.
    """

    name = "traffic"
    sigma_data = SIGMA_DATA

    def __init__(self, preset: str = "demo", data_dir: str | os.PathLike | None = None, seed: int = 0,
                 workers: int = 2, map_lines: int = 16, map_points: int = 10, scene: dict | None = None,
                 max_vehicles: int | None = None):
        from .data import SceneConfig, sumo_preset

        self.data_cfg = sumo_preset(preset, seed=seed, workers=workers, scene=SceneConfig(**(scene or {})))
        if not 1 <= map_lines <= self.data_cfg.scene.map_lines or not 2 <= map_points <= self.data_cfg.scene.map_points:
            raise ValueError(f"map_lines must be in [1, {self.data_cfg.scene.map_lines}] and map_points in "
                             f"[2, {self.data_cfg.scene.map_points}], got {map_lines}, {map_points}")
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_cache()
        self.map_lines, self.map_points = map_lines, map_points
        stored = self.data_cfg.scene.max_vehicles
        if max_vehicles is not None and not 1 <= max_vehicles <= stored:
            raise ValueError(f"max_vehicles must be in [1, {stored}] (the data's slots), got {max_vehicles}")
        self.max_vehicles = stored if max_vehicles is None else max_vehicles
        self.tolerance = self.data_cfg.scene.offroad_tolerance

    # ---------------------------------------------------------------------------------------------- data
    def presets(self) -> dict[str, RunConfig]:
        return traffic_presets()

    def prepare_data(self, *, workers: int | None = None, progress: Callable[[str], None] | None = None,
                     executor=None) -> Path:
        """Generates (or finds in the cache) the SUMO scenes of this domain's data config; returns their folder.

        ``executor`` (e.g. a Dask client's) runs the SUMO jobs instead of a local pool of ``workers`` processes
        (``generate_scenes`` says what its workers need)."""
        from dataclasses import replace

        from .data import generate_scenes

        cfg = self.data_cfg if workers is None else replace(self.data_cfg, workers=workers)
        report = None if progress is None else lambda net, st: progress(
            f"{net}: {st['scenes_kept']}/{st['scenes_tried']} scenes kept")
        return generate_scenes(self.data_dir, cfg, report, executor)

    @cached_property
    def table(self) -> SceneTable:
        """Every split's scenes (generated on first use)."""
        from .data import load_scenes, read_manifest

        folder = self.prepare_data()
        parts = [load_scenes(folder, s) for s in SPLITS]
        sizes = np.cumsum([0] + [len(p["boxes"]) for p in parts])
        files = {n["name"]: str(folder / n["network_file"]) if not os.path.isabs(n["network_file"])
                 else n["network_file"] for n in read_manifest(folder)["networks"]}
        cat = lambda k: np.concatenate([p[k] for p in parts])  # noqa: E731
        k = self.max_vehicles
        return SceneTable(cat("boxes")[:, :k], cat("defined")[:, :k], cat("map_polylines"), cat("map_defined"), cat("drivable_area"),
                          cat("origin"), cat("network_name"), {s: (int(sizes[i]), int(sizes[i + 1]))
                                                               for i, s in enumerate(SPLITS)}, files)

    def dataset(self, split: str) -> tuple[Tensor, dict]:
        """Normalised scenes ``x0 [S, N, 6]`` of the split and their conditions."""
        ids = self.table.ids(split)
        return encode_boxes(self.table.boxes[ids], self.table.defined[ids]), self.cond_of(ids)

    def cond_of(self, ids) -> dict[str, Tensor]:
        return self.table.cond(self.table.lookup(ids), self.map_lines, self.map_points)

    def conditions(self, n: int, split: str = "test", seed: int = 0) -> dict[str, Tensor]:
        """``n`` scenes' conditions drawn with replacement from the split (map, vehicle slots), by seed."""
        if n < 1:
            raise ValueError(f"need n >= 1 conditions, got {n}")
        ids = self.table.ids(split)
        return self.cond_of(np.random.default_rng([seed, 7]).choice(ids, size=n))

    def sample_shape(self, cond, n: int) -> tuple[int, ...]:
        return (n, self.max_vehicles, len(VEHICLE_FEATURES))

    def decode(self, x0: Tensor, cond) -> dict[str, np.ndarray]:
        """Physical boxes ``[B, N, 5]`` (float64), ``defined [B, N]`` and ``scene [B]`` (numpy) for oracles/plots."""
        validate_x0(x0, (self.max_vehicles, len(VEHICLE_FEATURES)))
        if not isinstance(cond, dict) or "defined" not in cond or "scene" not in cond:
            raise ValueError("decoding traffic samples needs their cond (with 'defined' and 'scene')")
        boxes = decode_boxes(x0.detach().cpu().double()).numpy()
        return {"boxes": boxes, "defined": cond["defined"].cpu().numpy().astype(bool),
                "scene": self.table.lookup(cond["scene"])}

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
        scenes ``x0 [B, N, 6]``; each scene's drivable area is looked up by ``cond["scene"]``."""
        areas = self.table.areas[self.table.lookup(cond["scene"])]
        return scene_penalty(x0, cond["defined"], areas, self.tolerance)

    # ---------------------------------------------------------------------------------------------- nets, plots
    def make_denoiser_net(self, cfg: dict) -> SceneNet:
        return SceneNet(out="denoiser", **cfg)

    def make_classifier_net(self, cfg: dict) -> SceneNet:
        return SceneNet(out="classifier", **cfg)

    def plot(self, samples, cond, result, ax, title: str = "", index: int = 0) -> None:
        """Scene ``index`` of the batch on its map; infracting boxes red; the title gets the batch's rates."""
        from .plot import plot_sample

        plot_sample(self, samples, result, ax, title=title, index=index)
