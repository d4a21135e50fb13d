"""Samplers and the likelihood bound against an analytic Gaussian mixture (exact denoiser, exact density)."""

import math

import pytest
import torch

from genneg.diffusion import karras_sigmas
from genneg.likelihood import mean_and_stderr, nll_bound
from genneg.sampling import sample, sample_heun, sample_stochastic
from genneg.testing import GaussianMixture


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture(
        weights=[0.5, 0.3, 0.2],
        means=[[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]],
        stds=[[0.3, 0.2], [0.25, 0.35], [0.2, 0.2]],
    )


@pytest.mark.parametrize("sampler", ["heun", "stochastic"])
def test_samplers_reproduce_mixture_moments(gmm, sampler):
    g = torch.Generator().manual_seed(0)
    sigmas = karras_sigmas(64, 0.002, 80.0)
    x = sample(gmm.denoiser, (20000, 2), sigmas, sampler=sampler, generator=g)
    mean, cov = gmm.moments()
    # Monte Carlo s.e. of the mean is ~0.007 with 20k samples; the tolerance is 5 s.e. plus discretisation.
    assert torch.allclose(x.double().mean(0), mean, atol=0.04)
    assert torch.allclose(torch.cov(x.double().T), cov, atol=0.05)


def test_stochastic_without_churn_is_heun(gmm):
    sigmas = karras_sigmas(16, 0.002, 80.0)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1)) * 80
    a = sample_heun(gmm.denoiser, x, sigmas)
    b = sample_stochastic(gmm.denoiser, x, sigmas, s_churn=0.0)
    assert torch.equal(a, b)


def test_stochastic_sampler_is_reproducible_with_a_generator(gmm):
    sigmas = karras_sigmas(8, 0.002, 80.0)
    draw = lambda: sample(gmm.denoiser, (32, 2), sigmas, sampler="stochastic",
                          generator=torch.Generator().manual_seed(7))
    assert torch.equal(draw(), draw())


def test_nll_bound_is_tight_with_the_exact_denoiser(gmm):
    g = torch.Generator().manual_seed(3)
    x0 = gmm.sample(2000, generator=g)
    bound = nll_bound(gmm.denoiser, x0, sigma_min=1e-3, sigma_max=80.0, num_sigmas=64, generator=g)
    true = -gmm.log_prob(x0).float()
    gap, se = mean_and_stderr(bound - true)
    assert se < 0.02
    assert abs(gap) < 0.05, f"bound - NLL = {gap:.4f} ± {se:.4f} nats"


def test_nll_bound_penalises_a_wrong_denoiser(gmm):
    x0 = gmm.sample(500, generator=torch.Generator().manual_seed(4))
    shifted = lambda x, s, c: gmm.denoiser(x, s) + 0.3
    good = nll_bound(gmm.denoiser, x0, sigma_min=1e-3).mean()
    bad = nll_bound(shifted, x0, sigma_min=1e-3).mean()
    assert bad > good + 1.0


@pytest.mark.parametrize(
    "x, msg",
    [
        (torch.full((4, 2), math.nan), "non-finite"),
        (torch.zeros(0, 2), "B > 0"),
        (torch.zeros(4), "shape"),
    ],
)
def test_bad_inputs_get_clear_errors(gmm, x, msg):
    sigmas = karras_sigmas(4, 0.002, 80.0)
    with pytest.raises(ValueError, match=msg):
        sample_heun(gmm.denoiser, x, sigmas)
    with pytest.raises(ValueError, match=msg):
        nll_bound(gmm.denoiser, x)


def test_karras_schedule():
    s = karras_sigmas(10, 0.002, 80.0)
    assert s.shape == (11,) and s[-1] == 0
    assert math.isclose(s[0].item(), 80.0, rel_tol=1e-5) and math.isclose(s[-2].item(), 0.002, rel_tol=1e-4)
    assert (s[:-1] > s[1:]).all()
    with pytest.raises(ValueError):
        karras_sigmas(0, 0.002, 80.0)
