"""Scene data on disk: one file per network plus ``manifest.json``, generated once per config.

Layout of ``<out_dir>/sumo-<preset>-<digest>/``::

    manifest.json                 resolved config, digest, networks (split, files, counts), totals, timings
    networks/<name>.scenes.npz    one per network, written as soon as its simulation finishes (resume point)
    networks/                     the network, vehicle-type and route files of every generated network

Arrays of a network file (S scenes, N vehicles): ``boxes [S, N, 5]`` float32 (scene frame), ``defined [S, N]``,
``origin [S, 3]`` (world x, y, yaw of each scene frame), ``time [S]``, and the network's geometry in its own frame:
lane centrelines (``lane_xy`` with ``lane_offsets``), ``lane_width``, ``lane_internal`` and the drivable area as
WKB (``area_wkb``). Scene-frame map crops and drivable areas are cut from that geometry when the data are loaded,
so a change of the crop never needs a new simulation. Nothing needs ``allow_pickle``.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from genneg.checkpoint import read_json, read_npz

from domains.traffic.data.config import SPLITS, SumoDataConfig
from domains.traffic.data.scenes import SceneArrays

__all__ = ["generate_scenes", "is_generated", "load_scenes", "load_road_maps", "read_manifest", "geometry_arrays"]

MANIFEST = "manifest.json"
_SCENE_KEYS = ("boxes", "defined", "origin", "time")
_GEOMETRY_KEYS = ("lane_xy", "lane_offsets", "lane_width", "lane_internal", "area_wkb")


def generate_scenes(out_dir: str | os.PathLike, cfg: SumoDataConfig,
                    progress: Callable[[str, dict], None] | None = None, executor: cf.Executor | None = None) -> Path:
    """Generates (or finds in the cache) the SUMO scene data set of ``cfg``.

    Each network's scenes are saved (``networks/<name>.scenes.npz``) as soon as its job finishes, so an interrupted
    generation, called again, only simulates the networks that were not done; the result is the same as an
    uninterrupted run's, because every network's data depend only on its seed.

    Args:
        out_dir: cache root; the data land in ``out_dir/sumo-<name>-<digest>``.
        cfg: the generation config (``sumo_preset("tiny")``, ``sumo_preset("demo")``, ...).
        progress: called with (network name, its stats) as each network finishes.
        executor: runs the network jobs instead of a local pool of ``cfg.workers`` processes, e.g. a Dask client's
            ``get_executor()``. libsumo holds one simulation per process, so its workers must be processes with one
            thread each (``dask worker --nthreads 1``), and ``out_dir`` must be on a filesystem they share.

    Returns:
        The data folder (pass it to ``load_scenes``).
    """
    from domains.traffic.data.sumo import plan_networks

    folder = Path(out_dir) / f"sumo-{cfg.name}-{cfg.digest()}"
    if _is_complete(folder, cfg):
        return folder
    (folder / "networks").mkdir(parents=True, exist_ok=True)
    specs = plan_networks(cfg)
    start = time.perf_counter()
    done = {s.name: r for s in specs if (r := _load_network(folder, s.name)) is not None}
    todo = [s for s in specs if s.name not in done]
    for name, (_, stats) in done.items():
        if progress:
            progress(name, stats)
    if todo and executor is not None:
        _run_networks(executor, todo, cfg, folder, done, progress)
    elif todo:
        ctx = mp.get_context("spawn")  # libsumo: one simulation at a time per process, never forked mid-run
        with cf.ProcessPoolExecutor(min(cfg.workers, len(todo)), mp_context=ctx, initializer=_one_thread) as pool:
            _run_networks(pool, todo, cfg, folder, done, progress)
    results = [done[s.name] for s in specs]
    manifest = _manifest(cfg, specs, results, folder, time.perf_counter() - start)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, folder / MANIFEST)  # written last: its presence marks a complete data set
    return folder


def _run_networks(executor: cf.Executor, todo, cfg: SumoDataConfig, folder: Path, done: dict, progress) -> None:
    """Submits one job per network; saves each network's scenes as soon as its job finishes (in any order: a slow
    network never holds back the saving of the others, so a killed run loses only the networks in flight)."""
    from domains.traffic.data.sumo import run_network

    futures = {executor.submit(run_network, s, cfg, str(folder / "networks")): s for s in todo}
    for fut in cf.as_completed(futures):
        spec = futures[fut]
        done[spec.name] = fut.result()
        _save_network(folder, spec.name, *done[spec.name])
        if progress:
            progress(spec.name, done[spec.name][1])


def _one_thread() -> None:
    """Pool initialiser: one BLAS / torch thread per worker process (the workers are the parallelism)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)


def _network_path(folder: Path, name: str) -> Path:
    return folder / "networks" / f"{name}.scenes.npz"


def geometry_arrays(road_map) -> dict[str, np.ndarray]:
    """A ``RoadMap``'s lanes and drivable area as plain arrays (what a network file stores)."""
    import shapely

    coords = [shapely.get_coordinates(line) for line in road_map.lines]
    return {"lane_xy": np.concatenate(coords), "lane_offsets": np.cumsum([0] + [len(c) for c in coords]),
            "lane_width": road_map.widths, "lane_internal": road_map.internal,
            "area_wkb": np.frombuffer(shapely.to_wkb(road_map.drivable_area), np.uint8)}


def _road_map(data: dict, name: str):
    import shapely

    from domains.traffic.map import RoadMap

    off = data["lane_offsets"]
    lines = [data["lane_xy"][a:b] for a, b in zip(off[:-1], off[1:])]
    area = shapely.from_wkb(data["area_wkb"].tobytes())
    return RoadMap(area, lines, data["lane_width"], name=name, internal=data["lane_internal"])


def _save_network(folder: Path, name: str, scenes: SceneArrays, stats: dict) -> None:
    """One finished network's scenes, geometry and stats (atomically; the stats as a JSON string, no pickle)."""
    arrays = {k: getattr(scenes, k) for k in _SCENE_KEYS}
    path = _network_path(folder, name)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays, **stats.pop("geometry"), stats=np.array(json.dumps(stats)))
    os.replace(tmp, path)


def _read_network(folder: Path, name: str) -> dict:
    return read_npz(_network_path(folder, name), f"traffic network {name}", ("stats",) + _SCENE_KEYS + _GEOMETRY_KEYS)


def _load_network(folder: Path, name: str) -> tuple[SceneArrays, dict] | None:
    """Scenes (without their areas) and stats of a finished network, or None when it is not done (or unreadable)."""
    if not _network_path(folder, name).is_file():
        return None
    try:
        data = _read_network(folder, name)
        stats = json.loads(str(data["stats"]))
        return SceneArrays(**{k: data[k] for k in _SCENE_KEYS}, drivable_area=np.zeros(0, object)), stats
    except (ValueError, TypeError, KeyError):
        return None  # redone, never trusted


def is_generated(out_dir: str | os.PathLike, cfg: SumoDataConfig) -> bool:
    """Whether ``generate_scenes(out_dir, cfg)`` would find every network of ``cfg`` already generated."""
    return _is_complete(Path(out_dir) / f"sumo-{cfg.name}-{cfg.digest()}", cfg)


def _is_complete(folder: Path, cfg: SumoDataConfig) -> bool:
    if not (folder / MANIFEST).is_file():
        return False
    try:
        manifest = read_manifest(folder)
    except ValueError:
        return False
    return manifest.get("digest") == cfg.digest() and all(_network_path(folder, n["name"]).is_file()
                                                          for n in manifest["networks"])


def _manifest(cfg, specs, results, folder: Path, seconds: float) -> dict:
    networks = []
    for spec, (scenes, stats) in zip(specs, results):
        files = {k: os.path.relpath(stats[k], folder) if str(stats[k]).startswith(str(folder)) else stats[k]
                 for k in ("network_file", "route_file")}
        counts = {k: v for k, v in stats.items() if k not in files}
        networks.append({"name": spec.name, "split": spec.split, "kind": spec.kind, "lanes": spec.lanes,
                         "seed": spec.seed, **files, **counts})
    totals = {k: sum(n[k] for n in networks) for k in
              ("scenes_tried", "scenes_kept", "invalid_collision", "invalid_offroad", "invalid_both", "teleporting")}
    totals["invalid_fraction"] = 1 - totals["scenes_kept"] / max(totals["scenes_tried"], 1)
    splits = {s: sum(n["scenes_kept"] for n in networks if n["split"] == s) for s in SPLITS}
    return {"source": "sumo", "digest": cfg.digest(), "config": cfg.to_dict(), "networks": networks,
            "totals": totals, "scenes_per_split": splits, "seconds": round(seconds, 2),
            "valid_scenes_per_second": round(totals["scenes_kept"] / max(seconds, 1e-9), 1)}


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no scene data in {folder}: {MANIFEST} is missing (run generate_scenes first)")
    return read_json(path)


def load_scenes(folder: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """Loads one split's scenes (every network of the split, in manifest order) as a dict of numpy arrays.

    Returns:
        ``boxes [S, N, 5]``, ``defined [S, N]``, ``origin [S, 3]``, ``time [S]``, ``network [S]`` (index into the
        manifest's networks), ``network_name [S]`` (str).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    networks = read_manifest(folder)["networks"]
    parts = {k: [] for k in _SCENE_KEYS + ("network", "network_name")}
    for i, net in enumerate(networks):
        if net["split"] != split:
            continue
        data = _read_network(Path(folder), net["name"])
        for k in _SCENE_KEYS:
            parts[k].append(data[k])
        parts["network"].append(np.full(len(data["boxes"]), i, np.int32))
        parts["network_name"].append(np.full(len(data["boxes"]), net["name"]))
    if not parts["boxes"]:
        raise ValueError(f"split {split!r} has no network in {folder}")
    return {k: np.concatenate(v) for k, v in parts.items()}


def load_road_maps(folder: str | os.PathLike) -> list:
    """The ``RoadMap`` of every network of the data set, in manifest order (from the stored geometry)."""
    networks = read_manifest(folder)["networks"]
    return [_road_map(_read_network(Path(folder), n["name"]), n["name"]) for n in networks]
