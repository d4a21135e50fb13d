"""Classifiers that read the base's denoised estimate (``GenNegConfig.classifier_input = "denoised"``)."""

from dataclasses import replace

import pytest
import torch

from genneg.classifier import NoisyClassifier
from genneg.context import RunContext
from genneg.generate import generate
from genneg.genneg import build_classifier, load_classifier, run_round, stack


class LinearNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.5, -0.5]))

    def forward(self, x_in, c_noise, cond=None):
        return x_in @ self.w + c_noise


def test_the_denoised_classifier_is_the_plain_one_on_d_and_guides_through_d():
    net = LinearNet()
    plain = NoisyClassifier(net, 0.5)
    d = lambda x, sigma, cond: torch.tanh(x) * 2  # noqa: E731  any differentiable denoiser
    reads = NoisyClassifier(net, 0.5, denoiser=d)
    x, sigma = torch.randn(6, 2, requires_grad=True), torch.rand(6) + 0.1
    assert reads.denoiser is d and plain.denoiser is None
    assert torch.allclose(reads.logit(x, sigma), plain.logit(d(x, sigma, None), sigma))
    (g,) = torch.autograd.grad(reads.log_prob(x, sigma).sum(), x)
    y = d(x, sigma, None).detach().requires_grad_(True)
    (gy,) = torch.autograd.grad(plain.log_prob(y, sigma).sum(), y)
    assert torch.allclose(g, gy * 2 * (1 - torch.tanh(x.detach()) ** 2))  # the chain rule through D
    assert set(reads.state_dict()) == set(plain.state_dict())  # D's weights are not the classifier's


def test_a_denoised_classifier_needs_its_denoiser_and_no_fixed_sigma(gmm_domain, gmm_cfg):
    cfg = replace(gmm_cfg, genneg=replace(gmm_cfg.genneg, classifier_input="denoised"))
    with pytest.raises(ValueError, match="needs the base denoiser"):
        build_classifier(gmm_domain, cfg)
    with pytest.raises(ValueError, match="either the denoised estimate or x at a fixed σ"):
        NoisyClassifier(LinearNet(), 0.5, fixed_sigma=0.01, denoiser=gmm_domain.gmm.denoiser)
    # the time-independent ablation reads x at its fixed σ, whatever the run's setting
    assert build_classifier(gmm_domain, cfg, fixed_sigma=0.01).denoiser is None
    with pytest.raises(ValueError, match="classifier_input must be one of"):
        replace(gmm_cfg.genneg, classifier_input="clean")


def test_a_round_on_the_denoised_estimate_learns_guides_and_is_read_back(gmm_domain, gmm_cfg, tmp_path):
    d = gmm_domain
    cfg = replace(gmm_cfg, genneg=replace(gmm_cfg.genneg, classifier_input="denoised"))
    base = d.gmm.denoiser
    r = run_round(base, d, cfg, d.oracle(), 1, RunContext(tmp_path))
    assert r.classifier.denoiser is base and not r.report["collapsed"]
    x = generate(base, d.sample_shape, 2000, cfg.sampler, seed=5)
    xg = generate(stack(base, [r.classifier], cfg.genneg), d.sample_shape, 2000, cfg.sampler, seed=5)
    before, after = 1 - d.plane.valid(x).double().mean(), 1 - d.plane.valid(xg).double().mean()
    assert after < 0.5 * before, f"invalid {before:.3f} -> {after:.3f}"
    again = run_round(base, d, cfg, d.oracle(), 1, RunContext(tmp_path, resume=True))  # the finished round
    loaded = load_classifier(d, cfg, tmp_path / "classifier1.safetensors", base)
    xs, sigma = torch.randn(16, 2), torch.full((16,), 0.7)
    for c in (again.classifier, loaded):
        assert c.denoiser is base and torch.allclose(c.logit(xs, sigma), r.classifier.logit(xs, sigma))


def test_copies_of_a_denoised_classifier_share_the_base():
    import copy

    base = torch.nn.Linear(2, 2)
    c = NoisyClassifier(LinearNet(), 0.5, denoiser=lambda x, s, cond: base(x))
    twin = copy.deepcopy(c)  # what training does for the EMA weights
    assert twin.denoiser is c.denoiser and twin.net is not c.net


def test_a_run_with_denoised_classifiers_samples_its_stacked_stage_from_the_cli(tmp_path):
    """`genneg run` with the option, then `genneg sample --stage round2`: the loaded classifiers get the base back."""
    import numpy as np

    from genneg.cli import main

    run = tmp_path / "run"
    assert main(["run", "toy", "--preset", "tiny", "--run-dir", str(run), "--quiet",
                 "--set", 'genneg.classifier_input="denoised"', "--set", 'genneg.baselines=["no_is"]']) == 0
    out = tmp_path / "r2.npz"
    assert main(["sample", "--run-dir", str(run), "--stage", "round2", "--n", "64", "--out", str(out), "--quiet"]) == 0
    with np.load(out) as z:
        assert np.isfinite(z[z.files[0]]).all()


def test_per_reason_members_that_share_a_base_evaluate_it_once():
    from genneg.reasons import ReasonClassifiers

    calls = []

    def base(x, sigma, cond):
        calls.append(len(x))
        return torch.tanh(x)

    members = {r: NoisyClassifier(LinearNet(), 0.5, denoiser=base) for r in ("a", "b")}
    both = ReasonClassifiers(members)
    x, sigma = torch.randn(5, 2, requires_grad=True), torch.full((5,), 0.3)
    lp = both.log_prob(x, sigma)
    assert calls == [5]  # one base evaluation for the two members
    assert torch.allclose(lp, sum(c.log_prob(x, sigma) for c in members.values()))
    both.logit(x, sigma)
    assert len(calls) == 4  # 2 above + 1 here
    torch.autograd.grad(lp.sum(), x)  # and it differentiates through the shared estimate
