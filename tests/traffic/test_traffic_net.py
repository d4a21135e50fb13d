"""Scene transformer: shapes, padded slots and map lines never matter, permutation equivariance / invariance."""

import pytest
import torch

from domains.traffic.net import SceneNet
from genneg.diffusion import EDMPrecond

B, N, L, P = 3, 5, 4, 6


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 6, generator=g)
    defined = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    cond = {"ego": torch.randn(B, 6, generator=g), "defined": defined, "map": torch.randn(B, L, P, 6, generator=g),
            "map_defined": torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)}
    return x, torch.randn(B, generator=g), cond


@pytest.fixture(params=["denoiser", "classifier"])
def net(request):
    torch.manual_seed(0)
    net = SceneNet(out=request.param, width=32, depth=2, heads=4)
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
