"""Per-vehicle classifiers: the network's vehicle head (and its pair head), the oracle's per-vehicle flags, and a
tiny run with one classifier per reason."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import shapely
import torch

from genneg.domains.traffic.net import SceneNet
from genneg.classifier import NoisyClassifier
from traffic_fixtures import B, N, batch


@pytest.fixture(params=[False, True], ids=["offroad-head", "pair-head"])
def net(request):
    torch.manual_seed(0)
    net = SceneNet(out="vehicle_classifier", width=32, depth=2, heads=4, pair_head=request.param)
    for p in net.parameters():  # the zero-initialised last layer would make every check trivially pass
        torch.nn.init.normal_(p, std=0.3)
    return net.eval()


def _exists(cond):
    return torch.cat([torch.ones(B, 1, dtype=torch.bool), cond["defined"]], 1)


def test_one_logit_per_vehicle_ego_first_and_inf_on_padding(net):
    x, c_noise, cond = batch()
    with torch.no_grad():
        out = net(x, c_noise, cond)
    exists = _exists(cond)
    assert out.shape == (B, N + 1)
    assert torch.isfinite(out[exists]).all() and (out[~exists] == math.inf).all()
    x2, cond2 = x.clone(), {k: v.clone() for k, v in cond.items()}
    x2[~cond["defined"]] = 1e3 * torch.randn(int((~cond["defined"]).sum()), 6)  # padding never matters
    with torch.no_grad():
        torch.testing.assert_close(net(x2, c_noise, cond2), out, rtol=1e-5, atol=1e-5)


def test_equivariant_to_permuting_vehicles(net):
    x, c_noise, cond = batch()
    perm = torch.tensor([3, 0, 4, 2, 1])
    permuted = {**cond, "defined": cond["defined"][:, perm]}
    with torch.no_grad():
        a, b = net(x, c_noise, cond), net(x[:, perm], c_noise, permuted)
    torch.testing.assert_close(b[:, 0], a[:, 0], rtol=1e-5, atol=1e-5)  # the ego stays first
    torch.testing.assert_close(b[:, 1:], a[:, 1:][:, perm], rtol=1e-5, atol=1e-5)


def test_pair_head_reads_the_pairs_and_they_are_invariant_to_moving_the_scene_with_its_map():
    from test_traffic_net import _scene  # the denoiser tests' scene, moved and rotated with its map

    torch.manual_seed(0)
    net = SceneNet(out="vehicle_classifier", width=32, depth=1, heads=2, pair_head=True).double().eval()
    seen = []
    net.head.register_forward_hook(lambda m, args, out: seen.append(args[1]))  # the pair features the head reads
    for theta, shift in [(0.0, (0.0, 0.0)), (2.1, (130.0, -45.0))]:
        x, lanes, ok = _scene(theta, shift)
        cond = {"ego": x[:, 0], "defined": torch.ones(1, 3, dtype=torch.bool), "map": lanes, "map_defined": ok}
        with torch.no_grad():  # at σ = 1 (c_noise = 0) the input is x / √(1 + σ_d²): the net recovers x exactly
            net(x[:, 1:] / math.sqrt(1 + 0.6**2), torch.zeros(1, dtype=torch.float64), cond)
    torch.testing.assert_close(seen[0], seen[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="pair_head"):
        SceneNet(out="classifier", pair_head=True)


def test_noisy_vehicle_classifier_guides_with_the_sum_over_vehicles(net):
    x, _, cond = batch()
    model = NoisyClassifier(net, sigma_data=0.6, elementwise=True)
    sigma = torch.tensor([0.01, 0.2, 1.0])
    xg = x.clone().requires_grad_(True)
    lp = model.log_prob(xg, sigma, cond)
    ell = model.element_logits(x, sigma, cond).detach()
    torch.testing.assert_close(lp.detach(), torch.nn.functional.logsigmoid(ell).sum(1))  # padded: log σ(inf) = 0
    (grad,) = torch.autograd.grad(lp.sum(), xg)
    assert torch.isfinite(grad).all() and (grad[~cond["defined"]] == 0).all() and grad[cond["defined"]].abs().sum() > 0


def test_scene_oracle_gives_per_vehicle_flags():
    from genneg.oracles.traffic import SceneOracle

    boxes = np.array([[[0, 0, 0, 4.5, 1.8], [1.0, 0.5, 0, 4.5, 1.8], [30, 0, 0, 4.5, 1.8], [0, 0, 0, 1, 1]],
                      [[0, 0, 0, 4.5, 1.8], [10, 0, 0, 4.5, 1.8], [20, 0, 0, 4.5, 1.8], [20, 0, 0, 4.5, 1.8]]])
    defined = np.array([[True, True, True, False], [True, True, True, False]])
    area = shapely.box(-10, -5, 25, 5)  # vehicle 2 of scene 0 is off-road; scene 1's last slot is padding
    r = SceneOracle()({"boxes": boxes, "defined": defined, "drivable_area": area})
    assert r.elements["collision"].tolist() == [[True, True, False, False], [False] * 4]
    assert r.elements["offroad"].tolist() == [[False, False, True, False], [False] * 4]
    assert r.element_defined.tolist() == defined.tolist() and r.valid.tolist() == [False, True]


def test_tiny_run_with_one_classifier_per_reason(tiny_data_dir, tmp_path):
    from genneg.domain import get_domain
    from genneg.run import run

    tiny = get_domain("traffic", preset="tiny", data_dir=tiny_data_dir).presets()["tiny"]
    cfg = replace(tiny, data={**tiny.data, "data_dir": str(tiny_data_dir)},
                  genneg=replace(tiny.genneg, rounds=1, classifier_per_reason=True, calibration_split="val",
                                 baselines=()))
    domain = get_domain("traffic", **cfg.data)
    run(domain, cfg, tmp_path / "run")
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["aggregate"]["rows"]
    per_reason = rows["round1"]["per_reason"]
    assert set(per_reason) == {"collision", "offroad"}
    fitted = [v for v in per_reason.values() if v["skipped"] == 0]
    assert fitted and all(v["elementwise"] for v in fitted)  # the tiny base commits both infractions
    assert "one classifier per reason" in (tmp_path / "run" / "report.md").read_text()
    assert (tmp_path / "run" / "seed0" / "labelled_round1_val.safetensors").exists()
