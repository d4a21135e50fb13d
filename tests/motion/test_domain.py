"""Motion domain: torch kinematics vs smplx, the transformer's shapes and masks, the Domain contract, decode,
penalty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("smplx")
pytest.importorskip("pybullet")


def test_skinned_body_matches_smplx(domain, body):
    from genneg.domains.motion.calibration import pose_features

    feats, mask = domain.data["features"][:6], domain.data["mask"][:6]
    ref = pose_features(feats, mask, body)
    v, j = domain.pose(torch.as_tensor(feats))
    assert np.abs(v.numpy()[mask] - ref["vertices"][mask]).max() < 1e-4
    assert np.abs(j.numpy()[mask] - ref["joints"][mask]).max() < 1e-4


def _net(classifier=False, **kw):
    from genneg.domains.motion.net import MotionTransformer

    net = MotionTransformer(147, 12, 5, width=32, depth=2, heads=4, ff=64, classifier=classifier, **kw)
    torch.nn.init.normal_(net.out.weight)  # the zero init would hide everything
    return net.eval()


@pytest.mark.parametrize("kernel, head", [(0, "pooled"), (5, "pooled"), (3, "frames")])
def test_net_shapes_and_padding_isolated(kernel, head):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 12, 147, generator=g)
    defined = torch.ones(3, 12, dtype=torch.bool)
    defined[0, 7:] = False
    cond = {"label": torch.tensor([0, 4, 2]), "defined": defined}
    garbage = x.clone()
    garbage[0, 7:] = 50.0
    for classifier in (False, True):
        net = _net(classifier, kernel=kernel, head=head)
        out, out2 = net(x, torch.zeros(3), cond), net(garbage, torch.zeros(3), cond)
        assert out.shape == ((3,) if classifier else (3, 12, 147))
        assert torch.allclose(out, out2, atol=1e-5)  # padded frames never reach defined outputs
        if not classifier:
            assert (out[0, 7:] == 0).all() and out[0, :7].abs().sum() > 0


def test_per_frame_head_is_the_logit_of_a_product_over_frames():
    net = _net(True, kernel=3, head="frames")
    x = torch.randn(2, 12, 147)
    defined = torch.ones(2, 12, dtype=torch.bool)
    defined[1, 5:] = False
    logit = net(x, torch.zeros(2), {"defined": defined})
    h = {}
    net.out.register_forward_hook(lambda m, i, o: h.update(f=o[..., 0]))  # returns None: the output is kept
    net(x, torch.zeros(2), {"defined": defined})
    log_c = (torch.nn.functional.logsigmoid(h["f"]) * defined).sum(1)
    torch.testing.assert_close(torch.sigmoid(logit), log_c.exp(), atol=1e-6, rtol=1e-5)
    fresh = _net(True, kernel=3, head="frames")
    torch.nn.init.zeros_(fresh.out.weight)  # at initialisation a full window starts at C = 1/2
    assert abs(torch.sigmoid(fresh(x[:1], torch.zeros(1), None)).item() - 0.5) < 1e-4
    with pytest.raises(ValueError, match="kernel"):
        _net(kernel=4)
    with pytest.raises(ValueError, match="head"):
        _net(True, head="max")


def test_net_uses_label_sigma_and_checks_inputs():
    net = _net()
    x = torch.randn(2, 12, 147)
    a = net(x, torch.zeros(2), {"label": torch.tensor([0, 0])})
    assert not torch.allclose(a, net(x, torch.zeros(2), {"label": torch.tensor([1, 1])}))
    assert not torch.allclose(a, net(x, torch.ones(2), {"label": torch.tensor([0, 0])}))
    assert torch.equal(net(x, torch.zeros(2), None), net(x, torch.zeros(2), {"label": torch.tensor([5, 5])}))
    with pytest.raises(ValueError, match="label"):
        net(x, torch.zeros(2), {"label": torch.tensor([0, 9])})
    with pytest.raises(ValueError, match="defined"):
        net(x, torch.zeros(2), {"defined": torch.ones(2, 5, dtype=torch.bool)})
    dropping = _net(label_dropout=0.99).train()
    torch.manual_seed(0)
    assert torch.allclose(dropping(x, torch.zeros(2), {"label": torch.tensor([0, 0])}),
                          dropping(x, torch.zeros(2), None), atol=1e-6)  # fmt: skip


def test_domain_contract_and_data(domain):
    from genneg.domain import Domain

    assert isinstance(domain, Domain) and {"tiny", "demo", "cpu", "paper"} <= set(domain.presets())
    cpu = domain.presets()["cpu"]
    params = sum(p.numel() for p in domain.make_denoiser_net(dict(cpu.net)).parameters())
    assert 1e6 <= params <= 2e6 and cpu.net["width"] >= 192 and cpu.net["depth"] >= 4 and cpu.net["kernel"] > 0
    for head in ("pooled", "frames"):  # the classifier head is chosen by config
        net = domain.make_classifier_net({**cpu.classifier_net, "head": head})
        assert net.trunk.head == head  # the cpu classifiers read the kinematics (PhysicsClassifierNet)
    x0, cond = domain.dataset("train")
    d = cond["defined"]
    assert x0.shape[1:] == (40, domain.num_features) and cond["label"].dtype == torch.int64
    assert (x0[~d] == 0).all() and x0[d].mean(0).abs().max() < 1e-4
    assert 0.5 < domain.sigma_data <= 1.5
    c1, c2 = domain.conditions(50, "test", 7), domain.conditions(50, "test", 7)
    assert torch.equal(c1["label"], c2["label"]) and torch.equal(c1["defined"], c2["defined"])
    test_x0, test_cond = domain.dataset("test")
    assert set(c1["label"].tolist()) <= set(test_cond["label"].tolist())
    many = domain.conditions(3000, "train", 1)  # balanced over clips, never a window cut to a random prefix
    counts = np.bincount(many["label"].numpy(), minlength=len(domain.label_names))
    assert counts.min() > 3000 / len(counts) * 0.7 and counts.max() < 3000 / len(counts) * 1.3
    full = domain.data["mask"][(domain.data["split"] == "train") & ~domain.data["cut"]]
    assert {tuple(m) for m in many["defined"].numpy()} <= {tuple(m) for m in full}
    assert domain.sample_shape(c1, 50) == (50, 40, domain.num_features)
    with pytest.raises(ValueError, match="split"):
        domain.conditions(3, "holdout", 0)


def test_decode_real_windows_pass_and_sunk_copy_fails(domain):
    x0, cond = domain.dataset("val")
    s = domain.decode(x0, cond)
    oracle = domain.oracle()
    assert oracle(s, cond).valid.mean() >= 0.95  # held-out windows: see calibration.recalibrate for their margins
    assert {"features", "joints", "toes", "lowest_height", "defined", "label"} <= set(s)
    sunk = s["features"].copy()
    sunk[..., 1] -= 1.0  # a metre down: even airborne frames of a flip go through the floor
    s2 = domain.decode(domain.normalise(sunk, cond["defined"].numpy()), cond)
    r2 = oracle(s2, cond)
    assert not r2.valid.any() and r2.reasons["penetration"].all()
    assert list(domain.oracle(["penetration"])(s2, cond).reasons) == ["penetration"]


def test_labelling_fast_path_agrees_with_the_full_mesh(domain, body):
    """decode poses only the mesh's heights; smplx's full meshes give the same lowest vertex and the same verdicts."""
    from genneg.domains.motion.calibration import pose_features
    from genneg.oracles.motion import motion_infractions

    x0, cond = domain.dataset("val")
    pick = torch.arange(0, len(x0), 4)
    x0, cond = x0[pick], {k: v[pick] for k, v in cond.items()}
    g = torch.Generator().manual_seed(0)
    noisy = torch.cat([x0, x0 + 0.3 * torch.randn(x0.shape, generator=g)]) * torch.cat([cond["defined"]] * 2)[..., None]
    cond2 = {k: torch.cat([v, v]) for k, v in cond.items()}
    fast = domain.decode(noisy, cond2)
    full = pose_features(fast["features"], fast["defined"], body)
    d = fast["defined"]
    assert np.abs(fast["lowest_height"][d] - full["vertices"][..., 1].min(-1)[d]).max() < 1e-4
    assert np.abs(fast["joints"][d] - full["joints"][d]).max() < 1e-4
    verdicts = [motion_infractions(low, toes, 20.0, d) for low, toes in
                ((fast["lowest_height"], fast["toes"]), (full["vertices"], full["toes"]))]  # fmt: skip
    for reason in verdicts[0]:
        np.testing.assert_array_equal(verdicts[0][reason], verdicts[1][reason])
    assert any(v.any() for v in verdicts[0].values())  # the noisy half commits infractions
    metrics = domain.mesh_metrics(fast)
    assert set(metrics) == {"penetrate_mm", "float_mm", "skate_mm", "skating_ratio"}
    assert (metrics["penetrate_mm"][: len(pick)] < 5).all()


def test_penalty_is_differentiable_and_grows_when_sunk(domain):
    x0, cond = domain.dataset("val")
    feats = domain.physical(x0).detach().numpy()
    feats[..., 1] -= 0.2
    sunk = domain.normalise(feats, cond["defined"].numpy()).requires_grad_(True)
    p_sunk, p_real = domain.penalty(sunk, cond), domain.penalty(x0, cond)
    assert p_sunk.shape == (len(x0),) and (p_sunk > p_real + 0.1).all()
    p_sunk.sum().backward()
    grad = sunk.grad
    assert grad[..., 1][cond["defined"]].lt(0).any() and (grad[~cond["defined"]] == 0).all()


def test_group_normalisation_round_trip_drops_constant_channels(domain):
    from genneg.domains.motion.features import CONSTANT_STD, GROUPS

    codec = domain.codec
    x0, cond = domain.dataset("train")
    d = cond["defined"]
    train = torch.as_tensor(domain.data["features"][domain.data["split"] == "train"])[d]
    physical = domain.physical(x0)[d]
    np.testing.assert_allclose(physical[:, codec.kept[:147]], train[:, codec.kept[:147]], atol=1e-5)
    assert (physical[:, ~codec.kept[:147]] - train[:, ~codec.kept[:147]]).abs().max() < 5 * CONSTANT_STD
    assert 40 < (~codec.kept).sum() < 100  # the skeleton's unmoved joints and hinge components
    for group, idx in GROUPS.items():  # one scale per group; the group's varying channels pool to unit variance
        idx = [i for i in idx if codec.kept[i]]
        assert len(set(codec.scale[idx].tolist())) == 1, group
        model = [int(codec.kept[: i + 1].sum()) - 1 for i in idx]
        assert abs(x0[d][:, model].var(0).mean().item() - 1) < 1e-3, group
    back = codec.encode(codec.decode(x0[:4]))
    torch.testing.assert_close(back, x0[:4], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="training frames"):
        type(codec).fit(np.zeros((10, 100)))


def test_auxiliary_channels_match_the_kinematics(domain, body):
    from genneg.domains.motion.calibration import pose_features
    from genneg.domains.motion.features import AUX_JOINTS, aux_channels
    from genneg.domains.motion.skeleton import joint_index

    x0, cond = domain.dataset("val")
    x0, cond = x0[:8], {k: v[:8] for k, v in cond.items()}
    s = domain.decode(x0, cond)
    assert max(s["aux_position_error_m"].max(), s["aux_lowest_error_m"].max()) < 1e-4
    assert s["aux_contact_mismatch"].max() == 0
    full = pose_features(s["features"], s["defined"], body)  # smplx: the reference kinematics
    aux = domain.codec.decode(x0)[..., 147:]
    d = s["defined"]
    rel = full["joints"][:, :, [joint_index(n) for n in AUX_JOINTS]] - full["joints"][:, :, :1]
    assert np.abs(aux[..., : rel.shape[2] * 3].numpy()[d] - rel.reshape(*d.shape, -1)[d]).max() < 1e-3
    assert np.abs(aux[..., -1].numpy()[d] - full["vertices"][..., 1].min(-1)[d]).max() < 1e-3
    implied = aux_channels(domain.skinned, torch.as_tensor(s["features"]), 20.0)
    shifted = domain.codec.decode(x0).clone()
    shifted[..., 147:168] += 0.1  # auxiliary positions 10 cm off in x, y and z
    bad = domain.decode(domain.codec.encode(shifted) * cond["defined"][..., None], cond)
    assert np.allclose(bad["aux_position_error_m"], 0.1 * np.sqrt(3), atol=1e-3)
    assert implied.shape[-1] == aux.shape[-1]


def test_fk_loss_is_zero_on_the_data_and_measures_joint_error_in_metres(domain):
    x0, cond = domain.dataset("val")
    x0, cond = x0[:6], {k: v[:6] for k, v in cond.items()}
    assert domain.fk_loss(x0, x0, cond).abs().max() < 1e-10
    feats = domain.physical(x0).detach()
    feats[..., 0] += 0.1  # the whole body 10 cm to the side: every joint 10 cm off
    moved = domain.normalise(feats.numpy(), cond["defined"].numpy()).requires_grad_(True)
    loss = domain.fk_loss(moved, x0, cond)
    torch.testing.assert_close(loss, torch.full((6,), 0.01), atol=1e-5, rtol=0)
    loss.sum().backward()
    assert moved.grad.abs().sum() > 0 and (moved.grad[~cond["defined"]] == 0).all()


def test_denoised_loss_adds_the_fk_loss_below_its_sigma(cache_dir):
    from genneg.domains.motion import make_domain

    plain, fk = make_domain(cache_dir=str(cache_dir)), make_domain(cache_dir=str(cache_dir), fk_weight=10.0)
    x0, cond = plain.dataset("val")
    x0, cond = x0[:3], {k: v[:3] for k, v in cond.items()}
    off = x0 + 0.3 * cond["defined"][..., None]
    sigma = torch.tensor([0.1, 0.5, 2.0])
    assert (plain.denoised_loss(off, x0, sigma, cond) == 0).all()
    loss = fk.denoised_loss(off, x0, sigma, cond)
    torch.testing.assert_close(loss[:2], 10.0 * fk.fk_loss(off, x0, cond)[:2])
    assert loss[2] == 0 and (loss[:2] > 0).all()
    with pytest.raises(ValueError, match="fk_weight"):
        make_domain(fk_weight=-1.0)
