"""The base denoiser's objective: the configured σ distribution and a domain's term on the denoised sample."""

import math

import pytest
import torch

from genneg.config import RunConfig, SigmaConfig, config_from_dict, override
from genneg.diffusion import EDMPrecond, LogNormalSigma, edm_loss
from genneg.models import base_objective


class _Net(torch.nn.Module):
    """Records the noise levels it is called at; returns a learnable offset of its input."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.sigmas = []

    def forward(self, x, c_noise, cond=None):
        self.sigmas.append((4 * c_noise).exp().detach())
        return x + self.bias


class _Domain:
    def __init__(self, weight):
        self.weight = weight

    def denoised_loss(self, denoised, x0, sigma, cond):
        return self.weight * (denoised - x0).pow(2).flatten(1).sum(1)


def test_base_objective_draws_sigma_from_the_config():
    cfg = RunConfig(domain="toy", base_sigma=SigmaConfig(p_mean=-2.5, p_std=0.5))
    net = _Net()
    loss = base_objective(object(), cfg)(EDMPrecond(net), {"x0": torch.zeros(20_000, 2)},
                                         torch.Generator().manual_seed(0))
    log_sigma = torch.cat(net.sigmas).log()
    assert loss.shape == (20_000,)
    assert abs(log_sigma.mean().item() + 2.5) < 0.02 and abs(log_sigma.std().item() - 0.5) < 0.02


def test_the_domain_term_is_added_per_sample_on_the_same_denoised_sample():
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    model = EDMPrecond(_Net())
    plain = edm_loss(model, x0, generator=torch.Generator().manual_seed(2))
    cfg = RunConfig(domain="toy")
    for weight in (0.0, 3.0):
        got = base_objective(_Domain(weight), cfg)(model, {"x0": x0}, torch.Generator().manual_seed(2))
        # same σ and noise draws: the difference is exactly the domain's term on D(x; σ)
        sigma = LogNormalSigma()(64, generator=torch.Generator().manual_seed(2))
        noise_gen = torch.Generator().manual_seed(2)
        LogNormalSigma()(64, generator=noise_gen)
        x = x0 + sigma[:, None] * torch.randn(x0.shape, generator=noise_gen)
        term = weight * (model(x, sigma) - x0).pow(2).sum(1)
        torch.testing.assert_close(got, plain + term)
    assert (term > 0).all()


def test_the_domain_term_reaches_the_gradient():
    x0 = torch.zeros(32, 2)
    model = EDMPrecond(_Net())
    with torch.no_grad():
        model.net.bias.fill_(0.1)
    grads = []
    for weight in (0.0, 5.0):
        model.zero_grad()
        loss = base_objective(_Domain(weight), RunConfig(domain="toy"))(model, {"x0": x0},
                                                                        torch.Generator().manual_seed(0))
        loss.mean().backward()
        grads.append(model.net.bias.grad.item())
    assert grads[1] > grads[0] > 0


def test_sigma_config_round_trips_and_rejects_bad_values():
    cfg = override(RunConfig(domain="toy"), "base_sigma.p_mean", -2.0)
    assert config_from_dict(RunConfig, cfg.to_dict()).base_sigma == SigmaConfig(p_mean=-2.0, p_std=1.2)
    for bad in ({"p_std": 0.0}, {"p_std": -1.0}, {"p_mean": math.nan}, {"p_std": math.inf}):
        with pytest.raises(ValueError, match="SigmaConfig"):
            SigmaConfig(**bad)
