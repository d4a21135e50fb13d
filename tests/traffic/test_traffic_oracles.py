"""Traffic oracles: hand-built scenes, agreement with Shapely references, off-road on a hand-made road, errors."""

import numpy as np
import pytest

shapely = pytest.importorskip("shapely")

from genneg.oracle import FunctionOracle, all_of, get_oracle  # noqa: E402
from genneg.oracles.traffic import (  # noqa: E402
    COLLISION_TOLERANCE,
    box_corners,
    collision,
    infraction_rates,
    offroad,
    pairwise_overlap_sat,
    vehicle_collisions,
)
from overlap_references import pairwise_overlap_loop, pairwise_overlap_shapely  # noqa: E402

CAR = (4.0, 2.0)  # length, width


def scene(*boxes):
    """One scene [1, n, 5] from (x, y, yaw) or (x, y, yaw, length, width) tuples."""
    return np.array([[b if len(b) == 5 else (*b, *CAR) for b in boxes]], np.float64)


def test_box_corners_axis_aligned_and_rotated():
    c = box_corners(np.array([1.0, 2.0, 0.0, 4.0, 2.0]))
    np.testing.assert_allclose(c, [[3, 3], [-1, 3], [-1, 1], [3, 1]])
    c = box_corners(np.array([0.0, 0.0, np.pi / 2, 4.0, 2.0]))
    np.testing.assert_allclose(c, [[-1, 2], [-1, -2], [1, -2], [1, 2]], atol=1e-12)
    assert shapely.Polygon(c).area == pytest.approx(8.0)  # counter-clockwise ring
    assert shapely.Polygon(c).exterior.is_ccw


@pytest.mark.parametrize(
    "boxes, hit",
    [
        (scene((0, 0, 0), (3, 0.5, 0)), True),  # plain overlap
        (scene((0, 0, 0), (4.5, 0, 0)), False),  # gap
        (scene((0, 0, 0), (0, 0, 0, 1.0, 0.5)), True),  # nested
        (scene((0, 0, 0), (0, 0, np.pi / 2)), True),  # crossing at the same centre
        (scene((0, 0, 0, 6.0, 0.2), (0, 0, np.pi / 2, 6.0, 0.2)), True),  # thin cross
        (scene((0, 0, np.pi / 4), (1.5, -1.5, np.pi / 4, 4.0, 1.0)), False),  # AABBs overlap, boxes do not
        (scene((0, 0, np.pi / 4), (0.6, -0.6, np.pi / 4)), True),
        (scene((0, 0, 0.3), (3.3, 0.0, 2.0)), True),  # corner poking into a rotated box
    ],
)
def test_hand_built_scenes(boxes, hit):
    pairs = pairwise_overlap_sat(boxes)
    assert pairs[0, 0, 1] == pairs[0, 1, 0] == hit
    assert not pairs[0].diagonal().any()
    assert collision(boxes)[0] == hit
    np.testing.assert_array_equal(pairs, pairwise_overlap_shapely(boxes))
    np.testing.assert_array_equal(pairs, pairwise_overlap_loop(boxes))


@pytest.mark.parametrize("touching", [((0, 0, 0), (4.0, 0, 0)), ((0, 0, 0), (4.0, 2.0, 0)), ((0, 0, 0), (1.0, 2.0, 0))])
def test_touching_is_not_a_collision(touching):
    boxes = scene(*touching)  # shared edge / shared corner / partial shared edge, exact in floating point
    assert not pairwise_overlap_sat(boxes).any()
    assert not pairwise_overlap_shapely(boxes, strict=True).any()
    assert not pairwise_overlap_loop(boxes).any()
    assert pairwise_overlap_shapely(boxes, strict=False)[0, 0, 1]  # nuPlan's intersects counts it


def end_to_end_pairs(rng, count, gap):
    """``count`` scenes of two boxes placed the way a user writes it: same heading, ``b.x = a.x + (a.length +
    b.length) / 2`` (half of them also rotated: along the heading), or side by side ``b.y = a.y + (a.width +
    b.width) / 2``; ``gap`` metres are added to the distance (negative: pushed into each other)."""
    a = np.column_stack([rng.uniform(-300, 300, (count, 2)), np.zeros(count), rng.uniform(3.5, 12.0, count),
                         rng.uniform(1.5, 2.6, count)])
    b = a.copy()
    b[:, 3], b[:, 4] = rng.uniform(3.5, 12.0, count), rng.uniform(1.5, 2.6, count)
    kind = np.arange(count) % 3
    along = kind == 0
    b[along, 0] = a[along, 0] + (a[along, 3] + b[along, 3]) / 2 + gap
    beside = kind == 1
    b[beside, 1] = a[beside, 1] + (a[beside, 4] + b[beside, 4]) / 2 + gap
    turned = kind == 2  # end to end along a random heading
    yaw = rng.uniform(-np.pi, np.pi, turned.sum())
    a[turned, 2] = b[turned, 2] = yaw
    reach = (a[turned, 3] + b[turned, 3]) / 2 + gap
    b[turned, 0] = a[turned, 0] + reach * np.cos(yaw)
    b[turned, 1] = a[turned, 1] + reach * np.sin(yaw)
    return np.stack([a, b], 1)


def test_boxes_placed_end_to_end_do_not_collide_but_pushed_in_by_2mm_do():
    rng = np.random.default_rng(3)
    touching = end_to_end_pairs(rng, 300, 0.0)
    strict = pairwise_overlap_sat(touching, tolerance=0.0)[:, 0, 1]
    assert strict.any()  # without a tolerance, rounding makes some of these collide
    assert not pairwise_overlap_sat(touching).any()
    poly = shapely.polygons(box_corners(touching))
    assert shapely.area(shapely.intersection(poly[:, 0], poly[:, 1])).max() < 1e-9  # Shapely: (rounding) area 0
    pushed = end_to_end_pairs(np.random.default_rng(3), 300, -2 * COLLISION_TOLERANCE)
    assert pairwise_overlap_sat(pushed)[:, 0, 1].all()
    apart = end_to_end_pairs(np.random.default_rng(3), 300, 1e-6)
    assert not pairwise_overlap_sat(apart).any()


def test_overlap_below_the_tolerance_is_not_a_collision():
    boxes = scene((0, 0, 0), (4.0 - COLLISION_TOLERANCE / 2, 0, 0))  # 0.5 mm into each other
    assert not pairwise_overlap_sat(boxes).any()
    assert pairwise_overlap_sat(boxes, tolerance=0.0)[0, 0, 1]
    with pytest.raises(ValueError, match="collision tolerance"):
        pairwise_overlap_sat(boxes, tolerance=-1.0)


def test_undefined_slots_are_ignored_even_when_garbage():
    boxes = scene((0, 0, 0), (0.5, 0, 0), (20, 0, 0))
    boxes[0, 1] = [np.nan, np.inf, 0.0, -1.0, 0.0]
    defined = np.array([[True, False, True]])
    assert not pairwise_overlap_sat(boxes, defined).any()
    assert not vehicle_collisions(boxes, defined).any()


def random_scenes(rng, b, n):
    xy = rng.uniform(-8, 8, (b, n, 2))
    yaw = rng.uniform(-np.pi, np.pi, (b, n, 1))
    length = rng.choice([0.2, 1.0, 4.5, 12.0], (b, n, 1)) * rng.uniform(0.5, 1.5, (b, n, 1))  # thin to long
    width = rng.choice([0.05, 0.5, 2.0], (b, n, 1)) * rng.uniform(0.5, 1.5, (b, n, 1))
    return np.concatenate([xy, yaw, length, width], -1), rng.random((b, n)) < 0.85


def shrunk(boxes, by):
    """Boxes with ``by`` metres taken off every side (sizes kept positive)."""
    out = boxes.copy()
    out[..., 3:] = np.maximum(out[..., 3:] - 2 * by, 1e-9)
    return out


def test_sat_agrees_with_shapely_on_random_pairs():
    """SAT with its 1 mm tolerance against Shapely's strict "interiors intersect": a pair may disagree only when it
    overlaps by less than the tolerance, i.e. when the boxes shrunk by the tolerance on every side are disjoint."""
    rng = np.random.default_rng(0)
    boxes, defined = random_scenes(rng, 2000, 8)  # 2000 * 28 = 56,000 pairs
    defined[:, 0] = True
    sat = pairwise_overlap_sat(boxes, defined)
    ref = pairwise_overlap_shapely(boxes, defined)
    deep = pairwise_overlap_shapely(shrunk(boxes, COLLISION_TOLERANCE), defined)
    assert 0.05 < sat[defined].mean() < 0.6  # both outcomes well represented
    assert not (sat & ~ref).any()  # every collision is a Shapely overlap
    assert not (deep & ~sat).any()  # every overlap deeper than the tolerance is a collision
    assert (ref & ~sat).sum() <= 1e-3 * ref.sum()  # shallow overlaps are rare in random scenes
    loop = pairwise_overlap_loop(boxes[:150], defined[:150])
    np.testing.assert_array_equal(sat[:150] & ~loop, False)
    np.testing.assert_array_equal(sat, np.swapaxes(sat, 1, 2))


def test_collision_is_invariant_to_rigid_motion_and_permutation():
    rng = np.random.default_rng(1)
    boxes, defined = random_scenes(rng, 500, 6)
    defined[:, 0] = True
    theta, shift = 0.7, np.array([120.0, -35.0])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = boxes.copy()
    moved[..., :2] = boxes[..., :2] @ rot.T + shift
    moved[..., 2] += theta
    np.testing.assert_array_equal(collision(boxes, defined), collision(moved, defined))
    perm = rng.permutation(6)
    np.testing.assert_array_equal(vehicle_collisions(boxes, defined)[:, perm],
                                  vehicle_collisions(boxes[:, perm], defined[:, perm]))


ROAD = shapely.box(-50, -2, 50, 2)  # a straight 4 m road


@pytest.mark.parametrize("y, tolerance, off", [(0.0, 0.3, False), (0.2, 0.3, False), (0.5, 0.3, True),
                                                (0.2, 0.0, True), (30.0, 0.3, True)])
def test_offroad_on_hand_made_road(y, tolerance, off):
    boxes = scene((0, y, 0, 4.0, 4.0))  # corners reach y + 2: |y| metres outside the road
    assert offroad(boxes, None, ROAD, tolerance)[0, 0] == off


def test_offroad_per_scene_areas_rotation_and_empty():
    boxes = np.array([[[0, 0, np.pi / 2, 4.8, 1.8]], [[0, 0, 0, 4.8, 1.8]], [[0, 0, 0, 4.8, 1.8]]])
    areas = np.array([shapely.box(-2, -50, 2, 50), ROAD, shapely.Polygon()], dtype=object)
    np.testing.assert_array_equal(offroad(boxes, None, areas)[:, 0], [False, False, True])
    np.testing.assert_array_equal(offroad(boxes[:2], None, ROAD)[:, 0], [True, False])  # vertical car, road along x
    defined = np.array([[True, False], [True, True]])
    two = np.array([[[0, 0, 0, 4, 2], [0, 30, 0, 4, 2]], [[0, 0, 0, 4, 2], [0, 30, 0, 4, 2]]], np.float64)
    np.testing.assert_array_equal(offroad(two, defined, ROAD), [[False, False], [False, True]])


@pytest.mark.parametrize(
    "boxes, defined, match",
    [
        (np.zeros((2, 5)), None, r"\[B, N, 5\]"),
        (np.zeros((1, 2, 4)), None, r"\[B, N, 5\]"),
        (np.zeros((0, 3, 5)), None, "no scene"),
        (scene((0, 0, 0), (np.nan, 0, 0)), None, "NaN or inf"),
        (scene((0, 0, 0), (np.inf, 0, 0)), None, "NaN or inf"),
        (scene((0, 0, 0, 0.0, 2.0)), None, "non-positive"),
        (scene((0, 0, 0, 4.0, -1.0)), None, "non-positive"),
        (scene((0, 0, 0)), np.array([[False]]), "no defined vehicle"),
        (scene((0, 0, 0)), np.array([True, False]), "defined must have shape"),
    ],
)
def test_bad_input_raises_clear_errors(boxes, defined, match):
    with pytest.raises(ValueError, match=match):
        collision(boxes, defined)
    with pytest.raises(ValueError, match=match):
        offroad(boxes, defined, ROAD)


def test_offroad_rejects_bad_areas_and_tolerance():
    boxes = scene((0, 0, 0), (10, 0, 0))
    with pytest.raises(ValueError, match="one geometry or 1 geometries"):
        offroad(boxes, None, [ROAD, ROAD])
    with pytest.raises(ValueError, match="tolerance"):
        offroad(boxes, None, ROAD, tolerance=-1.0)


def test_registered_oracles_and_composition():
    boxes = np.concatenate([scene((0, 0, 0), (3, 0, 0)), scene((0, 0, 0), (10, 0, 0)), scene((0, 5, 0), (20, 0, 0))])
    cond = {"defined": np.ones((3, 2), bool), "drivable_area": np.array([ROAD] * 3, dtype=object)}
    samples = {"boxes": boxes}
    res = get_oracle("traffic:scene")(samples, cond)
    np.testing.assert_array_equal(res.valid, [False, True, False])
    np.testing.assert_array_equal(res.reasons["collision"], [True, False, False])
    np.testing.assert_array_equal(res.reasons["offroad"], [False, False, True])
    col, off = get_oracle("traffic:collision"), get_oracle("traffic:offroad")
    np.testing.assert_array_equal(col(boxes).reasons["collision"], [True, False, False])  # bare array works
    np.testing.assert_array_equal(off(samples, cond).valid, [True, True, False])
    far = FunctionOracle("far", lambda s, c: np.abs(s["boxes"][:, :, 0]).max(1) < 15)
    combined = all_of(col, off, far)(samples, cond)
    np.testing.assert_array_equal(combined.valid, [False, True, False])
    assert set(combined.reasons) == {"collision", "offroad", "far"}
    with pytest.raises(KeyError, match="drivable_area"):
        off(samples, {"defined": cond["defined"]})


def test_infraction_rates_per_scene_and_per_vehicle():
    defined = np.array([[True, True, False], [True, True, True]])
    flags = {"collision": np.array([[True, True, True], [False, False, False]]),
             "offroad": np.array([[False, False, False], [False, False, True]])}
    rates = infraction_rates(flags, defined)
    assert rates["collision"] == 0.5 and rates["offroad"] == 0.5 and rates["total"] == 1.0
    assert rates["collision_per_vehicle"] == pytest.approx(2 / 5)  # padding never counts
    assert rates["total_per_vehicle"] == pytest.approx(3 / 5)
