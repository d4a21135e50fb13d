"""Scene transformer: shapes, padded slots and map lines never matter, permutation equivariance / invariance."""

import math

import pytest
import torch

from genneg.domains.traffic.net import SceneNet
from genneg.diffusion import EDMPrecond
from traffic_fixtures import B, N, batch


@pytest.fixture(params=[("denoiser", False), ("classifier", False), ("denoiser", True), ("classifier", True)],
                ids=lambda p: f"{p[0]}-relative_values={p[1]}")
def net(request):
    torch.manual_seed(0)
    out, relative_values = request.param
    net = SceneNet(out=out, width=32, depth=2, heads=4, relative_values=relative_values)
    for p in net.parameters():  # zero-initialised heads would make every check trivially pass
        torch.nn.init.normal_(p, std=0.3)
    return net.eval()


def test_shapes_and_zero_padded_outputs(net):
    x, c_noise, cond = batch()
    with torch.no_grad():
        out = net(x, c_noise, cond)
    if net.out_kind == "denoiser":
        assert out.shape == (B, N, 6)
        assert (out[~cond["defined"]] == 0).all() and (out[cond["defined"]] != 0).any()
    else:
        assert out.shape == (B,)
    assert torch.isfinite(out).all()  # scene 1 has no lane piece: the null map token keeps attention defined


@pytest.mark.parametrize("grad", [False, True])
def test_padded_slots_and_lines_do_not_affect_defined_outputs(net, grad):
    x, c_noise, cond = batch()
    x2, cond2 = x.clone(), {k: v.clone() for k, v in cond.items()}
    x2[~cond["defined"]] = 1e3 * torch.randn(int((~cond["defined"]).sum()), 6)
    cond2["map"][~cond["map_defined"]] = 50.0
    with torch.set_grad_enabled(grad):
        a, b = net(x, c_noise, cond), net(x2, c_noise, cond2)
    m = cond["defined"] if net.out_kind == "denoiser" else slice(None)
    torch.testing.assert_close(a[m], b[m], rtol=1e-5, atol=1e-5)
    x3 = x.clone()
    x3[0, 0] += 1.0  # a defined vehicle does matter
    assert not torch.allclose(net(x3, c_noise, cond)[0], a[0].detach())
    cond3 = {**cond, "ego": cond["ego"].clone()}
    cond3["ego"][1, 4] += 1.0  # and so does the ego's box, even in a scene with no other vehicle defined
    at = (1, 0) if net.out_kind == "denoiser" else 1  # scene 1's only other vehicle, or its logit
    assert not torch.allclose(net(x, c_noise, cond3)[at], a[at].detach())


def test_permutation_equivariance_over_vehicles_and_invariance_over_lines(net):
    x, c_noise, cond = batch()
    perm, lperm = torch.tensor([3, 0, 4, 2, 1]), torch.tensor([2, 0, 3, 1])
    permuted = {"ego": cond["ego"], "defined": cond["defined"][:, perm], "map": cond["map"][:, lperm],
                "map_defined": cond["map_defined"][:, lperm]}
    with torch.no_grad():
        a, b = net(x, c_noise, cond), net(x[:, perm], c_noise, permuted)
    expected = a[:, perm] if net.out_kind == "denoiser" else a
    torch.testing.assert_close(b, expected, rtol=1e-5, atol=1e-5)


def test_denoiser_trains_through_edm_preconditioning():
    x, _, cond = batch()
    model = EDMPrecond(SceneNet(width=32, depth=1, heads=2), sigma_data=0.6)
    out = model(x, torch.full((B,), 0.5), cond)
    assert out.shape == x.shape
    out[cond["defined"]].pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_bad_arguments_raise():
    x, c_noise, cond = batch()
    with pytest.raises(ValueError, match="out must be"):
        SceneNet(out="policy")
    with pytest.raises(ValueError, match="divisible"):
        SceneNet(width=30, heads=4)
    net = SceneNet(width=32, depth=1, heads=2)
    with pytest.raises(ValueError, match="needs cond"):
        net(x, c_noise, None)
    with pytest.raises(ValueError, match="do not match"):
        net(x[:, :4], c_noise, cond)


def _rigid(theta, shift):
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    return lambda p: p @ rot.T + torch.as_tensor(shift, dtype=torch.float64), lambda v: v @ rot.T


def _scene(theta=0.0, shift=(0.0, 0.0)):
    """Boxes in metres (4 vehicles) and 3 straight lanes of 5 points, moved and rotated together, encoded."""
    from genneg.domains.traffic.features import LANE_WIDTH_SCALE, POSITION_SCALE, encode_boxes, encode_polylines

    g = torch.Generator().manual_seed(0)
    move, turn = _rigid(theta, shift)
    xy = torch.rand(1, 4, 2, generator=g, dtype=torch.float64) * 30 - 15
    yaw = torch.rand(1, 4, generator=g, dtype=torch.float64) * 6 - 3
    heading = turn(torch.stack([yaw.cos(), yaw.sin()], -1))
    boxes = torch.cat([move(xy), torch.atan2(heading[..., 1], heading[..., 0])[..., None],
                       torch.full((1, 4, 1), 4.5, dtype=torch.float64),
                       torch.full((1, 4, 1), 1.8, dtype=torch.float64)], -1)
    start = torch.rand(1, 3, 1, 2, generator=g, dtype=torch.float64) * 40 - 20
    direction = torch.nn.functional.normalize(torch.rand(1, 3, 1, 2, generator=g, dtype=torch.float64) - 0.5, dim=-1)
    pts = start + torch.linspace(0, 20, 5, dtype=torch.float64)[None, None, :, None] * direction
    lanes = torch.cat([move(pts), turn(direction).expand(-1, -1, 5, -1),
                       torch.full((1, 3, 5, 1), 3.2, dtype=torch.float64),
                       torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1).expand(-1, -1, 5, 1)], -1)
    ok = torch.ones(1, 3, dtype=torch.bool)
    stored = encode_polylines(lanes.numpy(), ok.numpy())  # what cond holds: float16
    lanes[..., :2] /= POSITION_SCALE  # the same normalisation, in float64, to test the geometry exactly
    lanes[..., 4] /= LANE_WIDTH_SCALE
    torch.testing.assert_close(stored.double(), lanes, atol=0.05 / POSITION_SCALE, rtol=2e-3)
    return encode_boxes(boxes.numpy(), torch.ones(1, 4, dtype=torch.bool).numpy()).double(), lanes, ok


def test_relative_features_are_invariant_to_moving_and_rotating_the_scene_with_its_map():
    from genneg.domains.traffic.relative import lane_context, pair_pose, vehicle_poses

    x, lanes, ok = _scene()
    x2, lanes2, ok2 = _scene(theta=2.1, shift=(130.0, -45.0))
    assert not torch.allclose(x, x2) and not torch.allclose(lanes, lanes2)
    for (a, b) in [(x, lanes), (x2, lanes2)]:
        assert a.shape == (1, 4, 6) and b.shape == (1, 3, 5, 6)
    xy, head = vehicle_poses(x)
    xy2, head2 = vehicle_poses(x2)
    f, valid = lane_context(xy, head, lanes, ok, k=6)
    f2, valid2 = lane_context(xy2, head2, lanes2, ok2, k=6)
    assert valid.all() and valid2.all() and f.shape == (1, 4, 6, 7)
    torch.testing.assert_close(f, f2, atol=1e-5, rtol=0)  # boxes are encoded in float32
    torch.testing.assert_close(pair_pose(xy, head), pair_pose(xy2, head2), atol=1e-5, rtol=0)


def test_scene_frame_features_are_the_world_offsets_and_turn_with_the_scene():
    from genneg.domains.traffic.relative import RELATIVE_SCALE, in_scene_frame, lane_context, pair_pose, vehicle_poses

    x, lanes, ok = _scene()
    x2, lanes2, ok2 = _scene(theta=2.1, shift=(130.0, -45.0))
    xy, head = vehicle_poses(x)
    xy2, head2 = vehicle_poses(x2)
    pairs, pairs2 = in_scene_frame(pair_pose(xy, head), head), in_scene_frame(pair_pose(xy2, head2), head2)
    assert pairs.shape == (1, 4, 4, 9)
    offset = (xy[:, None, :, :] - xy[:, :, None, :]) / RELATIVE_SCALE  # p_j - p_i in the scene frame (all < 60 m)
    torch.testing.assert_close(pairs[..., 2:4], offset, atol=1e-5, rtol=0)
    torch.testing.assert_close(pairs[..., 6:8], head[:, None].expand(-1, 4, -1, -1), atol=1e-5, rtol=0)  # j's heading
    turn = _rigid(2.1, (0.0, 0.0))[1]
    torch.testing.assert_close(pairs2[..., 2:4], turn(offset.double()).to(pairs.dtype), atol=1e-4, rtol=0)
    own = [0, 1, 4, 5, 8]  # the own-frame columns stay invariant
    torch.testing.assert_close(pairs[..., own], pairs2[..., own], atol=1e-5, rtol=0)
    f, _ = lane_context(xy, head, lanes, ok, k=6)
    f2, _ = lane_context(xy2, head2, lanes2, ok2, k=6)
    g, g2 = in_scene_frame(f, head), in_scene_frame(f2, head2)
    assert g.shape == (1, 4, 6, 11)
    torch.testing.assert_close(g2[..., 2:4], turn(g[..., 2:4].double()).to(g.dtype), atol=1e-4, rtol=0)
    torch.testing.assert_close(g2[..., 6:8], turn(g[..., 6:8].double()).to(g.dtype), atol=1e-4, rtol=0)


def test_relative_values_add_pair_embeddings_to_the_attention_values():
    """The option adds one value projection per block (the shipped layout is otherwise unchanged), and that path
    is live: it changes the outputs and receives gradients."""
    x, c_noise, cond = batch()
    torch.manual_seed(0)
    net = SceneNet(width=32, depth=1, heads=2, relative_values=True)
    for p in net.parameters():  # the zero-initialised head would hide every path
        torch.nn.init.normal_(p, std=0.3)
    old = SceneNet(width=32, depth=1, heads=2)
    assert old.blocks[0].pair_value is None
    assert set(net.state_dict()) - set(old.state_dict()) == {"blocks.0.pair_value.weight", "blocks.0.pair_value.bias"}
    out = net(x, c_noise, cond)
    out[cond["defined"]].pow(2).sum().backward()
    assert net.blocks[0].pair_value.weight.grad.abs().sum() > 0
    with torch.no_grad():
        net.blocks[0].pair_value.weight.zero_()
        net.blocks[0].pair_value.bias.zero_()
        assert not torch.allclose(net(x, c_noise, cond)[cond["defined"]], out[cond["defined"]].detach())


def test_lane_context_follows_the_noisy_position_and_is_differentiable():
    from genneg.domains.traffic.relative import lane_context, vehicle_poses

    x, lanes, ok = _scene()
    x = x.clone().requires_grad_(True)
    f, _ = lane_context(*vehicle_poses(x), lanes, ok, k=4)
    f[..., :2].sum().backward()  # the nearest points' offsets
    assert x.grad[..., :2].abs().sum() > 0  # guidance gradients reach the positions through the lane features
    moved = x.detach().clone()
    moved[0, 0, 0] += 0.4  # 10 m along +x
    f2, _ = lane_context(*vehicle_poses(moved), lanes, ok, k=4)
    assert not torch.allclose(f[0, 0], f2[0, 0]) and torch.allclose(f[0, 1:], f2[0, 1:])
