"""SUMO scenes: networks (netgenerate or shipped real ones), random demand, headless libsumo, local scenes.

One network is one job: build the network and its routes, simulate, snapshot, cut scenes, filter them with the
oracles. ``libsumo`` holds one simulation per process, so jobs run in a process pool (spawned, one job per
process); the results come back in network order, so the data depend only on the seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genneg.domains.traffic.data.config import NETWORK_KINDS, REAL_NETWORKS, SPLITS, SumoDataConfig
from genneg.domains.traffic.data.scenes import SceneArrays, boxes_from_sumo, concat_scenes, empty_stats, extract_scenes
from genneg.domains.traffic.data.scenes import filter_valid

__all__ = ["NetworkSpec", "plan_networks", "sumo_home", "build_network", "build_routes", "simulate", "run_network"]

_TELEPORT_COORD = 1e8  # SUMO parks teleporting vehicles at (-2**30, -2**30) with lane ''


def sumo_home() -> Path:
    """SUMO_HOME of the eclipse-sumo wheel (binaries in ``bin/``, ``tools/randomTrips.py``)."""
    try:
        import sumo
    except ImportError as e:
        raise ImportError("SUMO scene data needs eclipse-sumo, libsumo and sumolib: "
                          "pip install 'genneg[traffic]'") from e
    return Path(sumo.SUMO_HOME)


@dataclass(frozen=True)
class NetworkSpec:
    """One network of the data set.

    Attributes:
        name: unique, e.g. ``train-03-grid`` or ``ingolstadt``.
        split: "train", "val" or "test".
        kind: "grid", "spider", "random" (netgenerate) or "real".
        seed: seeds netgenerate, randomTrips, SUMO and the scene draws of this network.
        lanes: lanes per edge (generated networks).
        size: grid junctions per side / spider circles / random iterations.
    """

    name: str
    split: str
    kind: str
    seed: int
    lanes: int = 1
    size: int = 3

    def __post_init__(self):
        if self.split not in SPLITS or self.kind not in NETWORK_KINDS + ("real",):
            raise ValueError(f"bad NetworkSpec {self}: split in {SPLITS}, kind in {NETWORK_KINDS + ('real',)}")
        if self.kind == "real" and self.name not in REAL_NETWORKS:
            raise ValueError(f"unknown real network {self.name!r}; known: {sorted(REAL_NETWORKS)}")


def plan_networks(cfg: SumoDataConfig) -> list[NetworkSpec]:
    """Every network of the config with its split; generated kinds cycle so each split mixes them."""
    seeds = np.random.SeedSequence(cfg.seed).generate_state(sum(cfg.generated) + len(cfg.real))
    specs, k = [], 0
    for split, count in zip(SPLITS, cfg.generated):
        for i in range(count):
            rng = np.random.default_rng(seeds[k])
            kind = NETWORK_KINDS[(i + SPLITS.index(split)) % len(NETWORK_KINDS)]
            size = int(rng.integers(cfg.grid_number[0], cfg.grid_number[1] + 1))
            lanes = int(rng.integers(1, cfg.max_lanes + 1))
            specs.append(NetworkSpec(f"{split}-{i:02d}-{kind}", split, kind, int(seeds[k]), lanes, size))
            k += 1
    for name, split in cfg.real:
        specs.append(NetworkSpec(name, split, "real", int(seeds[k])))
        k += 1
    return specs


def _run_tool(args: list[str], what: str) -> None:
    env = {**os.environ, "SUMO_HOME": str(sumo_home())}
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-800:]
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {' '.join(args[:4])} ...\n{tail}")


def build_network(spec: NetworkSpec, folder: Path) -> Path:
    """The network file of ``spec``: netgenerate output in ``folder``, or the shipped real network."""
    home = sumo_home()
    if spec.kind == "real":
        return home / REAL_NETWORKS[spec.name]
    rng = np.random.default_rng(spec.seed)
    kind_args = {
        "grid": ["--grid", "--grid.number", str(spec.size), "--grid.length", str(int(rng.integers(80, 160)))],
        "spider": ["--spider", "--spider.arm-number", str(int(rng.integers(4, 7))),
                   "--spider.circle-number", str(spec.size), "--spider.space-radius", str(int(rng.integers(60, 110)))],
        "random": ["--rand", "--rand.iterations", str(15 * spec.size * spec.size), "--rand.min-distance", "60",
                   "--rand.max-distance", "200"],
    }[spec.kind]
    junction = str(rng.choice(["traffic_light", "priority"]))
    out = folder / f"{spec.name}.net.xml"
    _run_tool([str(home / "bin" / "netgenerate"), *kind_args, "--default.lanenumber", str(spec.lanes),
               "--turn-lanes", "1", "-j", junction, "--seed", str(spec.seed % 2**31), "-o", str(out),
               "--no-warnings", "true"], f"netgenerate for {spec.name}")
    return out


def build_routes(spec: NetworkSpec, net: Path, folder: Path, cfg: SumoDataConfig) -> Path:
    """Random passenger-car demand over the simulated period (randomTrips with duarouter validation)."""
    types = folder / f"{spec.name}.types.xml"
    rows = "".join(f'    <vType id="{i}" vClass="passenger" length="{length}" width="{width}" probability="{p}"/>\n'
                   for i, length, width, p in cfg.vehicle_types)
    types.write_text(f'<additional>\n  <vTypeDistribution id="cars">\n{rows}  </vTypeDistribution>\n</additional>\n')
    routes = folder / f"{spec.name}.rou.xml"
    _run_tool([sys.executable, str(sumo_home() / "tools" / "randomTrips.py"), "-n", str(net), "-e", str(cfg.end_time),
               "-p", str(cfg.trip_period), "--fringe-factor", "5", "--min-distance", "150", "--validate",
               "--seed", str(spec.seed % 2**31), "-a", str(types), "-t", 'type="cars"',
               "-o", str(folder / f"{spec.name}.trips.xml"), "-r", str(routes)], f"randomTrips for {spec.name}")
    return routes


def simulate(net: Path, routes: Path, seed: int, times: np.ndarray, vclasses=("passenger",)):
    """Runs libsumo headless and returns, per snapshot time, the world boxes of the vehicles on the road.

    Teleporting vehicles (lane ``''``, position near -2**30) and vehicles of other classes are dropped.

    Returns:
        (list of [M_t, 5] boxes, {"vehicles": ..., "teleporting": ..., "other_class": ...} counts).
    """
    import libsumo

    libsumo.start([str(sumo_home() / "bin" / "sumo"), "-n", str(net), "-r", str(routes), "--seed", str(seed % 2**31),
                   "--no-step-log", "true", "--no-warnings", "true", "--collision.check-junctions", "true",
                   "--ignore-route-errors", "true", "--end", str(float(times[-1]) + 1)])
    counts = {"vehicles": 0, "teleporting": 0, "other_class": 0}
    snapshots = []
    try:
        for t in times:
            libsumo.simulationStep(float(t))
            snapshots.append(_snapshot(libsumo.vehicle, vclasses, counts))
    finally:
        libsumo.close()
    return snapshots, counts


def _snapshot(veh, vclasses, counts) -> np.ndarray:
    rows = []
    for vid in veh.getIDList():
        (x, y), lane = veh.getPosition(vid), veh.getLaneID(vid)
        counts["vehicles"] += 1
        if lane == "" or abs(x) > _TELEPORT_COORD or abs(y) > _TELEPORT_COORD:
            counts["teleporting"] += 1
        elif veh.getVehicleClass(vid) not in vclasses:
            counts["other_class"] += 1
        else:
            rows.append((x, y, veh.getAngle(vid), veh.getLength(vid), veh.getWidth(vid)))
    rows = np.asarray(rows, np.float64).reshape(-1, 5)
    return boxes_from_sumo(rows[:, :2], rows[:, 2], rows[:, 3], rows[:, 4])


def run_network(spec: NetworkSpec, cfg: SumoDataConfig, folder: str) -> tuple[SceneArrays, dict]:
    """One process-pool job: network -> routes -> simulation -> valid scenes of this network, and its stats."""
    from genneg.domains.traffic.data.store import geometry_arrays
    from genneg.domains.traffic.map import read_sumo_net

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net = build_network(spec, folder)
    routes = build_routes(spec, net, folder, cfg)
    times = cfg.warmup + cfg.snapshot_every * np.arange(1, cfg.snapshots + 1)
    snapshots, counts = simulate(net, routes, spec.seed, times)
    road_map = read_sumo_net(net)
    rng = np.random.default_rng(spec.seed)
    stats, parts = {**counts, **empty_stats()}, []
    for t, world in zip(times, snapshots):
        if len(world) == 0:
            continue
        centres = rng.choice(len(world), size=min(cfg.centres_per_snapshot, len(world)), replace=False)
        parts.append(filter_valid(extract_scenes(world, road_map, centres, cfg.scene, t), cfg.scene, stats))
    stats["network_file"] = str(net)
    stats["route_file"] = str(routes)
    stats["geometry"] = geometry_arrays(road_map)  # stored with the scenes, not in the manifest
    return concat_scenes(parts, cfg.scene), stats
