"""The method on a Gaussian mixture with a half-plane oracle: α, rounds, trained classifiers, distillation, failures."""

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from genneg.checkpoint import load_weights
from genneg.classifier import NoisyClassifier, balanced_set, fit_classifier, importance_weights
from genneg.config import GenNegConfig
from genneg.diffusion import EDMPrecond
from genneg.generate import generate
from genneg.genneg import distil, run_round, stack
from genneg.guidance import GuidanceTerm, guided
from genneg.testing import GaussianMixtureDomain
from genneg.training import TrainConfig



def valid_rate(domain, denoiser, cfg, n=2000, seed=5):
    x = generate(denoiser, domain.sample_shape, n, cfg.sampler, seed=seed)
    return domain.plane.valid(x).double().mean().item(), x


def test_importance_weight_formula():
    y = torch.tensor([True, False, True, False])
    assert importance_weights(y, 0.9).tolist() == pytest.approx([1.8, 0.2, 1.8, 0.2])
    with pytest.raises(ValueError):
        importance_weights(y, 1.0)
    x, yb, _ = balanced_set(torch.arange(10.0)[:, None], torch.tensor([True] * 8 + [False] * 2))
    assert len(yb) == 16 and yb.sum() == 8


class ConstantNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_in, c_noise, cond=None):
        return self.bias.expand(x_in.shape[0])


@pytest.mark.parametrize("alpha, expected", [(0.2, 0.2), (None, 0.5)])
def test_weighted_loss_optimum_restores_the_prior(alpha, expected):
    # labels independent of x: the Bayes posterior is the prior α; without weights the 50/50 set teaches ½
    x0 = torch.randn(1000, 2)
    y = torch.arange(1000) < 200
    model = NoisyClassifier(ConstantNet(), 0.5)
    cfg = TrainConfig(steps=400, batch_size=256, lr=0.05, warmup=1, lr_decay="constant", ema_decay=0.0,
                      checkpoint_every=0)
    fit_classifier(model, x0, y, cfg, alpha=alpha)
    assert torch.sigmoid(model.net.bias).item() == pytest.approx(expected, abs=0.03)


def test_prior_offset_reaches_the_same_optimum_as_importance_weights():
    x0 = torch.randn(1000, 2)
    y = torch.arange(1000) < 200
    model = NoisyClassifier(ConstantNet(), 0.5)
    cfg = TrainConfig(steps=400, batch_size=256, lr=0.05, warmup=1, lr_decay="constant", ema_decay=0.0,
                      checkpoint_every=0)
    fit_classifier(model, x0, y, cfg, alpha=None)
    model.logit_offset.fill_(math.log(0.2 / 0.8))
    p = torch.sigmoid(model.logit(x0[:5], torch.ones(5))).mean().item()
    assert p == pytest.approx(0.2, abs=0.03)


def test_round_estimates_alpha_and_its_classifier_raises_the_valid_rate(gmm_domain, gmm_cfg):
    d = gmm_domain
    r = run_round(d.gmm.denoiser, d, gmm_cfg, d.oracle(), 1)
    true_alpha = d.plane.acceptance(d.gmm)
    assert r.alpha_ci[0] <= true_alpha <= r.alpha_ci[1] and r.num_samples == 4000 and not r.skipped
    assert not r.report["collapsed"] and r.report["bins"][0]["accuracy"] > 0.9
    base, _ = valid_rate(d, d.gmm.denoiser, gmm_cfg)
    after, _ = valid_rate(d, stack(d.gmm.denoiser, [r.classifier], gmm_cfg.genneg), gmm_cfg)
    assert base == pytest.approx(true_alpha, abs=0.03)
    assert (1 - after) < 0.5 * (1 - base), f"invalid {1 - base:.3f} -> {1 - after:.3f}"


@pytest.mark.parametrize("distil_sigma, pool", [("lognormal", 0), ("loguniform", 0), ("loguniform", 30000)])
def test_distilled_student_matches_its_teacher(gmm_domain, gmm_cfg, distil_sigma, pool):
    d = gmm_domain
    cfg = replace(gmm_cfg, genneg=replace(gmm_cfg.genneg, distil_sigma=distil_sigma, distil_pool=pool))
    bayes = GuidanceTerm(lambda x, s, c: d.plane.log_prob_valid(d.gmm, x, s))
    teacher = guided(d.gmm.denoiser, [bayes])
    init = EDMPrecond(d.make_denoiser_net(gmm_cfg.net), d.sigma_data)
    student = distil(teacher, init, d, cfg)
    t_valid, xt = valid_rate(d, teacher, gmm_cfg, seed=9)
    s_valid, xs = valid_rate(d, student, gmm_cfg, seed=9)
    assert s_valid > 0.93 and t_valid > 0.97
    assert torch.allclose(xs.mean(0), xt.mean(0), atol=0.08)
    assert torch.allclose(torch.cov(xs.T), torch.cov(xt.T), atol=0.08)


class _DroppedNet(torch.nn.Module):
    """A denoiser network with dropout on its output, as networks with dropout or condition dropout behave in
    training mode."""

    def __init__(self, net):
        super().__init__()
        self.net, self.drop = net, torch.nn.Dropout(0.5)

    def forward(self, x, c_noise, cond=None):
        return self.drop(self.net(x, c_noise, cond))


@pytest.mark.parametrize("pool", [0, 2000])
def test_distillation_trains_the_student_as_it_samples(gmm_domain, gmm_cfg, pool):
    # a teacher equal to the student's initial weights: nothing to learn, so the student must not move. With dropout
    # (or a net's condition dropout) active in training, every step would regress a perturbed output onto the
    # teacher's and pull the student away from the base
    d = gmm_domain
    init = EDMPrecond(_DroppedNet(d.make_denoiser_net(gmm_cfg.net)), d.sigma_data).eval().requires_grad_(False)
    teacher = copy.deepcopy(init)
    cfg = replace(gmm_cfg, distil=replace(gmm_cfg.distil, steps=30, warmup=0),
                  genneg=replace(gmm_cfg.genneg, distil_samples=256, distil_pool=pool))
    student = distil(teacher, init, d, cfg)
    assert not student.training
    for (name, a), b in zip(init.state_dict().items(), student.state_dict().values()):
        assert torch.equal(a, b), f"{name} moved during a distillation with nothing to learn"


def test_target_pool_holds_the_teachers_targets_and_is_read_back_on_resume(gmm_domain, tmp_path):
    from genneg.diffusion import LogUniformSigma
    from genneg.genneg import target_pool

    d = gmm_domain
    calls = []

    def teacher(x, sigma, cond):
        calls.append(len(x))
        return d.gmm.denoiser(x, sigma, cond)

    x0 = d.gmm.sample(500, generator=torch.Generator().manual_seed(0))
    kw = dict(seed=3, batch_size=128, cache=tmp_path / "pool.safetensors")
    pool = target_pool(teacher, x0, None, 1000, LogUniformSigma(0.01, 10.0), **kw)
    assert calls == [128] * 7 + [104]  # evaluated in batches, once
    assert torch.equal(pool["target"], d.gmm.denoiser(pool["x"], pool["sigma"], None))
    noise = (pool["x"] - x0[pool["index"]]) / pool["sigma"][:, None]
    assert abs(noise.std().item() - 1) < 0.1 and pool["sigma"].min() >= 0.01 and pool["sigma"].max() <= 10.0
    again = target_pool(teacher, x0, None, 1000, LogUniformSigma(0.01, 10.0), resume=True, **kw)
    assert len(calls) == 8 and all(torch.equal(again[k], pool[k]) for k in pool)
    target_pool(teacher, x0, None, 900, LogUniformSigma(0.01, 10.0), resume=True, **kw)  # another pool: redrawn
    assert len(calls) == 16
    with pytest.raises(ValueError, match="distil_pool"):
        replace(GenNegConfig(), distil_pool=-1)


def test_distillation_sigma_distribution_follows_the_config(gmm_cfg):
    from genneg.diffusion import LogNormalSigma, LogUniformSigma
    from genneg.genneg import _distil_sigma_dist

    g = replace(gmm_cfg.genneg, distil_sigma="loguniform", classifier_sigma_min=0.01, classifier_sigma_max=3.0)
    dist = _distil_sigma_dist(g)
    assert isinstance(dist, LogUniformSigma) and (dist.sigma_min, dist.sigma_max) == (0.01, 3.0)
    sig = dist(20000, generator=torch.Generator().manual_seed(0))
    assert sig.min() >= 0.01 and sig.max() <= 3.0 and (sig < 0.05).float().mean() > 0.2  # small σ is visited
    assert isinstance(_distil_sigma_dist(gmm_cfg.genneg), LogNormalSigma)
    # a hand-off σ cuts either distribution below it; the log-normal keeps its shape above (inverse CDF)
    assert _distil_sigma_dist(replace(g, distil_sigma_min=0.1)).sigma_min == 0.1
    cut = _distil_sigma_dist(replace(gmm_cfg.genneg, distil_sigma_min=0.5))
    full = LogNormalSigma()(200000, generator=torch.Generator().manual_seed(1))
    sig = cut(200000, generator=torch.Generator().manual_seed(2))
    assert sig.min() >= 0.5 and abs(sig.median() - full[full >= 0.5].median()) < 0.02
    assert repr(LogNormalSigma()) == "LogNormalSigma(p_mean=-1.2, p_std=1.2)"  # the key of pools cached before
    with pytest.raises(ValueError, match="distil_sigma"):
        replace(gmm_cfg.genneg, distil_sigma="uniform")


@pytest.mark.parametrize("fn, why", [
    (lambda x, c: np.ones(len(x), bool), "alpha = 1"),
    (lambda x, c: np.zeros(len(x), bool), "alpha = 0"),
])
def test_degenerate_rounds_are_skipped_with_a_message(gmm_cfg, fn, why):
    d = GaussianMixtureDomain(oracle_fn=fn)
    cfg = replace(gmm_cfg, genneg=replace(gmm_cfg.genneg, samples_per_round=200))
    r = run_round(d.gmm.denoiser, d, cfg, d.oracle(), 1)
    assert r.classifier is None and why in r.skipped


def test_failing_samples_are_excluded_and_counted(gmm_cfg):
    def sometimes_raises(x, c):
        if (x[:, 1] > 1.2).any():
            raise RuntimeError("simulator crashed")
        return x[:, 0] + 0.5 * x[:, 1] >= -0.6

    d = GaussianMixtureDomain(oracle_fn=sometimes_raises)
    cfg = replace(gmm_cfg, genneg=replace(gmm_cfg.genneg, samples_per_round=1000),
                  classifier=replace(gmm_cfg.classifier, steps=20))
    r = run_round(d.gmm.denoiser, d, cfg, d.oracle(), 1)
    assert 0 < r.num_undefined < 200 and r.num_samples == 1000 - r.num_undefined and r.classifier is not None


def test_wrong_shape_oracle_is_an_error(gmm_cfg):
    d = GaussianMixtureDomain(oracle_fn=lambda x, c: np.ones((len(x), 2), bool))
    cfg = replace(gmm_cfg, genneg=replace(gmm_cfg.genneg, samples_per_round=100))
    with pytest.raises(ValueError, match="1-D"):
        run_round(d.gmm.denoiser, d, cfg, d.oracle(), 1)


def test_a_single_valid_sample_stays_in_training(gmm_cfg):
    # one valid sample among many: the stratified hold-out must not take it, or the balanced set would be empty
    d = GaussianMixtureDomain(oracle_fn=lambda x, c: np.arange(len(x)) == 3)
    cfg = replace(gmm_cfg, genneg=replace(gmm_cfg.genneg, samples_per_round=300),
                  classifier=replace(gmm_cfg.classifier, steps=5))
    r = run_round(d.gmm.denoiser, d, cfg, d.oracle(), 1)
    assert r.classifier is not None and r.alpha == pytest.approx(1 / 300)


def test_collapsed_classifier_guides_nothing_even_with_a_window_floor(gmm_domain, gmm_cfg):
    d = gmm_domain
    c = NoisyClassifier(d.make_classifier_net({"width": 8, "depth": 1}), d.sigma_data)
    c.sigma_max_guidance.fill_(0.0)  # what a collapsed classifier gets
    cfg = replace(gmm_cfg, genneg=replace(gmm_cfg.genneg, guidance_sigma_min=0.01))
    g = stack(d.gmm.denoiser, [c], cfg.genneg)
    x, s = torch.randn(8, 2), torch.full((8,), 0.5)
    assert g.terms == [] and torch.equal(g(x, s, None), d.gmm.denoiser(x, s))


def test_rounds_continue_on_top_of_a_student(gmm_domain, gmm_cfg):
    d = gmm_domain
    cfg = replace(gmm_cfg, distil=replace(gmm_cfg.distil, steps=200),
                  genneg=replace(gmm_cfg.genneg, samples_per_round=2000, distil_samples=2000))
    student = distil(d.gmm.denoiser, EDMPrecond(d.make_denoiser_net(cfg.net), d.sigma_data), d, cfg)
    r = run_round(student, d, cfg, d.oracle(), 1)  # guide -> distil -> guide: the student is just a denoiser
    assert r.classifier is not None and 0 < r.alpha < 1
    x = generate(stack(student, [r.classifier], cfg.genneg), d.sample_shape, 64, cfg.sampler)
    assert torch.isfinite(x).all()


class _Shift(torch.nn.Module):
    """x + shift·σ, recording how many rows each call got."""

    def __init__(self, tag, shift, calls):
        super().__init__()
        self.tag, self.shift, self.calls = tag, shift, calls

    def forward(self, x, sigma, cond):
        self.calls.append((self.tag, len(x)))
        assert torch.equal(cond["k"], x[:, 0])  # each row keeps its own condition
        return x + self.shift * sigma[:, None]


def test_sigma_handoff_evaluates_each_row_with_one_network():
    from genneg.diffusion import SigmaHandoff

    calls = []
    handoff = SigmaHandoff(_Shift("low", 1.0, calls), _Shift("high", -1.0, calls), 0.3)
    x = torch.randn(6, 2)
    sigma = torch.tensor([0.01, 0.5, 0.3, 0.29, 2.0, 0.1])
    out = handoff(x, sigma, {"k": x[:, 0].clone()})
    high = sigma >= 0.3
    assert torch.equal(out[high], x[high] - sigma[high, None])
    assert torch.equal(out[~high], x[~high] + sigma[~high, None])
    assert sorted(calls) == [("high", 3), ("low", 3)]
    calls.clear()
    handoff(x, torch.full((6,), 0.5), {"k": x[:, 0].clone()})
    assert calls == [("high", 6)]
    with pytest.raises(ValueError, match="hand-off"):
        SigmaHandoff(_Shift("low", 1.0, calls), _Shift("high", -1.0, calls), 0.0)


def test_a_student_distilled_above_a_sigma_hands_the_rest_to_the_base(gmm_domain, gmm_cfg, tmp_path):
    from genneg.context import RunContext
    from genneg.diffusion import SigmaHandoff
    from genneg.models import load_denoiser

    d = gmm_domain
    bayes = GuidanceTerm(lambda x, s, c: d.plane.log_prob_valid(d.gmm, x, s))
    teacher = guided(d.gmm.denoiser, [bayes])
    init = EDMPrecond(d.make_denoiser_net(gmm_cfg.net), d.sigma_data).eval().requires_grad_(False)
    before = copy.deepcopy(init.state_dict())
    cfg = replace(gmm_cfg, distil=replace(gmm_cfg.distil, steps=40, warmup=0),
                  genneg=replace(gmm_cfg.genneg, distil_samples=256, distil_pool=2000, distil_sigma="loguniform",
                                 distil_sigma_min=0.5))
    model = distil(teacher, init, d, cfg, RunContext(tmp_path))
    assert isinstance(model, SigmaHandoff) and model.sigma == 0.5
    pool, _ = load_weights(tmp_path / "distilled.targets.safetensors")
    assert pool["sigma"].min() >= 0.5  # the student learns only above the hand-off
    x = torch.randn(64, 2)
    sigma = torch.exp(torch.linspace(math.log(0.01), math.log(5.0), 64))
    with torch.no_grad():
        out, low, high = model(x, sigma, None), init(x, sigma, None), model.high(x, sigma, None)
    below = sigma < 0.5
    assert torch.equal(out[below], low[below]) and torch.equal(out[~below], high[~below])
    assert not torch.allclose(high, low)  # the student moved; the base did not
    assert all(torch.equal(v, init.state_dict()[k]) for k, v in before.items())
    # the file holds the whole distilled model, and a resumed run reads it back without training again
    again = load_denoiser(d, cfg, tmp_path / "distilled.safetensors")
    with torch.no_grad():
        assert isinstance(again, SigmaHandoff) and torch.equal(again(x, sigma, None), out)
    resumed = distil(teacher, init, d, cfg, RunContext(tmp_path, resume=True))
    with torch.no_grad():
        assert torch.equal(resumed(x, sigma, None), out)
    with pytest.raises(ValueError, match="distil_sigma_min"):
        replace(gmm_cfg.genneg, distil_sigma_min=-0.5)
