"""Scene figures, JSON export (world frame round trip) and the SUMO hand-off of generated scenes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from genneg.domains.traffic.export import read_scenes_json, scenes_to_dict, to_world, write_scenes_json  # noqa: E402
from genneg.domains.traffic.handoff import simulate_scene, sumo_pose  # noqa: E402
from genneg.domains.traffic.map import to_scene_frame  # noqa: E402
from genneg.domains.traffic.plot import INVALID, VALID  # noqa: E402


def _scene_with(domain, k):
    """A test scene of the ego and at least k - 1 others, as (x0 [1, N - 1, 6], cond)."""
    x0, cond = domain.dataset("test")
    i = int(np.flatnonzero(cond["defined"].sum(1).numpy() >= k - 1)[0])
    return x0[i : i + 1].clone(), {key: v[i : i + 1] for key, v in cond.items()}


def test_plot_marks_infracting_boxes_red(tiny_domain):
    x0, cond = _scene_with(tiny_domain, 3)
    x0[0, 0, :4] = cond["ego"][0, :4]  # the ego and the first other vehicle collide; the others are fine
    samples = tiny_domain.decode(x0, cond)
    result = tiny_domain.oracle()(samples)
    fig, ax = plt.subplots()
    tiny_domain.plot(samples, None, result, ax, title="stage")
    boxes = [p for p in ax.patches if p.get_zorder() == 2]
    colours = [to_hex(p.get_facecolor()[:3]) for p in boxes]
    n = 1 + int(cond["defined"].sum())  # the ego is drawn too
    assert len(boxes) == n and colours[:2] == [INVALID, INVALID] and set(colours[2:]) == {VALID}
    assert any(p.get_zorder() == 0 for p in ax.patches)  # the drivable area is drawn
    assert "invalid 100.0%" in ax.get_title() and "collision 100.0%" in ax.get_title()
    plt.close(fig)


def test_to_world_inverts_the_scene_frame():
    rng = np.random.default_rng(0)
    origin = np.array([[120.0, -40.0, 0.7]])
    boxes = np.concatenate([rng.uniform(-40, 40, (1, 4, 2)), rng.uniform(-3, 3, (1, 4, 1)), np.full((1, 4, 2), 4.0)],
                           -1)
    world = to_world(boxes, origin)
    np.testing.assert_allclose(to_scene_frame(world[0, :, :2], origin[0, :2], origin[0, 2]), boxes[0, :, :2], atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (world[..., 2] - boxes[..., 2] - 0.7))), 0.0, atol=1e-12)


def test_json_export_round_trip(tiny_domain, tmp_path):
    x0, cond = tiny_domain.dataset("test")
    samples = tiny_domain.decode(x0[:3], {k: v[:3] for k, v in cond.items()})
    flags = tiny_domain.oracle().per_vehicle(samples)
    record = scenes_to_dict(samples, tiny_domain.table, flags)
    back = read_scenes_json(write_scenes_json(tmp_path / "scenes.json", record))
    assert back == record and len(back["scenes"]) == 3
    first = back["scenes"][0]
    assert len(first["vehicles"]) == int(samples["defined"][0].sum())
    assert first["vehicles"][0]["collision"] is False and first["network_file"].endswith(".net.xml")
    centre = first["vehicles"][0]["world"]  # the centre vehicle sits at the scene origin
    np.testing.assert_allclose([centre["x"], centre["y"]], first["origin"][:2], atol=1e-3)
    (tmp_path / "bad.json").write_text('{"format": 0}')
    with pytest.raises(ValueError, match="not a genneg traffic scene file"):
        read_scenes_json(tmp_path / "bad.json")


def test_sumo_pose_is_front_bumper_and_compass_angle():
    np.testing.assert_allclose(sumo_pose([0.0, 0.0, 0.0, 4.0, 2.0]), [2.0, 0.0, 90.0], atol=1e-12)
    np.testing.assert_allclose(sumo_pose([1.0, 1.0, np.pi / 2, 4.0, 2.0]), [1.0, 3.0, 0.0], atol=1e-12)


def test_sumo_handoff_valid_scene_runs_clean_and_a_crash_is_reported(tiny_domain):
    pytest.importorskip("libsumo")
    x0, cond = _scene_with(tiny_domain, 2)
    samples = tiny_domain.decode(x0, cond)
    scene = scenes_to_dict(samples, tiny_domain.table)["scenes"][0]
    world = np.array([[v["world"][f] for f in ("x", "y", "yaw", "length", "width")] for v in scene["vehicles"]])
    ok = simulate_scene(scene["network_file"], world, seconds=3.0)
    assert len(ok["placed"]) == len(world) and not ok["not_placed"]
    assert max(ok["placement_error"].values()) < 2.0  # placed where asked (one 0.1 s step of motion allowed)
    assert not ok["collisions"] and not ok["teleports"]
    crash = world.copy()
    crash[1] = crash[0]
    bad = simulate_scene(scene["network_file"], crash, seconds=1.0)
    assert {"v0", "v1"} <= set(bad["colliding_vehicles"])
    with pytest.raises(FileNotFoundError):
        simulate_scene("missing.net.xml", world)


def _shapely_verdicts(scene, tolerance):
    """Collision / off-road of one exported scene from Shapely alone: box polygons, the WKT area, the tolerance."""
    import shapely

    polygons = []
    for v in scene["vehicles"]:
        c, s = np.cos(v["yaw"]), np.sin(v["yaw"])
        f, left = np.array([c, s]) * v["length"] / 2, np.array([-s, c]) * v["width"] / 2
        centre = np.array([v["x"], v["y"]])
        polygons.append(shapely.Polygon([centre + f + left, centre - f + left, centre - f - left, centre + f - left]))
    area = shapely.from_wkt(scene["drivable_area_wkt"])
    collide = [any(shapely.intersection(p, q).area > 1e-6 for q in polygons if q is not p) for p in polygons]
    off = [max(area.distance(shapely.Point(xy)) for xy in p.exterior.coords) > tolerance for p in polygons]
    return collide, off


def test_export_verdicts_are_reproduced_by_shapely_alone(tiny_domain, tmp_path):
    x0, cond = tiny_domain.dataset("test")
    pick = np.flatnonzero(cond["defined"].sum(1).numpy() >= 2)[:6]
    x0, cond = x0[pick].clone(), {k: v[pick] for k, v in cond.items()}
    x0[1, 0, :4] = cond["ego"][1, :4]  # on top of the ego
    x0[2, 1, :2] += 0.3  # 7.5 m aside
    x0[3, 0, :2] = 1.95  # far off any road
    x0[4] += 0.004 * torch.randn_like(x0[4]) * cond["defined"][4, :, None]  # 10 cm of noise: still valid or not
    samples = tiny_domain.decode(x0, cond)
    result = tiny_domain.oracle()(samples)
    assert 1 <= result.valid.sum() < len(pick)
    path = tiny_domain.export(samples, cond, result, tmp_path / "scenes.json")
    record = read_scenes_json(path)
    tolerance = record["tolerances"]["offroad_m"]
    assert tolerance == 0.3 and len(record["scenes"]) == len(pick)
    for b, scene in enumerate(record["scenes"]):
        collide, off = _shapely_verdicts(scene, tolerance)
        assert scene["reasons"] == {"collision": any(collide), "offroad": any(off)}
        assert scene["valid"] == (not any(collide) and not any(off)) == bool(result.valid[b])
        assert [v["collision"] for v in scene["vehicles"]] == collide
        assert [v["offroad"] for v in scene["vehicles"]] == off
        assert scene["vehicles"][0]["x"] == scene["vehicles"][0]["y"] == 0.0  # the ego first, at the origin
    with pytest.raises(ValueError, match=r"\.json"):
        tiny_domain.export(samples, cond, result, tmp_path / "scenes.npz")


def test_handoff_summary_counts_scenes_vehicles_and_failures():
    from genneg.domains.traffic.handoff import handoff_summary
    from genneg.stats import wilson_interval

    outs = [{"placed": ["v0", "v1"], "colliding_vehicles": ["v0", "v1"], "teleports": [],
             "placement_error": {"v0": 0.1, "v1": 0.3}},
            {"error": "TraCIException: no network"},
            {"placed": ["v0"], "colliding_vehicles": [], "teleports": ["v0"], "placement_error": {}}]
    s = handoff_summary(outs, [3, 2, 1], seconds=2.0)
    assert (s["scenes"], s["vehicles"], s["seconds"]) == (2, 4, 2.0)  # the failed scene is in no count
    assert s["failed"] == [{"scene": 1, "error": "TraCIException: no network"}]
    counts = {k: (r["count"], r["n"]) for k, r in s["rates"].items()}
    assert counts == {"placed": (3, 4), "scenes_with_collision": (1, 2), "vehicles_in_collision": (2, 3),
                      "teleported": (1, 3)}
    assert s["rates"]["placed"]["rate"] == 0.75
    assert (s["rates"]["teleported"]["lo"], s["rates"]["teleported"]["hi"]) == wilson_interval(1, 3)
    assert s["placement_error_m"] == {"mean": pytest.approx(0.2), "max": 0.3, "n": 2}
    with pytest.raises(ValueError, match="3 hand-off outputs for 2 scenes"):
        handoff_summary(outs, [3, 2], seconds=2.0)


def test_handoff_scenes_sums_up_a_valid_and_a_crashing_scene(tiny_domain):
    pytest.importorskip("libsumo")
    from genneg.domains.traffic.handoff import handoff_scenes, world_scenes

    x0, cond = _scene_with(tiny_domain, 2)
    samples = tiny_domain.decode(x0, cond)
    ((net, world),) = world_scenes(samples, tiny_domain.table)
    record = scenes_to_dict(samples, tiny_domain.table)["scenes"][0]  # the export's world frame, the same boxes
    assert net == record["network_file"] and len(world) == len(record["vehicles"])
    np.testing.assert_allclose(world, [[v["world"][f] for f in ("x", "y", "yaw", "length", "width")]
                                       for v in record["vehicles"]])
    crash = world.copy()
    crash[1] = crash[0]
    out = handoff_scenes([(net, world), (net, crash)], seconds=1.0)
    m = len(world)
    assert (out["scenes"], out["vehicles"], out["failed"]) == (2, 2 * m, [])
    assert out["rates"]["placed"]["count"] == 2 * m  # every vehicle of both scenes placed
    assert (out["rates"]["scenes_with_collision"]["count"], out["rates"]["scenes_with_collision"]["n"]) == (1, 2)
    assert out["rates"]["vehicles_in_collision"]["count"] >= 2
    assert {"v0", "v1"} <= set(out["scenes_out"][1]["colliding_vehicles"]) and not out["scenes_out"][0]["collisions"]
    assert 0 < out["placement_error_m"]["n"] <= 2 * m and out["placement_error_m"]["mean"] < 2.0
    with pytest.raises(FileNotFoundError, match="scene 1: SUMO network not found: missing.net.xml"):
        handoff_scenes([(net, world), ("missing.net.xml", world)])
    with pytest.raises(ValueError, match=r"scene 0: world boxes must be a finite \[M >= 1, 5\] array"):
        handoff_scenes([(net, world[:, :4])])
