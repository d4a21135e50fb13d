"""Traffic scene data: SUMO simulation (the embedded default) and an INTERACTION loader, in one scene format."""

from genneg.domains.traffic.data.config import PRESETS, REAL_NETWORKS, SceneConfig, SumoDataConfig, sumo_preset
from genneg.domains.traffic.data.interaction import load_interaction, read_tracks
from genneg.domains.traffic.data.store import generate_scenes, load_road_maps, load_scenes, read_manifest

__all__ = [
    "PRESETS", "REAL_NETWORKS", "SceneConfig", "SumoDataConfig", "sumo_preset",
    "generate_scenes", "load_scenes", "load_road_maps", "read_manifest", "load_interaction", "read_tracks",
]
