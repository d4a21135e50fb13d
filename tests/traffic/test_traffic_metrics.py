"""Evaluation measures of traffic scenes (domains/traffic/metrics.py) and the reference rows
(domains/traffic/references.py): hand-built scenes with known answers, then the tiny SUMO fixture."""

import math

import numpy as np
import pytest

shapely = pytest.importorskip("shapely")

from genneg.domains.traffic.metrics import (  # noqa: E402
    bootstrap_interval,
    nearest_lane,
    network_weights,
    traffic_metrics,
    wasserstein_1d,
)
from genneg.domains.traffic.references import data_samples, lane_samples, rejection_cost, shuffled_samples  # noqa: E402
from genneg.rng import numpy_rng  # noqa: E402
from genneg.oracles.traffic import collision  # noqa: E402

CAR = (4.0, 2.0)
ROAD = shapely.box(-100.0, -4.0, 100.0, 4.0)  # a straight road along x, 8 m wide
LANE = np.array([[[-100.0, 0.0], [0.0, 0.0], [100.0, 0.0]]])  # its centreline, [L=1, P=3, 2], travelling +x


def scenes(*rows):
    """Boxes [S, N, 5] and defined [S, N] from rows of (x, y, yaw) tuples (None = an undefined slot)."""
    n = max(len(r) for r in rows)
    boxes, defined = np.zeros((len(rows), n, 5)), np.zeros((len(rows), n), bool)
    for s, row in enumerate(rows):
        for i, b in enumerate(row):
            if b is not None:
                boxes[s, i], defined[s, i] = (*b, *CAR), True
    return boxes, defined


def lanes(num):
    poly = np.broadcast_to(LANE, (num, *LANE.shape))
    return lambda rows: (poly[rows], np.ones((len(rows), 1), bool))


def reference_of(boxes, defined, networks):
    from genneg.domains.traffic.metrics import scene_features

    return {**scene_features(boxes, defined, lanes(len(boxes))), "network": np.asarray(networks)}


def measure(boxes, defined, networks, reference=None):
    reference = reference or reference_of(boxes, defined, networks)
    return traffic_metrics(boxes, defined, np.full(len(boxes), ROAD), lanes(len(boxes)), np.asarray(networks),
                           reference, tolerance=0.3, radius=50.0)


# ----------------------------------------------------------------------------------------- rates, hand-built


def test_per_scene_and_per_vehicle_rates_and_bands():
    boxes, defined = scenes(
        [(0, 0, 0), (3, 0.5, 0), (30, 0, 0), (15, 9, 0)],  # 1 hits the ego at 3 m; 3 sticks out 4-6 m at 17.5 m
        [(0, 0, 0), (-8, 0, 0), (40, 0, 0), None],  # valid
    )
    m = measure(boxes, defined, ["a", "b"])
    assert m["collision_per_scene"]["value"] == 0.5 and m["offroad_per_scene"]["value"] == 0.5
    assert m["invalid_per_scene"]["value"] == 0.5
    # 5 generated vehicles (the egos are given): one collides (with the ego), one is off-road
    assert m["collision_per_vehicle"]["value"] == pytest.approx(1 / 5)
    assert m["offroad_per_vehicle"]["value"] == pytest.approx(1 / 5)
    assert m["invalid_per_vehicle"]["value"] == pytest.approx(2 / 5)
    # bands: 0-10 m holds vehicles at 3.0 and 8 m, 10-25 m the one at 17.5 m, 25-50 m those at 30 and 40 m
    assert m["collision_per_vehicle_0_10m"]["value"] == pytest.approx(1 / 2)
    assert m["offroad_per_vehicle_10_25m"]["value"] == 1.0
    assert m["invalid_per_vehicle_25_50m"]["value"] == 0.0
    assert m["beyond_50m_per_vehicle"]["value"] == 0.0


def test_ego_is_in_scene_rates_but_not_in_vehicle_rates():
    boxes, defined = scenes([(0, 10, 0), (20, 0, 0)])  # the given ego is off the road; the generated car is not
    m = measure(boxes, defined, ["a"])
    assert m["offroad_per_scene"]["value"] == 1.0
    assert m["offroad_per_vehicle"]["value"] == 0.0


def test_empty_band_has_no_entry_and_far_vehicles_are_counted():
    boxes, defined = scenes([(0, 0, 0), (70, 0, 0)])
    m = measure(boxes, defined, ["a"])
    assert "offroad_per_vehicle_0_10m" not in m and "offroad_per_vehicle_25_50m" not in m
    assert m["beyond_50m_per_vehicle"]["value"] == 1.0


# ----------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_contains_the_estimate_and_widens_when_networks_disagree():
    den = np.full(10, 50.0)
    weights = network_weights(np.arange(10), 1000)
    agree = np.full(10, 10.0)  # every network 20 % invalid
    disagree = np.array([0.0, 20.0] * 5)  # half 0 %, half 40 %: the same pooled 20 %
    lo_a, hi_a = bootstrap_interval(agree, den, weights)
    lo_d, hi_d = bootstrap_interval(disagree, den, weights)
    assert lo_a <= 0.2 <= hi_a and lo_d <= 0.2 <= hi_d
    assert hi_a - lo_a < 1e-12 and hi_d - lo_d > 0.1
    assert all(math.isnan(b) for b in bootstrap_interval(agree[:1], den[:1], network_weights(np.zeros(1, int), 10)))


def test_rate_intervals_come_from_networks_not_scenes():
    rows = [[(0, 0, 0), (20, 0, 0)], [(0, 0, 0), (20, 9, 0)]]  # valid / off-road
    same = [rows[0], rows[1]] * 10  # every network half invalid
    apart = [rows[0]] * 10 + [rows[1]] * 10  # network a all valid, network b all invalid
    nets = ["a"] * 10 + ["b"] * 10
    m_same = measure(*scenes(*same), nets)["invalid_per_scene"]
    m_apart = measure(*scenes(*apart), nets)["invalid_per_scene"]
    assert m_same["value"] == m_apart["value"] == 0.5
    assert m_same["lo"] == m_same["hi"] == 0.5
    assert m_apart["lo"] == 0.0 and m_apart["hi"] == 1.0  # a quarter of the draws hold network a alone


# ----------------------------------------------------------------------------------------- realism


def test_wasserstein_known_values():
    x = np.array([0.0, 1.0, 2.0, 5.0])
    assert wasserstein_1d(x, x) == 0.0
    assert wasserstein_1d(x, x + 3.0) == pytest.approx(3.0)
    assert wasserstein_1d([0.0], [0.0, 2.0]) == pytest.approx(1.0)
    # group weights act as repetition: group 0 twice, group 1 once: [0, 0, 1] against [1]
    assert wasserstein_1d([0.0, 1.0], [1.0], np.array([[2.0, 1.0]]), [0, 1], [0])[0] == pytest.approx(2 / 3)
    # equal weights give the plain distance, whatever the chunking
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.5, 2.0, size=200)
    plain = wasserstein_1d(a, b)
    grouped = wasserstein_1d(a, b, np.ones((2, 3)), rng.integers(3, size=300), rng.integers(3, size=200), chunk=7)
    np.testing.assert_allclose(grouped, plain, rtol=1e-12)
    with pytest.raises(ValueError, match="finite"):
        wasserstein_1d([np.nan], [1.0])


def test_nearest_lane_offset_and_heading():
    pts = np.array([[[10.0, 1.5], [10.0, -3.0], [10.0, 0.0]]])
    yaw = np.array([[0.0, np.pi, np.pi / 2]])
    offset, heading = nearest_lane(pts, yaw, LANE[None], np.ones((1, 1), bool))
    np.testing.assert_allclose(offset, [[1.5, 3.0, 0.0]])
    np.testing.assert_allclose(heading, [[0.0, np.pi, np.pi / 2]], atol=1e-12)
    offset, _ = nearest_lane(pts, yaw, LANE[None], np.zeros((1, 1), bool))  # no visible lane
    assert np.isnan(offset).all()


def realistic(rng, num):
    """Scenes of an ego and 4 cars along the road, 8-14 m apart, on two lanes, on 4 networks."""
    rows = []
    for _ in range(num):
        x = np.cumsum(rng.uniform(8, 14, 4)) * rng.choice([-1, 1])
        rows.append([(0, 0, 0), *((xi, rng.choice([-2.0, 2.0]), 0.0) for xi in x)])
    return scenes(*rows), [f"net{i % 4}" for i in range(num)]


def test_realism_zero_against_itself_positive_when_shrunk_or_scattered():
    (boxes, defined), nets = realistic(np.random.default_rng(0), 40)
    ref = reference_of(boxes, defined, nets)
    w1 = {k: v for k, v in measure(boxes, defined, nets, ref).items() if k.startswith("w1_")}
    assert set(w1) == {"w1_length_m", "w1_width_m", "w1_ego_distance_m", "w1_lane_offset_m", "w1_lane_heading_rad",
                       "w1_gap_m"}
    assert all(v["value"] < 1e-9 and v["lo"] < 1e-9 for v in w1.values())

    shrunk = boxes.copy()
    shrunk[:, 1:, 3:] *= 0.5  # half-size cars: fewer collisions, not realistic
    m = measure(shrunk, defined, nets, ref)
    assert m["w1_length_m"]["value"] == pytest.approx(2.0) and m["w1_width_m"]["value"] == pytest.approx(1.0)
    assert m["w1_gap_m"]["value"] < 1e-9

    scattered = boxes.copy()
    scattered[:, 1:, :2] *= 3.0  # spread out: fewer collisions, farther from the ego and each other, off the lanes
    m = measure(scattered, defined, nets, ref)
    for k in ("w1_ego_distance_m", "w1_gap_m", "w1_lane_offset_m"):
        assert m[k]["value"] > 1.0 and m[k]["lo"] > 0.0, k
    assert m["w1_length_m"]["value"] < 1e-9


# ----------------------------------------------------------------------------------------- references


def test_rejection_cost():
    c = rejection_cost(0.0)
    assert c["value"] == 1.0 and math.isnan(c["lo"]) and math.isnan(c["hi"])  # no interval given, none made up
    c = rejection_cost(0.5, 0.4, 0.75)
    assert c["value"] == pytest.approx(2.0) and c["lo"] == pytest.approx(1 / 0.6) and c["hi"] == pytest.approx(4.0)
    assert rejection_cost(1.0)["value"] == math.inf
    with pytest.raises(ValueError, match="lo <= rate"):
        rejection_cost(0.5, 0.6, 0.7)
    with pytest.raises(ValueError):
        rejection_cost(1.5)


def test_data_metrics_on_the_tiny_fixture(tiny_domain):
    t = tiny_domain.table
    ids = t.ids("test")
    data = data_samples(t, ids)
    m = tiny_domain.metrics(data, None, tiny_domain.oracle()(data), "test")
    assert m["invalid_per_scene"]["value"] == 0.0 and m["invalid_per_vehicle"]["value"] == 0.0
    # the whole split against itself (the reference holds every scene of the tiny split)
    assert all(v["value"] == pytest.approx(0.0, abs=1e-12) for k, v in m.items() if k.startswith("w1_"))


def test_shuffled_maps_reference(tiny_domain):
    t = tiny_domain.table
    ids = t.ids("test")
    out = shuffled_samples(t, ids, numpy_rng(0, "test", "shuffle"))
    np.testing.assert_array_equal(out["boxes"][:, 0], t.boxes[ids, 0])  # each scene keeps its ego and map
    assert (out["donor"] != ids).all()  # the tiny test split is one network: donors are other scenes of it
    np.testing.assert_array_equal(out["boxes"][:, 1:], t.boxes[out["donor"], 1:])
    np.testing.assert_array_equal(out["defined"][:, 1:], t.defined[out["donor"], 1:])
    m = tiny_domain.metrics(out, None, None, "test")
    assert m["offroad_per_vehicle"]["value"] > 0.05  # real boxes that ignore the map leave the road


def test_shuffled_maps_take_donors_of_other_networks(tiny_domain):
    t = tiny_domain.table
    ids = np.arange(len(t))  # every split: three networks
    out = shuffled_samples(t, ids, numpy_rng(0, "test", "shuffle"))
    assert (t.network[out["donor"]] != t.network[ids]).all()


def test_metrics_leave_out_samples_without_a_verdict(tiny_domain):
    from genneg.oracle import OracleResult

    t = tiny_domain.table
    ids = t.ids("test")
    data, shuffled = data_samples(t, ids), shuffled_samples(t, ids, numpy_rng(0, "test", "shuffle"))
    both = {k: np.concatenate([data[k], shuffled[k]]) for k in ("boxes", "defined", "scene")}
    judged = np.arange(2 * len(ids)) < len(ids)  # the shuffled half had no verdict
    result = OracleResult(judged, {"collision": np.zeros(2 * len(ids), bool)}, defined=judged)
    assert tiny_domain.metrics(both, None, result, "test")["invalid_per_scene"]["value"] == 0.0
    assert tiny_domain.metrics(both, None, None, "test")["invalid_per_scene"]["value"] > 0.0


def test_lane_heuristic_reference(tiny_domain):
    t = tiny_domain.table
    ids = t.ids("test")
    sizes = t.boxes[ids, 1:][t.defined[ids, 1:]][:, 3:5].astype(np.float64)
    out = lane_samples(t, ids, numpy_rng(0, "test", "lanes"), sizes)
    assert out["defined"].sum() >= 0.95 * t.defined[ids].sum()  # nearly every slot placed
    assert not collision(out["boxes"], out["defined"]).any()  # overlaps were rejected
    gen = out["defined"][:, 1:]
    assert (np.hypot(*out["boxes"][:, 1:, :2].transpose(2, 0, 1))[gen] <= 50.0).all()
    m = tiny_domain.metrics(out, None, None, "test")
    assert m["offroad_per_vehicle"]["value"] < 0.05
    assert m["w1_lane_heading_rad"]["value"] < 0.1  # headings along the lanes, as the data's
    assert m["w1_ego_distance_m"]["value"] > 1.0  # but not where the data's vehicles are


def test_metrics_in_a_tiny_evaluation(tiny_domain):
    from dataclasses import replace

    from genneg.diffusion import EDMPrecond
    from genneg.evaluate import EvalData, evaluate_denoiser

    cfg = tiny_domain.presets()["tiny"]
    cfg = replace(cfg, sampler=replace(cfg.sampler, steps=2), eval=replace(cfg.eval, num_samples=32, num_nll=4))
    base = EDMPrecond(tiny_domain.make_denoiser_net(cfg.net), tiny_domain.sigma_data).eval().requires_grad_(False)
    metrics, _, _ = evaluate_denoiser(base, tiny_domain, cfg, EvalData(tiny_domain, cfg), tiny_domain.oracle(),
                                      with_nll=False)
    d = metrics["domain"]
    assert {"invalid_per_scene", "collision_per_vehicle", "beyond_50m_per_vehicle", "w1_length_m",
            "w1_gap_m"} <= set(d)
    assert d["invalid_per_scene"]["value"] == pytest.approx(metrics["infraction"]["total"]["rate"])
