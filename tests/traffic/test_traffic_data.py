"""Scene data: SUMO box conversion, configs, the tiny SUMO pipeline end to end, and the INTERACTION loader."""

import dataclasses

import numpy as np
import pytest

shapely = pytest.importorskip("shapely")

from genneg.domains.traffic.data import (SceneConfig, SumoDataConfig, load_interaction, load_scenes,  # noqa: E402
                                         sumo_preset)
from genneg.domains.traffic.data.scenes import boxes_from_sumo  # noqa: E402
from genneg.oracles.traffic import scene_infractions  # noqa: E402


def test_boxes_from_sumo_front_bumper_and_compass_angle():
    boxes = boxes_from_sumo([[10.0, 0.0], [5.0, 5.0], [0.0, 0.0]], [90.0, 0.0, 225.0], [4.0, 5.0, 2.0], [1.8, 2.0, 1.0])
    np.testing.assert_allclose(boxes[0], [8.0, 0.0, 0.0, 4.0, 1.8], atol=1e-12)  # east: centre 2 m behind
    np.testing.assert_allclose(boxes[1], [5.0, 2.5, np.pi / 2, 5.0, 2.0], atol=1e-12)  # north
    np.testing.assert_allclose(boxes[2, :3], [np.sqrt(0.5), np.sqrt(0.5), -3 * np.pi / 4], atol=1e-12)  # south-west


def test_sumo_snapshot_drops_teleporting_and_other_classes():
    pytest.importorskip("sumo")
    from genneg.domains.traffic.data.sumo import _snapshot

    class FakeVehicles:  # libsumo.vehicle's getters for three vehicles
        rows = {"car": ((10.0, 0.0), "e_0", "passenger"), "tele": ((-2.0**30, -2.0**30), "", "passenger"),
                "bus": ((30.0, 0.0), "e_0", "bus")}

        def getIDList(self):
            return list(self.rows)

        def getPosition(self, v):
            return self.rows[v][0]

        def getLaneID(self, v):
            return self.rows[v][1]

        def getVehicleClass(self, v):
            return self.rows[v][2]

        def getAngle(self, v):
            return 90.0

        def getLength(self, v):
            return 4.0

        def getWidth(self, v):
            return 1.8

    counts = {"vehicles": 0, "teleporting": 0, "other_class": 0}
    world = _snapshot(FakeVehicles(), ("passenger",), counts)
    np.testing.assert_allclose(world, [[8.0, 0.0, 0.0, 4.0, 1.8]], atol=1e-12)
    assert counts == {"vehicles": 3, "teleporting": 1, "other_class": 1}


def test_configs_validate_and_presets():
    with pytest.raises(ValueError, match="radius > 0"):
        SceneConfig(radius=0.0)
    with pytest.raises(ValueError, match="real network"):
        SumoDataConfig(real=(("atlantis", "test"),))
    with pytest.raises(ValueError, match="split 'val' has no network"):
        SumoDataConfig(generated=(1, 0, 1), real=())
    with pytest.raises(ValueError, match="unknown SUMO data preset"):
        sumo_preset("huge")
    tiny = sumo_preset("tiny")
    assert tiny.digest() == sumo_preset("tiny", workers=1).digest() != sumo_preset("tiny", seed=1).digest()
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny.seed = 3


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    pytest.importorskip("sumo")
    pytest.importorskip("libsumo")
    pytest.importorskip("sumolib")
    from genneg.domains.traffic.data import generate_scenes, read_manifest

    path = generate_scenes(tmp_path_factory.mktemp("scenes"), sumo_preset("tiny"))
    return path, read_manifest(path)


def test_tiny_pipeline_manifest_and_splits(tiny_data):
    path, manifest = tiny_data
    splits = {n["name"]: n["split"] for n in manifest["networks"]}
    assert sorted(splits.values()) == ["test", "train", "val"]  # one network per split: never shared
    totals = manifest["totals"]
    assert totals["scenes_kept"] == sum(manifest["scenes_per_split"].values()) >= 200
    assert totals["scenes_tried"] == totals["scenes_kept"] + totals["invalid_collision"] + totals["invalid_offroad"] \
        + totals["invalid_both"]
    for split in ("train", "val", "test"):
        data = load_scenes(path, split)
        assert set(data["network_name"]) == {n for n, s in splits.items() if s == split}
    from genneg.domains.traffic.data import generate_scenes

    assert generate_scenes(path.parent, sumo_preset("tiny")) == path  # cached: same folder, no re-run


def test_tiny_scenes_are_valid_local_and_well_formed(tiny_data):
    path, manifest = tiny_data
    cfg = SceneConfig(**manifest["config"]["scene"])
    data = load_scenes(path, "train")
    s, n = data["defined"].shape
    assert data["boxes"].shape == (s, n, 5) and n == cfg.max_vehicles and s > 50
    from genneg.domains.traffic.data import load_road_maps

    maps = load_road_maps(path)  # each network's stored geometry: the scene-frame areas are cut from it
    assert [m.name for m in maps] == [n["name"] for n in manifest["networks"]]
    half = cfg.radius + cfg.area_margin
    areas = np.array([maps[k].area_crop(o[:2], o[2], half) for k, o in zip(data["network"], data["origin"])])
    np.testing.assert_array_equal(data["boxes"][:, 0, :3], 0.0)  # the centre vehicle defines the frame
    assert (np.sort(data["defined"], axis=1)[:, ::-1] == data["defined"]).all()  # vehicles first, then padding
    assert np.hypot(*data["boxes"][..., :2][data["defined"]].T).max() <= cfg.radius + 1e-3
    assert data["defined"].sum(1).mean() > 2  # scenes hold neighbours, not lone cars
    flags = scene_infractions(data["boxes"], data["defined"], areas, cfg.offroad_tolerance)
    assert not flags["collision"].any() and not flags["offroad"].any()
    assert maps[0].internal.any() and not maps[0].internal.all()  # junction-internal lanes are flagged


def test_load_scenes_errors(tiny_data, tmp_path):
    path, _ = tiny_data
    with pytest.raises(ValueError, match="unknown split"):
        load_scenes(path, "dev")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_scenes(tmp_path, "train")


def write_tracks(path, rows):
    header = "track_id,frame_id,timestamp_ms,agent_type,x,y,vx,vy,psi_rad,length,width\n"
    path.write_text(header + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def test_interaction_loader_on_written_fixture(tmp_path):
    pytest.importorskip("lanelet2")
    from traffic_fixtures import write_lanelet2_map

    osm = write_lanelet2_map(tmp_path / "DR_TEST.osm")
    rows = []
    for frame in range(1, 21):  # 2 s of three cars driving east in the east lane, one west, plus a pedestrian
        t, dx = frame * 100, frame * 0.5
        rows += [(1, frame, t, "car", 20 + dx, 1.75, 5, 0, 0.0, 4.5, 1.8),
                 (2, frame, t, "car", 30 + dx, 1.75, 5, 0, 0.0, 4.5, 1.8),
                 (3, frame, t, "car", 80 - dx, 5.25, -5, 0, np.pi, 4.5, 1.8),
                 (4, frame, t, "pedestrian/bicycle", 62, 8, 0, 0, 0.0, 0.5, 0.5)]
    rows += [(5, 11, 1100, "car", 30 + 5.5 + 1.0, 1.75, 5, 0, 0.0, 4.5, 1.8)]  # rear-ends car 2 in frame 11
    tracks = write_tracks(tmp_path / "vehicle_tracks_000.csv", rows)
    scenes, stats = load_interaction([tracks], osm, SceneConfig(radius=60.0), frame_stride=10, centres_per_frame=3)
    assert stats["scenes_tried"] == 6 and stats["invalid_collision"] == 3  # frame 11: every centre sees the crash
    assert stats["other_class"] == 20 and len(scenes["boxes"]) == stats["scenes_kept"] == 3
    np.testing.assert_allclose(scenes["boxes"][:, 0, :3], 0.0, atol=1e-5)
    assert set(scenes["network_name"]) == {"DR_TEST"} and (scenes["defined"].sum(1) == 3).all()
    flags = scene_infractions(scenes["boxes"], scenes["defined"], scenes["drivable_area"])
    assert not flags["collision"].any() and not flags["offroad"].any()


def test_interaction_loader_errors(tmp_path):
    bad = tmp_path / "vehicle_tracks_001.csv"
    bad.write_text("id,frame,x,y\n1,1,0,0\n")
    with pytest.raises(ValueError, match="not an INTERACTION vehicle track file"):
        load_interaction([bad], tmp_path / "missing.osm")
    with pytest.raises(ValueError, match="at least one"):
        load_interaction([], tmp_path / "missing.osm")


def test_data_ready_says_whether_the_scenes_exist_without_making_them(tiny_data_dir, tmp_path):
    from genneg.domains.traffic import TrafficDomain

    assert TrafficDomain(preset="tiny", data_dir=tiny_data_dir).data_ready()
    empty = TrafficDomain(preset="tiny", data_dir=tmp_path)
    assert not empty.data_ready() and not any(tmp_path.iterdir())  # asking generated nothing
    assert not TrafficDomain(preset="demo", data_dir=tiny_data_dir).data_ready()  # another config's scenes
