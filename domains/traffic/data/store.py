"""Scene data on disk: one file per network plus ``manifest.json``, generated once per config.

Layout of ``<out_dir>/sumo-<preset>-<digest>/``::

    manifest.json                 resolved config, digest, networks (split, files, counts), totals, timings
    manifest.<split>.json         the same for one split's networks, when only some splits were generated
    networks/<name>.scenes.npz    one per network, written as soon as its simulation finishes (resume point)
    networks/                     the network, vehicle-type and route files of every generated network

Arrays of a network file (S scenes, N vehicles): ``boxes [S, N, 5]`` float32 (scene frame), ``defined [S, N]``,
``origin [S, 3]`` (world x, y, yaw of each scene frame), ``time [S]``, and the network's geometry in its own frame:
lane centrelines (``lane_xy`` with ``lane_offsets``), ``lane_width``, ``lane_internal`` and the drivable area as
WKB (``area_wkb``). Scene-frame map crops and drivable areas are cut from that geometry when the data are loaded,
so a change of the crop never needs a new simulation. Nothing needs ``allow_pickle``.

Some splits can be generated alone (``generate_scenes(..., splits=("test",))``): the same networks' files land in
the same folder, and a per-split manifest marks each split complete. A later generation of every split simulates
only the networks still missing and writes ``manifest.json``; its data equal an uninterrupted full run's, since
every network's data depend only on its seed.
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

from genneg.domains.traffic.data.config import SPLITS, SumoDataConfig
from genneg.domains.traffic.data.scenes import SceneArrays

__all__ = ["generate_scenes", "is_generated", "load_scenes", "load_road_maps", "read_manifest", "geometry_arrays",
           "check_splits"]

MANIFEST = "manifest.json"
SPLIT_MANIFEST = "manifest.{split}.json"
_SCENE_KEYS = ("boxes", "defined", "origin", "time")
_GEOMETRY_KEYS = ("lane_xy", "lane_offsets", "lane_width", "lane_internal", "area_wkb")


def generate_scenes(out_dir: str | os.PathLike, cfg: SumoDataConfig,
                    progress: Callable[[str, dict], None] | None = None, executor: cf.Executor | None = None,
                    splits=SPLITS) -> Path:
    """Generates (or finds in the cache) the SUMO scene data set of ``cfg``, or only some of its splits.

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
        splits: the splits to generate (default: all). Only their networks are simulated, into the same folder and
            files as a full generation (which later reuses them); each split gets ``manifest.<split>.json``, and
            ``manifest.json`` is written once every split is there.

    Returns:
        The data folder (pass it to ``load_scenes``).

    Raises:
        ValueError: ``splits`` is empty or names an unknown split.
    """
    from genneg.domains.traffic.data.sumo import plan_networks

    splits = check_splits(splits)
    folder = Path(out_dir) / f"sumo-{cfg.name}-{cfg.digest()}"
    if _is_complete(folder, cfg) or all(_is_complete(folder, cfg, s) for s in splits):
        return folder
    (folder / "networks").mkdir(parents=True, exist_ok=True)
    specs = [s for s in plan_networks(cfg) if s.split in splits]
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
    seconds = time.perf_counter() - start
    if splits != SPLITS:  # each split's marker, written once its networks are all saved
        for split in splits:
            mine = [s for s in specs if s.split == split]
            record = _manifest(cfg, mine, [done[s.name] for s in mine], folder, seconds, (split,))
            _write_json(folder / SPLIT_MANIFEST.format(split=split), {**record, "generated_with": list(splits)})
    if splits == SPLITS or all(_is_complete(folder, cfg, s) for s in SPLITS):  # every split is there
        everything = plan_networks(cfg)
        results = [done[s.name] if s.name in done else _load_network(folder, s.name) for s in everything]
        _write_json(folder / MANIFEST, _manifest(cfg, everything, results, folder, seconds))  # last: marks it complete
    return folder


def check_splits(splits) -> tuple[str, ...]:
    """``splits`` as a tuple in the order of ``SPLITS``, after checking each name.

    Raises:
        ValueError: ``splits`` is a single string, empty, or names an unknown split.
    """
    if isinstance(splits, str):
        raise ValueError(f"splits must be a sequence of split names such as ('test',), got the string {splits!r}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {tuple(splits)!r}")
    return tuple(s for s in SPLITS if s in splits)


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def _run_networks(executor: cf.Executor, todo, cfg: SumoDataConfig, folder: Path, done: dict, progress) -> None:
    """Submits one job per network; saves each network's scenes as soon as its job finishes (in any order: a slow
    network never holds back the saving of the others, so a killed run loses only the networks in flight)."""
    from genneg.domains.traffic.data.sumo import run_network

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

    from genneg.domains.traffic.map import RoadMap

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


def is_generated(out_dir: str | os.PathLike, cfg: SumoDataConfig, splits=SPLITS) -> bool:
    """Whether ``generate_scenes(out_dir, cfg, splits=splits)`` would find every network of those splits already
    generated (nothing is generated to find out)."""
    folder = Path(out_dir) / f"sumo-{cfg.name}-{cfg.digest()}"
    return _is_complete(folder, cfg) or all(_is_complete(folder, cfg, s) for s in check_splits(splits))


def _is_complete(folder: Path, cfg: SumoDataConfig, split: str | None = None) -> bool:
    """Whether the whole data set (``split`` None) or one split is generated: its manifest is there, of this
    config, and every network it lists has its file."""
    path = folder / (MANIFEST if split is None else SPLIT_MANIFEST.format(split=split))
    if not path.is_file():
        return split is not None and _is_complete(folder, cfg)
    try:
        manifest = read_json(path)
    except ValueError:
        return False
    return manifest.get("digest") == cfg.digest() and all(_network_path(folder, n["name"]).is_file()
                                                          for n in manifest["networks"])


def _manifest(cfg, specs, results, folder: Path, seconds: float, splits=SPLITS) -> dict:
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
    per_split = {s: sum(n["scenes_kept"] for n in networks if n["split"] == s) for s in splits}
    return {"source": "sumo", "digest": cfg.digest(), "config": cfg.to_dict(), "networks": networks,
            "totals": totals, "scenes_per_split": per_split, "seconds": round(seconds, 2),
            "valid_scenes_per_second": round(totals["scenes_kept"] / max(seconds, 1e-9), 1)}


def read_manifest(folder: str | os.PathLike, splits=None) -> dict:
    """The data set's manifest: ``manifest.json`` when every split is generated; otherwise, when ``splits`` are
    given and each has its ``manifest.<split>.json``, those splits' manifests merged into one (networks in
    ``SPLITS`` order, counts summed; ``"generated_with"`` names the splits a per-split manifest holds).

    Raises:
        FileNotFoundError: neither is there (naming what is missing).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if path.is_file():
        return read_json(path)
    if splits is None:
        raise FileNotFoundError(f"no scene data in {folder}: {MANIFEST} is missing (run generate_scenes first)")
    splits = check_splits(splits)
    names = [SPLIT_MANIFEST.format(split=s) for s in splits]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"no scene data of the split(s) {list(splits)} in {folder}: {MANIFEST} and "
                                f"{', '.join(missing)} are missing (run generate_scenes with those splits first)")
    parts = [read_json(folder / name) for name in names]
    if len(parts) == 1:
        return parts[0]
    totals = {k: sum(p["totals"][k] for p in parts) for k in parts[0]["totals"] if k != "invalid_fraction"}
    totals["invalid_fraction"] = 1 - totals["scenes_kept"] / max(totals["scenes_tried"], 1)
    # splits generated by one call share its wall time: count each call once
    seconds = sum({tuple(p["generated_with"]): p["seconds"] for p in parts}.values())
    return {**parts[0], "networks": [n for p in parts for n in p["networks"]], "generated_with": list(splits),
            "totals": totals, "scenes_per_split": {s: p["scenes_per_split"][s] for s, p in zip(splits, parts)},
            "seconds": round(seconds, 2),
            "valid_scenes_per_second": round(totals["scenes_kept"] / max(seconds, 1e-9), 1)}


def load_scenes(folder: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """Loads one split's scenes (every network of the split, in manifest order) as a dict of numpy arrays, from a
    full data set or from one generated for some splits only (``generate_scenes(..., splits=...)``).

    Returns:
        ``boxes [S, N, 5]``, ``defined [S, N]``, ``origin [S, 3]``, ``time [S]``, ``network [S]`` (index into the
        networks of ``read_manifest(folder, (split,))``: the full manifest's when every split is generated),
        ``network_name [S]`` (str).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    networks = read_manifest(folder, (split,))["networks"]
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


def load_road_maps(folder: str | os.PathLike, splits=None) -> list:
    """The ``RoadMap`` of every network of the data set (of ``splits`` only, when given and the whole data set is not
    generated: ``read_manifest``), in manifest order (from the stored geometry)."""
    networks = read_manifest(folder, splits)["networks"]
    return [_road_map(_read_network(Path(folder), n["name"]), n["name"]) for n in networks]
