"""Property-based tests (hypothesis, derandomised so every run checks the same examples).

- The separating-axis collision test equals Shapely's "interiors intersect with positive area" on
  ``SAT_FAMILIES x SAT_EXAMPLES x SAT_PAIRS`` generated box pairs: random, exactly touching (edge, corner, partial
  edge), nested, thin (degenerate) and huge-coordinate boxes, except on pairs that overlap by no more than the
  oracle's 1 mm tolerance (``COLLISION_TOLERANCE``): those "touch" and never collide, while Shapely counts any
  positive area. Exactly touching boxes never collide.
- The traffic oracle is invariant to moving a whole scene with its map (rotation + translation) and to permuting
  vehicles (with their padding mask).
- The motion oracles are invariant to mirroring (x -> -x) and to translation on the floor.
- The importance-weighted classifier loss has its optimum at the log-odds under the model's prior
  (``log alpha / (1 - alpha)`` plus the likelihood ratio), and without weights at the balanced log-odds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
shapely = pytest.importorskip("shapely")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from genneg.classifier import balanced_set, importance_weights  # noqa: E402
from genneg.oracles.traffic import COLLISION_TOLERANCE, SceneOracle, box_corners, pairwise_overlap_sat  # noqa: E402

SAT_FAMILIES = ("random", "touching", "nested", "thin", "huge")
SAT_EXAMPLES = 80  # hypothesis examples per family
SAT_PAIRS = 25  # box pairs per example (checked in one vectorised call)
INVARIANCE_EXAMPLES = 120  # per invariance property
LOSS_EXAMPLES = 200
CHECKED = {family: 0 for family in SAT_FAMILIES}  # pairs actually compared, per family
COLLIDING = {family: 0 for family in SAT_FAMILIES}  # of which collide
EXACTLY_TOUCHING = [0]  # touching pairs whose separation is exactly 0 (edge, part of an edge, corner)


def profile(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------------------------ SAT vs Shapely
coord = st.floats(-30, 30, allow_nan=False)
yaw = st.floats(-math.pi, math.pi, allow_nan=False)
size = st.floats(0.1, 15, allow_nan=False)
quarter = st.integers(-80, 80).map(lambda k: k / 4)  # exactly representable, so touching is exact
quarter_size = st.integers(1, 40).map(lambda k: k / 4)


@st.composite
def random_pair(draw):
    return [draw(coord), draw(coord), draw(yaw), draw(size), draw(size)], \
           [draw(coord), draw(coord), draw(yaw), draw(size), draw(size)]


@st.composite
def touching_pair(draw):
    """Axis-aligned boxes sharing an edge, part of an edge, or a corner (or, for contrast, 1/4 m apart / into)."""
    x, y, l1, w1, l2, w2 = (draw(quarter), draw(quarter), draw(quarter_size), draw(quarter_size), draw(quarter_size),
                            draw(quarter_size))
    gap = draw(st.sampled_from([0.0, 0.0, 0.0, 0.25, -0.25]))
    horizontal = draw(st.booleans())
    sign = draw(st.sampled_from([-1.0, 1.0]))
    if horizontal:  # side by side along x; slide along y up to the corner
        dx = sign * ((l1 + l2) / 2 + gap)
        dy = draw(st.integers(-int(2 * (w1 + w2)), int(2 * (w1 + w2)))) / 4
        return [x, y, 0.0, l1, w1], [x + dx, y + dy, 0.0, l2, w2]
    dy = sign * ((w1 + w2) / 2 + gap)
    dx = draw(st.integers(-int(2 * (l1 + l2)), int(2 * (l1 + l2)))) / 4
    return [x, y, 0.0, l1, w1], [x + dx, y + dy, 0.0, l2, w2]


@st.composite
def nested_pair(draw):
    """A box strictly inside another (any rotations), or the same box twice."""
    x, y, a, length, width = draw(coord), draw(coord), draw(yaw), draw(st.floats(2, 20)), draw(st.floats(2, 20))
    if draw(st.integers(0, 9)) == 0:
        return [x, y, a, length, width], [x, y, a, length, width]
    inner = min(length, width) / 2  # radius of the inscribed disc
    r = draw(st.floats(0.0, 0.45)) * inner
    phi = draw(yaw)
    half_diag = draw(st.floats(0.01, 0.45)) * inner
    t = draw(st.floats(0.1, 0.9))  # split the half diagonal between length and width
    li, wi = 2 * half_diag * t, 2 * half_diag * math.sqrt(1 - t * t)
    return [x, y, a, length, width], [x + r * math.cos(phi), y + r * math.sin(phi), draw(yaw), li, wi]


@st.composite
def thin_pair(draw):
    """Needle-like boxes (width down to a micrometre) crossing or passing close to each other."""
    width = st.floats(1e-6, 1e-2)
    x, y = draw(coord), draw(coord)
    d = draw(st.floats(-2, 2))
    return [x, y, draw(yaw), draw(st.floats(1, 50)), draw(width)], \
           [x + d, y - d, draw(yaw), draw(st.floats(1, 50)), draw(width)]


@st.composite
def huge_pair(draw):
    """A random pair moved a thousand to ten million metres from the origin."""
    a, b = draw(random_pair())
    ox = draw(st.floats(1e3, 1e7)) * draw(st.sampled_from([-1.0, 1.0]))
    oy = draw(st.floats(1e3, 1e7)) * draw(st.sampled_from([-1.0, 1.0]))
    return [a[0] + ox, a[1] + oy, *a[2:]], [b[0] + ox, b[1] + oy, *b[2:]]


FAMILY_STRATEGY = {"random": random_pair(), "touching": touching_pair(), "nested": nested_pair(),
                   "thin": thin_pair(), "huge": huge_pair()}


def shapely_positive_area_overlap(boxes: np.ndarray) -> np.ndarray:
    """Reference: bool [P] for pairs boxes [P, 2, 5]: Shapely polygons intersect with positive area."""
    poly = shapely.polygons(box_corners(boxes))
    a, b = poly[:, 0], poly[:, 1]
    return shapely.intersects(a, b) & (shapely.area(shapely.intersection(a, b)) > 0)


def sat_margin(boxes: np.ndarray) -> np.ndarray:
    """Signed separation [P] of each pair on its best separating axis (> 0 apart, < 0 overlapping), metres."""
    i, j = boxes[:, 0], boxes[:, 1]
    d = j[:, :2] - i[:, :2]
    out = np.full(len(boxes), -np.inf)
    for a, b in ((i, j), (j, i)):
        c, s = np.cos(a[:, 2]), np.sin(a[:, 2])
        dc = np.abs(np.cos(b[:, 2] - a[:, 2]))
        ds = np.abs(np.sin(b[:, 2] - a[:, 2]))
        on_len = np.abs(d[:, 0] * c + d[:, 1] * s) - (a[:, 3] / 2 + b[:, 3] / 2 * dc + b[:, 4] / 2 * ds)
        on_wid = np.abs(d[:, 1] * c - d[:, 0] * s) - (a[:, 4] / 2 + b[:, 3] / 2 * ds + b[:, 4] / 2 * dc)
        out = np.maximum(out, np.maximum(on_len, on_wid))
    return out


@pytest.mark.parametrize("family", SAT_FAMILIES)
def test_sat_equals_shapely_positive_area(family):
    @profile(SAT_EXAMPLES)
    @given(st.lists(FAMILY_STRATEGY[family], min_size=SAT_PAIRS, max_size=SAT_PAIRS))
    def check(pairs):
        boxes = np.array(pairs, np.float64)  # [P, 2, 5]: each pair is one scene of two vehicles
        sat = pairwise_overlap_sat(boxes)[:, 0, 1]
        ref = shapely_positive_area_overlap(boxes)
        scale = 1.0 + np.abs(boxes[..., :2]).max(axis=(1, 2)) + boxes[..., 3:].max(axis=(1, 2))
        if family in ("touching", "nested"):  # exact geometry, overlaps of 0 or >= 2 mm: no excuse
            np.testing.assert_array_equal(sat, ref)
        else:  # a disagreement is allowed only where the pair touches: overlap within [0, tolerance] + rounding
            disagree = sat != ref
            margin = sat_margin(boxes)[disagree]  # -(overlap depth) on the best axis
            rounding = 1e-9 * scale[disagree]
            assert ((margin <= rounding) & (margin >= -COLLISION_TOLERANCE - rounding)).all(), boxes[disagree][:3]
        if family == "touching":
            touching = sat_margin(boxes) == 0.0
            assert not sat[touching].any(), "touching boxes must not collide (strict rule)"
            EXACTLY_TOUCHING[0] += int(touching.sum())
        if family == "nested":
            assert sat.all()
        CHECKED[family] += len(pairs)
        COLLIDING[family] += int(sat.sum())

    check()


def test_sat_cases_checked_add_up_to_at_least_ten_thousand():
    if not all(CHECKED.values()):
        pytest.skip("run together with test_sat_equals_shapely_positive_area")
    assert sum(CHECKED.values()) >= 10_000, CHECKED
    for family in ("random", "touching", "thin", "huge"):  # both verdicts well represented
        assert 0.05 < COLLIDING[family] / CHECKED[family] < 0.95, (family, COLLIDING[family], CHECKED[family])
    assert EXACTLY_TOUCHING[0] >= 500, EXACTLY_TOUCHING


# ------------------------------------------------------------------------------- traffic oracle invariances
@st.composite
def scene_with_map(draw):
    """Up to 6 vehicles (some padded) and a drivable area made of 1-3 straight roads."""
    roads = []
    for _ in range(draw(st.integers(1, 3))):
        cx, cy, a = draw(st.floats(-20, 20)), draw(st.floats(-20, 20)), draw(yaw)
        road = shapely.box(-40, -draw(st.floats(2, 8)), 40, draw(st.floats(2, 8)))
        roads.append(shapely.affinity.translate(shapely.affinity.rotate(road, a, origin=(0, 0), use_radians=True),
                                                cx, cy))
    n = draw(st.integers(1, 6))
    boxes = np.array([[draw(st.floats(-25, 25)), draw(st.floats(-25, 25)), draw(yaw), draw(st.floats(1, 6)),
                       draw(st.floats(0.5, 2.5))] for _ in range(n)])
    defined = np.array([draw(st.booleans()) for _ in range(n)])
    defined[draw(st.integers(0, n - 1))] = True
    return boxes[None], defined[None], shapely.union_all(roads)


def _borderline(boxes, defined, area, tolerance) -> tuple[np.ndarray, np.ndarray]:
    """Vehicles whose off-road verdict, and pairs whose collision verdict, sit on a floating-point knife edge."""
    corners = box_corners(boxes[0])  # [N, 4, 2]
    dist = shapely.distance(area, shapely.points(corners.reshape(-1, 2))).reshape(corners.shape[:2])
    off_edge = (np.abs(dist - tolerance) < 1e-7).any(1) | (np.abs(dist) < 1e-7).any(1)
    n = boxes.shape[1]
    ii, jj = np.triu_indices(n, 1)
    pair_edge = np.zeros((n, n), bool)
    if len(ii):
        margin = sat_margin(np.stack([boxes[0, ii], boxes[0, jj]], 1))
        pair_edge[ii, jj] = pair_edge[jj, ii] = np.abs(margin) < 1e-7
    return off_edge, pair_edge.any(1)


@profile(INVARIANCE_EXAMPLES)
@given(scene_with_map(), st.floats(-math.pi, math.pi), st.floats(-500, 500), st.floats(-500, 500))
def test_traffic_oracle_invariant_to_moving_the_scene_with_its_map(scene, theta, tx, ty):
    boxes, defined, area = scene
    oracle = SceneOracle()
    before = oracle.per_vehicle({"boxes": boxes, "defined": defined}, {"drivable_area": area})
    c, s = math.cos(theta), math.sin(theta)
    moved = boxes.copy()
    moved[..., 0] = c * boxes[..., 0] - s * boxes[..., 1] + tx
    moved[..., 1] = s * boxes[..., 0] + c * boxes[..., 1] + ty
    moved[..., 2] = boxes[..., 2] + theta
    moved_area = shapely.affinity.translate(shapely.affinity.rotate(area, theta, origin=(0, 0), use_radians=True),
                                            tx, ty)
    after = oracle.per_vehicle({"boxes": moved, "defined": defined}, {"drivable_area": moved_area})
    off_edge, col_edge = _borderline(boxes, defined, area, oracle.tolerance)
    for reason, edge in (("offroad", off_edge), ("collision", col_edge)):
        differ = (before[reason] != after[reason])[0]
        assert not (differ & ~edge).any(), f"{reason} changed when the scene moved: {before[reason]} {after[reason]}"


@profile(INVARIANCE_EXAMPLES)
@given(scene_with_map(), st.randoms(use_true_random=False))
def test_traffic_oracle_invariant_to_permuting_vehicles(scene, rnd):
    boxes, defined, area = scene
    perm = list(range(boxes.shape[1]))
    rnd.shuffle(perm)
    oracle = SceneOracle()
    before = oracle.per_vehicle({"boxes": boxes, "defined": defined}, {"drivable_area": area})
    after = oracle.per_vehicle({"boxes": boxes[:, perm], "defined": defined[:, perm]}, {"drivable_area": area})
    for reason in ("collision", "offroad"):
        np.testing.assert_array_equal(before[reason][:, perm], after[reason])
    whole = oracle({"boxes": boxes, "defined": defined}, {"drivable_area": area})
    permuted = oracle({"boxes": boxes[:, perm], "defined": defined[:, perm]}, {"drivable_area": area})
    np.testing.assert_array_equal(whole.valid, permuted.valid)


# -------------------------------------------------------------------------------- motion oracle invariances
grid = st.integers(-2048, 2048).map(lambda k: k / 1024)  # metres on a 1/1024 grid: translations are exact


@st.composite
def motions(draw):
    """B motions of T frames: V vertices and 2 toe joints, near the floor so every oracle has work to do."""
    b, t, v = draw(st.integers(1, 3)), draw(st.integers(2, 12)), draw(st.integers(1, 6))
    base = np.array(draw(st.lists(grid, min_size=b * t * (v + 2) * 3, max_size=b * t * (v + 2) * 3)))
    points = base.reshape(b, t, v + 2, 3)
    points[..., 1] = points[..., 1] / 8  # heights within +-25 cm of the floor
    defined = np.ones((b, t), bool)
    if draw(st.booleans()):
        defined[:, draw(st.integers(1, t - 1)):] = False
    return points[:, :, :v], points[:, :, v:], defined


def _motion_verdicts(vertices, toes, defined):
    from genneg.oracles.motion import motion_oracle, physdiff_metrics

    result = motion_oracle()({"vertices": vertices, "toes": toes, "defined": defined, "fps": 20.0})
    return result, physdiff_metrics(vertices, 20.0, defined)


@profile(INVARIANCE_EXAMPLES)
@given(motions(), grid, grid)
def test_motion_oracles_invariant_to_mirroring_and_floor_translation(motion, dx, dz):
    vertices, toes, defined = motion
    ref, metrics = _motion_verdicts(vertices, toes, defined)
    mirror = np.array([-1.0, 1.0, 1.0])
    shift = np.array([dx, 0.0, dz])
    for name, (v, t) in {"mirrored": (vertices * mirror, toes[:, :, ::-1] * mirror),
                         "translated": (vertices + shift, toes + shift)}.items():
        got, got_metrics = _motion_verdicts(v, t, defined)
        np.testing.assert_array_equal(ref.valid, got.valid, err_msg=name)
        for reason in ref.reasons:
            np.testing.assert_array_equal(ref.reasons[reason], got.reasons[reason], err_msg=f"{name}: {reason}")
        for key in metrics:
            np.testing.assert_allclose(metrics[key], got_metrics[key], rtol=1e-12, atol=1e-9, err_msg=name)


# ------------------------------------------------------------------------ the importance-weighted loss optimum
def _weighted_optimum(labels: torch.Tensor, weights: torch.Tensor) -> float:
    """The constant logit minimising sum_k w_k BCE(f, y_k): sigmoid(f*) = sum(w y) / sum(w)."""
    weights, labels = weights.double(), labels.double()
    p = float((weights * labels).sum() / weights.sum())
    return math.log(p / (1 - p))


@profile(LOSS_EXAMPLES)
@given(st.integers(1, 400), st.integers(1, 400), st.integers(1, 50), st.integers(1, 50))
def test_importance_weighted_loss_optimum_is_the_log_odds_under_the_models_prior(n_valid, n_invalid, a, b):
    """At a point x where the balanced set holds a valid and b invalid samples (likelihood ratio a / b), with the
    model's raw prior alpha = n_valid / (n_valid + n_invalid), the weighted optimum is log(alpha / (1 - alpha)) +
    log(a / b); the unweighted one (the "w/o IS" ablation) is log(a / b), too sharp by the prior's log-odds."""
    alpha = n_valid / (n_valid + n_invalid)
    labels = torch.cat([torch.ones(a), torch.zeros(b)]).bool()
    weighted = _weighted_optimum(labels.float(), importance_weights(labels, alpha))
    expected = math.log(alpha / (1 - alpha)) + math.log(a / b)
    assert weighted == pytest.approx(expected, abs=1e-4)  # the weights are float32
    assert _weighted_optimum(labels.float(), torch.ones(a + b)) == pytest.approx(math.log(a / b), abs=1e-6)
    # the gradient of the mean weighted BCE vanishes there (the library's loss, not only the closed form)
    f = torch.tensor(weighted, dtype=torch.float64, requires_grad=True)
    w = importance_weights(labels, alpha).double()
    loss = (w * F.binary_cross_entropy_with_logits(f.expand(a + b), labels.double(), reduction="none")).mean()
    (grad,) = torch.autograd.grad(loss, f)
    assert abs(grad.item()) < 1e-9


@profile(LOSS_EXAMPLES)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**16))
def test_balanced_weighted_set_restores_the_raw_prior(n_valid, n_invalid, seed):
    """Raw samples at one x -> balanced_set (oversampling) -> importance weights: the optimum is the raw log-odds."""
    labels = torch.cat([torch.ones(n_valid), torch.zeros(n_invalid)]).bool()
    x = torch.zeros(len(labels), 2)
    _, yb, _ = balanced_set(x, labels, seed=seed)
    assert int(yb.sum()) == len(yb) - int(yb.sum()) == max(n_valid, n_invalid)  # 50/50
    alpha = n_valid / (n_valid + n_invalid)
    if not 0 < alpha < 1:
        return
    f = _weighted_optimum(yb.float(), importance_weights(yb, alpha))
    assert f == pytest.approx(math.log(n_valid / n_invalid), abs=1e-4)


class _Constant(torch.nn.Module):
    """A classifier net that ignores x: its one logit is what the loss's optimum says it should be."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, c_noise, cond):
        return self.bias.expand(x.shape[0])


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_fit_classifier_reaches_the_prior_log_odds(alpha):
    """Trained through fit_classifier (balanced batches, importance weights, fresh noise): an x-blind classifier
    ends at logit log(alpha / (1 - alpha)), the model's prior; without weights it ends near 0 (balanced)."""
    from genneg.classifier import NoisyClassifier, fit_classifier
    from genneg.training import TrainConfig

    n_valid = int(1000 * alpha)
    labels = torch.cat([torch.ones(n_valid), torch.zeros(1000 - n_valid)]).bool()
    x0 = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=300, batch_size=256, lr=0.05, warmup=0, lr_decay="cosine", ema_decay=0.9)
    weighted = fit_classifier(NoisyClassifier(_Constant(), 0.5), x0, labels, cfg, alpha=alpha)
    plain = fit_classifier(NoisyClassifier(_Constant(), 0.5), x0, labels, cfg, alpha=None)
    x = torch.zeros(1, 2)
    assert weighted.logit(x, torch.ones(1)).item() == pytest.approx(math.log(alpha / (1 - alpha)), abs=0.1)
    assert plain.logit(x, torch.ones(1)).item() == pytest.approx(0.0, abs=0.1)
