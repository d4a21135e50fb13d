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


@pytest.fixture(scope="session")
def genneg_cache(tmp_path_factory):
    """One data cache for the session (SUMO scenes, motion windows), shared by tests/docs and tests/notebooks."""
    path = tmp_path_factory.getbasetemp() / "genneg-cache"
    path.mkdir(exist_ok=True)
    return path
