"""Configs of the traffic scene data: scene layout and SUMO generation, frozen dataclasses with named presets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

__all__ = ["SceneConfig", "SumoDataConfig", "REAL_NETWORKS", "PRESETS", "sumo_preset"]

SPLITS = ("train", "val", "test")

# Real networks shipped inside the eclipse-sumo wheel (ODbL-derived), relative to SUMO_HOME.
REAL_NETWORKS = {
    "ingolstadt": "tools/game/fkk_in/ingolstadt.net.xml.gz",
    "braunschweig": "tools/game/bs3d/bs.net.xml",
    "a10kw": "tools/game/A10KW/osm.net.xml",
    "berlin_drt": "tools/game/DRT/osm.net.xml",
}
NETWORK_KINDS = ("grid", "spider", "random")


@dataclass(frozen=True)
class SceneConfig:
    """Layout of one scene.

    Attributes:
        max_vehicles: N, vehicle slots per scene (padded with ``defined=False``).
        radius: R in metres; a scene holds the N vehicles nearest its centre vehicle with centres within R.
        area_margin: metres added to R when cropping the drivable area, so edge boxes are judged fairly.
        offroad_tolerance: metres a corner may stick out of the drivable area (nuPlan: 0.3).
    """

    max_vehicles: int = 12
    radius: float = 50.0
    area_margin: float = 10.0
    offroad_tolerance: float = 0.3

    def __post_init__(self):
        if self.max_vehicles < 1:
            raise ValueError(f"SceneConfig needs max_vehicles >= 1: {self}")
        if not self.radius > 0 or self.area_margin < 0 or self.offroad_tolerance < 0:
            raise ValueError(f"SceneConfig needs radius > 0, area_margin >= 0, offroad_tolerance >= 0: {self}")


@dataclass(frozen=True)
class SumoDataConfig:
    """SUMO scene generation. Each split gets its own networks, so val/test networks are never seen in training.

    Attributes:
        name: preset name (part of the cache folder).
        seed: master seed; every network, route file, simulation and scene choice derives from it.
        generated: number of ``netgenerate`` networks per split, as (train, val, test).
        real: (real network name, split) pairs, names from ``REAL_NETWORKS``.
        grid_number, max_lanes: ranges of generated network sizes (junctions per grid side, lanes per edge).
        trip_period: seconds between inserted trips (randomTrips ``-p``; smaller = denser traffic).
        warmup: simulated seconds before the first snapshot; snapshots every ``snapshot_every`` seconds.
        centres_per_snapshot: scenes drawn per snapshot (distinct random centre vehicles).
        vehicle_types: (id, length, width, probability) of the passenger-car type distribution.
        workers: processes (one SUMO simulation per process).
    """

    name: str = "demo"
    seed: int = 0
    scene: SceneConfig = field(default_factory=SceneConfig)
    generated: tuple[int, int, int] = (9, 2, 2)
    real: tuple[tuple[str, str], ...] = (("braunschweig", "train"), ("a10kw", "val"), ("ingolstadt", "test"))
    grid_number: tuple[int, int] = (3, 5)
    max_lanes: int = 3
    trip_period: float = 0.5
    warmup: float = 200.0
    snapshots: int = 40
    snapshot_every: float = 5.0
    centres_per_snapshot: int = 6
    vehicle_types: tuple[tuple[str, float, float, float], ...] = (
        ("compact", 3.8, 1.65, 0.3), ("sedan", 4.6, 1.8, 0.5), ("large", 5.2, 2.0, 0.2))
    workers: int = 2

    def __post_init__(self):
        if len(self.generated) != 3 or min(self.generated) < 0:
            raise ValueError(f"generated must be (train, val, test) counts >= 0, got {self.generated}")
        for net, split in self.real:
            if net not in REAL_NETWORKS or split not in SPLITS:
                raise ValueError(f"real network ({net!r}, {split!r}): name must be one of {sorted(REAL_NETWORKS)}, "
                                 f"split one of {SPLITS}")
        for i, split in enumerate(SPLITS):
            if self.generated[i] + sum(s == split for _, s in self.real) == 0:
                raise ValueError(f"split {split!r} has no network; add generated or real networks")
        lo, hi = self.grid_number
        if not 2 <= lo <= hi or not 1 <= self.max_lanes <= 3:
            raise ValueError(f"need 2 <= grid_number[0] <= grid_number[1] and 1 <= max_lanes <= 3: {self}")
        if not (self.trip_period > 0 and self.warmup >= 0 and self.snapshot_every > 0):
            raise ValueError("trip_period and snapshot_every must be > 0 and warmup >= 0")
        if self.snapshots < 1 or self.centres_per_snapshot < 1 or self.workers < 1:
            raise ValueError("snapshots, centres_per_snapshot and workers must be >= 1")
        if not self.vehicle_types or any(len(t) != 4 or t[1] <= 0 or t[2] <= 0 or t[3] <= 0
                                         for t in self.vehicle_types):
            raise ValueError(f"vehicle_types must be (id, length > 0, width > 0, probability > 0) tuples")

    @property
    def end_time(self) -> float:
        return self.warmup + self.snapshots * self.snapshot_every

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of the resolved config: the cache key (workers excluded, they do not change the data)."""
        d = self.to_dict()
        d.pop("workers")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


PRESETS = {
    # tests: three small generated networks (one per split), a few hundred scenes, well under a minute on 2 cores
    "tiny": dict(name="tiny", generated=(1, 1, 1), real=(), grid_number=(3, 3), max_lanes=2, warmup=100.0,
                 snapshots=20, snapshot_every=5.0, centres_per_snapshot=6),
    # a few thousand scenes; one real network is test-only
    "demo": dict(name="demo"),
    # ~100k scenes for the CPU base (N = 12): 120 generated training networks of every kind, 12 + 12 held out,
    # two real networks in training and one each for val and test (reported apart); 32 centres per snapshot
    "cpu": dict(name="cpu", generated=(120, 12, 12), grid_number=(2, 6), snapshots=30, centres_per_snapshot=32,
                real=(("braunschweig", "train"), ("berlin_drt", "train"), ("a10kw", "val"), ("ingolstadt", "test"))),
    # tens of thousands of scenes for a GPU run: more networks and snapshots, two real networks in training
    "paper": dict(name="paper", generated=(40, 5, 5), snapshots=80, centres_per_snapshot=8,
                  real=(("braunschweig", "train"), ("berlin_drt", "train"), ("a10kw", "val"), ("ingolstadt", "test"))),
}


def sumo_preset(name: str, **overrides) -> SumoDataConfig:
    """The named preset with ``overrides`` applied (``dataclasses.replace`` semantics)."""
    if name not in PRESETS:
        raise ValueError(f"unknown SUMO data preset {name!r}; known: {sorted(PRESETS)}")
    return dataclasses.replace(SumoDataConfig(), **{**PRESETS[name], **overrides})
