"""TrafficDomain: the Domain contract, features round trip, conditions, the map oracle, the penalty, presets."""

import numpy as np
import pytest
import torch

from genneg.config import RunConfig
from genneg.domain import Domain
from genneg.labelling import label

from genneg.domains.traffic.features import decode_boxes, encode_boxes


def test_domain_contract_and_presets(tiny_domain):
    assert isinstance(tiny_domain, Domain) and tiny_domain.name == "traffic"
    presets = tiny_domain.presets()
    assert {"tiny", "demo", "paper"} <= set(presets)
    for name, cfg in presets.items():
        assert isinstance(cfg, RunConfig) and cfg.domain == "traffic" and cfg.preset == name
        tiny_domain.make_denoiser_net(dict(cfg.net))
        tiny_domain.make_classifier_net(dict(cfg.classifier_net))
    with pytest.raises(ValueError, match="map_lines"):
        type(tiny_domain)(preset="tiny", map_lines=0)
    with pytest.raises(ValueError, match="unknown SUMO data preset"):
        type(tiny_domain)(preset="huge")


def test_features_round_trip():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(-50, 50, (4, 3, 2)), rng.uniform(-3.1, 3.1, (4, 3, 1)),
                            rng.uniform(3, 6, (4, 3, 1)), rng.uniform(1.5, 2.2, (4, 3, 1))], -1)
    defined = rng.random((4, 3)) < 0.7
    x = encode_boxes(boxes, defined)
    assert (x[~torch.as_tensor(defined)] == 0).all()
    back = decode_boxes(x.double()).numpy()
    np.testing.assert_allclose(back[defined], boxes[defined], atol=1e-4)  # yaw drawn inside (-π, π)
    assert (decode_boxes(torch.full((1, 6), -50.0))[..., 3:] > 0).all()  # sizes stay positive


def test_dataset_conditions_and_decode(tiny_domain):
    x0, cond = tiny_domain.dataset("train")
    s, n = cond["defined"].shape
    assert x0.shape == (s, n, 6) == (s, tiny_domain.max_vehicles - 1, 6)  # the others; the ego is in cond
    assert cond["map"].shape == (s, 96, 5, 6) and cond["map_defined"].shape == (s, 96)
    assert cond["ego"].shape == (s, 6) and cond["map"].dtype == torch.float16
    assert all(isinstance(v, torch.Tensor) for v in cond.values())
    table = tiny_domain.table
    start, stop = table.split_ranges["train"]
    np.testing.assert_array_equal(cond["scene"].numpy(), np.arange(start, stop))
    decoded = tiny_domain.decode(x0, cond)
    got, want = decoded["boxes"][decoded["defined"]], table.boxes[start:stop][decoded["defined"]]
    np.testing.assert_allclose(got[:, [0, 1, 3, 4]], want[:, [0, 1, 3, 4]], atol=1e-4)
    np.testing.assert_allclose(np.angle(np.exp(1j * (got[:, 2] - want[:, 2]))), 0.0, atol=1e-5)  # yaw mod 2π
    assert label(tiny_domain.oracle(), decoded, cond).valid.all()  # the data are valid
    c1, c2 = tiny_domain.conditions(50, "test", seed=3), tiny_domain.conditions(50, "test", seed=3)
    torch.testing.assert_close(c1, c2)
    lo, hi = table.split_ranges["test"]
    assert ((c1["scene"] >= lo) & (c1["scene"] < hi)).all()
    assert not torch.equal(c1["scene"], tiny_domain.conditions(50, "test", seed=4)["scene"])
    assert tiny_domain.sample_shape(c1, 50) == (50, tiny_domain.max_vehicles - 1, 6)
    np.testing.assert_allclose(decoded["boxes"][:, 0, :3], 0.0, atol=1e-6)  # the ego, at the origin facing +x
    assert decoded["defined"][:, 0].all()
    with pytest.raises(ValueError, match="needs their cond"):
        tiny_domain.decode(x0, None)
    with pytest.raises(ValueError, match="unknown split"):
        tiny_domain.conditions(5, "dev")


def _two_car_scene(domain):
    """A test scene with the ego and at least one other vehicle, as (x0 [1, N - 1, 6], cond)."""
    x0, cond = domain.dataset("test")
    i = int(np.flatnonzero(cond["defined"].sum(1).numpy() >= 1)[0])
    return x0[i : i + 1].clone(), {k: v[i : i + 1] for k, v in cond.items()}


def test_oracle_flags_collisions_and_offroad_and_composes(tiny_domain):
    x0, cond = _two_car_scene(tiny_domain)
    crash, off = x0.clone(), x0.clone()
    crash[0, 0, :4] = cond["ego"][0, :4]  # the first other vehicle on top of the ego: the ego is checked too
    off[0, 0, :2] = 1.95  # ~49 m out on both axes: off any road of the crop
    xs = torch.cat([x0, crash, off])
    cs = {k: v.repeat((3,) + (1,) * (v.ndim - 1)) for k, v in cond.items()}
    samples = tiny_domain.decode(xs, cs)
    r = tiny_domain.oracle()(samples)
    np.testing.assert_array_equal(r.valid, [True, False, False])
    np.testing.assert_array_equal(r.reasons["collision"], [False, True, False])
    assert r.reasons["offroad"][2]
    only = tiny_domain.oracle(["collision"])(samples)
    assert set(only.reasons) == {"collision"} and only.valid[2]
    both = tiny_domain.oracle(["collision", "offroad"])(samples)
    np.testing.assert_array_equal(both.valid, r.valid)
    with pytest.raises(KeyError, match="scene"):
        tiny_domain.oracle()({"boxes": samples["boxes"]})


def test_penalty_zero_on_data_positive_on_infractions_and_descends(tiny_domain):
    x0, cond = tiny_domain.dataset("val")
    assert (tiny_domain.penalty(x0, cond) == 0).all()
    x, c = _two_car_scene(tiny_domain)
    x[0, 0, :4] = c["ego"][0, :4] + torch.tensor([0.04, 0.3, 0.0, 0.0])  # 1 m ahead, 7.5 m aside: off the road
    if c["defined"][0, 1]:
        x[0, 1, :4] = c["ego"][0, :4] + torch.tensor([0.04, 0.0, 0.0, 0.0])  # 1 m ahead of the ego: deep overlap
    x = x.requires_grad_(True)
    start = tiny_domain.penalty(x, c)
    assert start.item() > 1.0
    opt = torch.optim.SGD([x], lr=1e-3)
    for _ in range(30):
        opt.zero_grad()
        tiny_domain.penalty(x, c).sum().backward()
        assert torch.isfinite(x.grad).all()
        opt.step()
    assert tiny_domain.penalty(x, c).item() < 0.5 * start.item()


def test_max_vehicles_keeps_the_nearest_slots(tiny_data_dir, tiny_domain):
    from genneg.domains.traffic import TrafficDomain

    small = TrafficDomain(preset="tiny", data_dir=tiny_data_dir, max_vehicles=2, map_lines=96, map_points=5)
    assert small.prepare_data() == tiny_domain.prepare_data()  # same cached data, no regeneration
    x0, cond = small.dataset("train")
    full, full_cond = tiny_domain.dataset("train")
    assert x0.shape == (full.shape[0], 1, 6) and small.sample_shape(cond, 3) == (3, 1, 6)
    torch.testing.assert_close(x0, full[:, :1])  # the ego's nearest neighbour
    torch.testing.assert_close(cond["defined"], full_cond["defined"][:, :1])
    assert small.oracle()(small.decode(x0, cond)).valid.all()
    for bad in (1, 13):
        with pytest.raises(ValueError, match="max_vehicles"):
            TrafficDomain(preset="tiny", max_vehicles=bad)


def test_map_crop_covers_the_data_vehicles(tiny_data_dir, tiny_domain):
    """Cropping by coverage: (nearly) every data vehicle is within 2 m of a lane segment its scene sees; a crop
    capped at 8 segments (a count budget, as before) misses many."""
    from genneg.domains.traffic import TrafficDomain

    full = tiny_domain.coverage("train")
    assert full["vehicles"] > 500 and full["uncovered"] < 0.01
    network = str(tiny_domain.table.network[tiny_domain.table.ids("train")[0]])
    assert tiny_domain.coverage("train", networks=[network]) == full  # tiny: one network per split
    with pytest.raises(ValueError, match="no scene of the networks"):
        tiny_domain.coverage("train", networks=["atlantis"])
    capped = TrafficDomain(preset="tiny", data_dir=tiny_data_dir, map_lines=8).coverage("train")
    assert capped["uncovered"] > 0.1 and capped["scenes_at_max_segments"] > 0.9
    cond = tiny_domain.conditions(4, "train", seed=0)
    poly, mdef = tiny_domain.table.polylines(cond["scene"].numpy())
    assert set(np.unique(poly[mdef][..., 5])) == {0.0, 1.0}  # junction-internal segments are flagged
