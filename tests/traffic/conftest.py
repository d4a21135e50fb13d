"""Shared fixtures: one tiny SUMO scene data set per test session (about 20 s on 2 cores)."""

import pytest


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    pytest.importorskip("sumo")
    pytest.importorskip("libsumo")
    from genneg.domains.traffic import TrafficDomain

    root = tmp_path_factory.mktemp("traffic-cache")
    TrafficDomain(preset="tiny", data_dir=root).prepare_data()
    return root


@pytest.fixture(scope="session")
def tiny_domain(tiny_data_dir):
    from genneg.domain import get_domain

    return get_domain("traffic", preset="tiny", data_dir=tiny_data_dir, map_lines=96, map_points=5)
