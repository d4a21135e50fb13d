"""Guidance against closed forms: the exact noisy Bayes classifier of a half-plane oracle under a Gaussian mixture."""

import math

import pytest
import torch

from genneg.diffusion import karras_sigmas
from genneg.guidance import GuidanceTerm, guided
from genneg.sampling import sample
from genneg.testing import GaussianMixture, HalfPlane


@pytest.fixture(scope="module")
def setup():
    gmm = GaussianMixture(weights=[0.6, 0.4], means=[[-0.8, 0.0], [0.8, 0.3]], stds=[[0.4, 0.3], [0.3, 0.4]])
    oracle = HalfPlane(normal=[1.0, 0.5], offset=0.0)
    bayes = lambda x, s, c: oracle.log_prob_valid(gmm, x, s)
    return gmm, oracle, bayes


def test_exact_bayes_guidance_matches_rejection_sampling(setup):
    gmm, oracle, bayes = setup
    sigmas = karras_sigmas(64, 0.002, 80.0)
    g = torch.Generator().manual_seed(0)
    x = sample(guided(gmm.denoiser, [GuidanceTerm(bayes)]), (8000, 2), sigmas, generator=g)
    ref = gmm.sample(200_000, generator=torch.Generator().manual_seed(1))
    ref = ref[oracle.valid(ref)]
    assert oracle.valid(x).float().mean() > 0.97  # base: ~50 % valid
    assert torch.allclose(x.mean(0), ref.mean(0), atol=0.04)
    assert torch.allclose(torch.cov(x.T), torch.cov(ref.T), atol=0.04)


def test_zero_weight_and_empty_window_are_the_identity(setup):
    gmm, _, bayes = setup
    x = torch.randn(64, 2)
    sigma = torch.full((64,), 0.7)
    base = gmm.denoiser(x, sigma)
    assert torch.equal(guided(gmm.denoiser, [])(x, sigma, None), base)
    assert torch.equal(guided(gmm.denoiser, [GuidanceTerm(bayes, weight=0.0)])(x, sigma, None), base)
    assert torch.equal(guided(gmm.denoiser, [GuidanceTerm(bayes, sigma_range=(1.0, 5.0))])(x, sigma, None), base)


def test_guidance_works_under_no_grad_and_stacks(setup):
    gmm, _, bayes = setup
    x, sigma = torch.randn(16, 2), torch.full((16,), 0.5)
    one = guided(gmm.denoiser, [GuidanceTerm(bayes)])
    two = guided(gmm.denoiser, [GuidanceTerm(bayes), GuidanceTerm(bayes)])
    with torch.no_grad():
        d0, d1, d2 = gmm.denoiser(x, sigma), one(x, sigma, None), two(x, sigma, None)
    assert torch.allclose(d2 - d0, 2 * (d1 - d0), atol=1e-5)  # terms add up
    # the correction is σ² ∇ log C, checked against finite differences
    eps = 1e-3
    fd = torch.stack([(bayes(x + eps * e, sigma, None) - bayes(x - eps * e, sigma, None)) / (2 * eps)
                      for e in torch.eye(2)], -1)
    assert torch.allclose(d1 - d0, 0.25 * fd, atol=1e-3)


def test_clipping_bounds_the_step(setup):
    gmm, _, _ = setup
    steep = lambda x, s, c: 1e6 * x[:, 0]
    g = guided(gmm.denoiser, [GuidanceTerm(steep, max_ratio=0.5)])
    x, sigma = torch.randn(8, 2), torch.full((8,), 0.01)
    step = g(x, sigma, None) - gmm.denoiser(x, sigma)
    assert (step.norm(dim=1) <= 0.5 * 0.01 * math.sqrt(2) * 1.0001).all()


def test_bad_terms_are_rejected(setup):
    gmm, _, _ = setup
    with pytest.raises(ValueError, match="sigma_range"):
        GuidanceTerm(lambda x, s, c: x.sum(1), sigma_range=(2.0, 1.0))
    wrong = guided(gmm.denoiser, [GuidanceTerm(lambda x, s, c: x, name="wrong")])
    with pytest.raises(ValueError, match="wrong"):
        wrong(torch.randn(4, 2), torch.ones(4), None)
