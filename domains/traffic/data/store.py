"""Scene data on disk: one ``<split>.npz`` per split plus ``manifest.json``, generated once per config.

Layout of ``<out_dir>/sumo-<preset>-<digest>/``::

    manifest.json        resolved config, digest, networks (split, files, counts), totals, timings
    train.npz val.npz test.npz
    networks/            the network, vehicle-type and route files of every generated network

Arrays in each ``.npz`` (S scenes, N vehicles, L lane pieces, P points): ``boxes [S, N, 5]`` float32,
``defined [S, N]``, ``map_polylines [S, L, P, 5]`` float32, ``map_defined [S, L]``, ``origin [S, 3]``,
``time [S]``, ``network [S]`` (index into ``network_names``), ``network_names [K]`` and the drivable-area crops
as WKB (``area_wkb``, ``area_offsets``). Nothing needs ``allow_pickle``.
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
from domains.traffic.data.scenes import SceneArrays, concat_scenes, decode_areas, encode_areas

__all__ = ["generate_scenes", "load_scenes", "save_split", "read_manifest"]

MANIFEST = "manifest.json"
_SPLIT_KEYS = ("boxes", "defined", "map_polylines", "map_defined", "origin", "time", "network", "network_names",
               "area_wkb", "area_offsets")


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
        with cf.ProcessPoolExecutor(min(cfg.workers, len(todo)), mp_context=ctx) as pool:
            _run_networks(pool, todo, cfg, folder, done, progress)
    results = [done[s.name] for s in specs]
    names = [s.name for s in specs]
    for split in SPLITS:
        parts = [(i, r[0]) for i, (s, r) in enumerate(zip(specs, results)) if s.split == split]
        scenes = concat_scenes([p for _, p in parts], cfg.scene)
        network = np.concatenate([np.full(len(p), i, np.int16) for i, p in parts]) if parts else np.zeros(0, np.int16)
        save_split(folder / f"{split}.npz", scenes, network, names)
    manifest = _manifest(cfg, specs, results, folder, time.perf_counter() - start)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, folder / MANIFEST)  # written last: its presence marks a complete data set
    return folder


def _run_networks(executor: cf.Executor, todo, cfg: SumoDataConfig, folder: Path, done: dict, progress) -> None:
    """Submits one job per network; saves each network's scenes as it comes back (in network order)."""
    from domains.traffic.data.sumo import run_network

    futures = [executor.submit(run_network, s, cfg, str(folder / "networks")) for s in todo]
    for spec, fut in zip(todo, futures):
        done[spec.name] = fut.result()
        _save_network(folder, spec.name, *done[spec.name])
        if progress:
            progress(spec.name, done[spec.name][1])


def _network_path(folder: Path, name: str) -> Path:
    return folder / "networks" / f"{name}.scenes.npz"


def _save_network(folder: Path, name: str, scenes: SceneArrays, stats: dict) -> None:
    """One finished network's scenes and stats (atomically; the stats as a JSON string, no pickle)."""
    area_wkb, area_offsets = encode_areas(scenes.drivable_area)
    arrays = {k: v for k, v in vars(scenes).items() if k != "drivable_area"}
    path = _network_path(folder, name)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays, area_wkb=area_wkb, area_offsets=area_offsets, stats=np.array(json.dumps(stats)))
    os.replace(tmp, path)


def _load_network(folder: Path, name: str) -> tuple[SceneArrays, dict] | None:
    """What ``_save_network`` wrote, or None when the network is not done (or its file is unreadable)."""
    path = _network_path(folder, name)
    if not path.is_file():
        return None
    try:
        data = read_npz(path, "network scenes", ("stats", "area_wkb", "area_offsets"))
        stats = json.loads(str(data.pop("stats")))
        areas = decode_areas(data.pop("area_wkb"), data.pop("area_offsets"))
        return SceneArrays(**data, drivable_area=areas), stats
    except (ValueError, TypeError):
        return None  # redone, never trusted


def _is_complete(folder: Path, cfg: SumoDataConfig) -> bool:
    if not (folder / MANIFEST).is_file():
        return False
    try:
        manifest = read_manifest(folder)
    except ValueError:
        return False
    return manifest.get("digest") == cfg.digest() and all((folder / f"{s}.npz").is_file() for s in SPLITS)


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


def save_split(path: Path, scenes: SceneArrays, network: np.ndarray, network_names: list[str]) -> None:
    """Writes one split (atomically: a temporary file, then ``os.replace``)."""
    area_wkb, area_offsets = encode_areas(scenes.drivable_area)
    arrays = {k: v for k, v in vars(scenes).items() if k != "drivable_area"}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays, network=network, network_names=np.asarray(network_names, dtype=str),
                        area_wkb=area_wkb, area_offsets=area_offsets)
    os.replace(tmp, path)


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no scene data in {folder}: {MANIFEST} is missing (run generate_scenes first)")
    return read_json(path)


def load_scenes(folder: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """Loads one split as a dict of numpy arrays.

    Returns:
        ``boxes [S, N, 5]``, ``defined [S, N]``, ``map_polylines [S, L, P, 5]``, ``map_defined [S, L]``,
        ``drivable_area [S]`` (Shapely geometries, scene frame), ``origin [S, 3]``, ``time [S]``,
        ``network [S]`` (int), ``network_name [S]`` (str).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(folder) / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no {split} split in {folder} ({path.name} is missing)")
    data = read_npz(path, f"traffic {split} scenes", _SPLIT_KEYS)
    data["drivable_area"] = decode_areas(data.pop("area_wkb"), data.pop("area_offsets"))
    names = data.pop("network_names")
    data["network_name"] = names[data["network"]] if len(names) else np.zeros(0, str)
    return data
