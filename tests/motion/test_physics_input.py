"""The physics-reading motion classifier: its extra inputs are the oracle's quantities, it inverts the classifier's
input scaling, it is differentiable through the kinematics, and it trains and loads like any classifier net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("smplx")
pytest.importorskip("pybullet")

SMALL = {"width": 32, "depth": 1, "heads": 2, "ff": 64, "kernel": 3, "physics": True}


@pytest.fixture(scope="module")
def windows(domain):
    x0, cond = domain.dataset("val")
    pick = torch.arange(0, len(x0), 9)
    return x0[pick], {k: v[pick] for k, v in cond.items()}


def test_physics_features_are_what_the_oracle_reads(domain, windows):
    from genneg.domains.motion.physics_input import physics_features

    x0, cond = windows
    d = cond["defined"]
    s = domain.decode(x0, cond)
    raw = physics_features(domain.skinned, domain.physical(x0), d, domain.fps).numpy()
    dn = d.numpy()
    assert np.abs(raw[..., 0][dn] - s["lowest_height"][dn]).max() < 1e-5
    window_low = np.where(dn, s["lowest_height"], np.inf).min(1)
    assert np.abs(raw[..., 1] - window_low[:, None])[dn].max() < 1e-5  # the window's lowest, in every frame
    assert np.abs(raw[..., 2:4][dn] - s["toes"][..., 1][dn]).max() < 1e-5
    step = np.linalg.norm(np.diff(s["toes"][..., [0, 2]], axis=1), axis=-1) * domain.fps  # [B, T-1, 2]
    both = dn[:, 1:] & dn[:, :-1]
    assert np.abs(raw[:, 1:, 4:6][both] - step[both]).max() < 1e-4


def test_net_inverts_the_input_scaling_and_passes_gradients(domain, windows):
    from genneg.classifier import NoisyClassifier
    from genneg.domains.motion.physics_input import PHYSICS_FEATURES

    x0, cond = windows
    net = domain.make_classifier_net(SMALL)
    assert net.features == domain.num_features and net.trunk.features == domain.num_features + len(PHYSICS_FEATURES)
    seen = {}
    net.trunk.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    clf = NoisyClassifier(net, domain.sigma_data)
    sigma = torch.full((len(x0),), 0.3)
    clf.logit(x0, sigma, cond)
    extra = seen["x"][..., domain.num_features:]
    torch.testing.assert_close(extra, net.physics(x0, cond["defined"]), atol=1e-4, rtol=1e-4)  # x, not c_in · x
    assert extra[..., 0][cond["defined"]].abs().max() < 4.0 and (extra[~cond["defined"]] == 0).all()
    torch.nn.init.normal_(net.trunk.out.weight, std=0.1)
    x = x0.clone().requires_grad_(True)
    clf.log_prob(x, sigma, cond).sum().backward()
    assert x.grad.abs().sum() > 0 and (x.grad[~cond["defined"]] == 0).all()
    feats = domain.physical(x0).detach()
    feats[..., 1] -= 0.1
    sunk = domain.normalise(feats.numpy(), cond["defined"].numpy())
    low = net.physics(sunk, cond["defined"])[..., 0] - net.physics(x0, cond["defined"])[..., 0]
    d = cond["defined"]
    assert (low[d] < 0).all() and low[d].min() < -0.9  # −1 in units of 0.1 m near the floor, squashed above it


def test_physics_is_for_classifiers_and_survives_a_save_and_load(domain, windows, tmp_path):
    from genneg.checkpoint import load_weights, save_weights
    from genneg.classifier import NoisyClassifier

    with pytest.raises(ValueError, match="physics inputs are for classifier nets"):
        domain.make_denoiser_net(SMALL)
    torch.manual_seed(0)
    clf = NoisyClassifier(domain.make_classifier_net(SMALL), domain.sigma_data)
    torch.nn.init.normal_(clf.net.trunk.out.weight, std=0.1)
    save_weights(tmp_path / "c.safetensors", clf, {})
    again = NoisyClassifier(domain.make_classifier_net(SMALL), domain.sigma_data)
    again.load_state_dict(load_weights(tmp_path / "c.safetensors")[0])
    x0, cond = windows
    sigma = torch.full((len(x0),), 0.05)
    torch.testing.assert_close(again.logit(x0, sigma, cond), clf.logit(x0, sigma, cond))
    element = domain.make_element_classifier_net(SMALL, "penetration")
    assert element(x0, sigma.log() / 4, cond).shape == cond["defined"].shape


def test_a_round_reads_the_kinematics_of_the_denoised_estimate_and_reloads(domain, tmp_path):
    """The `cpu` preset's classifier setting at a tiny size: run_round trains it on the base's D(x_σ), saves it,
    and load_classifier (given the base again) gives the same logits."""
    from dataclasses import replace

    from genneg.context import RunContext
    from genneg.genneg import load_classifier, run_round

    x0, cond = domain.dataset("train")
    labels, length = cond["label"].numpy(), cond["defined"].sum(1).numpy()
    longest = [int(np.flatnonzero(labels == c)[np.argmax(length[labels == c])]) for c in range(len(domain.label_names))]
    features = domain.physical(x0[longest])
    features[1::2, :, 1] -= 0.2  # every other clip sunk by 20 cm: both classes in the round
    table = domain.normalise(features.detach().numpy(), np.ones(features.shape[:2], bool))

    def base(x, sigma, c):  # the clip's window, moved a little by x: guidance reaches x through D
        return (table[c["label"]] + 0.01 * torch.tanh(x)) * c["defined"][..., None]

    cfg = domain.presets()["tiny"]
    cfg = replace(cfg, classifier_net=SMALL, classifier=replace(cfg.classifier, steps=3, batch_size=8, warmup=0),
                  sampler=replace(cfg.sampler, steps=2),
                  genneg=replace(cfg.genneg, samples_per_round=32, classifier_input="denoised"))  # fmt: skip
    r = run_round(base, domain, cfg, domain.oracle(), 1, RunContext(tmp_path))
    assert r.classifier is not None and r.classifier.denoiser is base
    again = load_classifier(domain, cfg, tmp_path / "classifier1.safetensors", base)
    sigma = torch.full((4,), 0.2)
    c4 = {k: v[:4] for k, v in cond.items()}
    torch.testing.assert_close(again.logit(x0[:4], sigma, c4), r.classifier.logit(x0[:4], sigma, c4))
