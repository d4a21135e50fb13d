"""Shared fixtures: a Gaussian-mixture domain whose exact denoiser and Bayes classifier are known in closed form."""

import pytest
import torch

from genneg.testing import GaussianMixtureDomain

torch.set_num_threads(1)  # small models: one thread is faster and immune to oversubscription


@pytest.fixture
def gmm_domain():
    return GaussianMixtureDomain()


@pytest.fixture
def gmm_cfg(gmm_domain):
    return gmm_domain.presets()["default"]
