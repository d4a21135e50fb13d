"""Every built-in domain and oracle passes the contract tests of ``genneg.contract``, with no special cases.

Traffic and motion build their tiny data sets once per session (skipped when their extra is not installed).
"""

import numpy as np
import pytest

from genneg.contract import DomainContract, OracleContract
from genneg.domain import get_domain
from genneg.testing import GaussianMixtureDomain


# ------------------------------------------------------------------------------------------------------ toy


@pytest.fixture(scope="module", params=["checkerboard", "rings"])
def toy_domain(request):
    return get_domain("toy", shape=request.param, n_train=2000, n_eval=500)


class TestToyDomain(DomainContract):
    @pytest.fixture
    def domain(self, toy_domain):
        return toy_domain


class TestGaussianMixtureDomain(DomainContract):
    @pytest.fixture
    def domain(self):
        return GaussianMixtureDomain(n_data=1000)


class TestCheckerboardOracle(OracleContract):
    @pytest.fixture
    def oracle(self):
        from genneg.oracles.toy import Checkerboard

        return Checkerboard(k=4, extent=2.0)

    @pytest.fixture
    def valid_case(self):  # centres of black cells (i + j even), and the board's closed outer corner
        return np.array([[-1.5, -1.5], [-0.5, -0.5], [0.5, -1.5], [1.5, 1.5], [2.0, 2.0]]), None

    @pytest.fixture
    def invalid_case(self):
        return np.array([[-0.5, -1.5], [1.5, 0.5], [2.5, 0.0], [0.0, -3.0]]), None

    @pytest.fixture
    def invalid_reasons(self):
        return ["white_cell", "white_cell", "outside", "outside"]


class TestRingsOracle(OracleContract):
    @pytest.fixture
    def oracle(self):
        from genneg.oracles.toy import Rings

        return Rings()

    @pytest.fixture
    def valid_case(self):
        return np.array([[0.75, 0.0], [0.0, -1.0], [1.2, 1.2], [-2.0, 0.0]]), None

    @pytest.fixture
    def invalid_case(self):
        return np.array([[0.0, 0.0], [1.25, 0.0], [3.0, 0.0]]), None

    @pytest.fixture
    def invalid_reasons(self):
        return ["band", "band", "outside"]


class TestHalfPlaneOracle(OracleContract):
    @pytest.fixture
    def oracle(self):
        return GaussianMixtureDomain().oracle()

    @pytest.fixture
    def valid_case(self):  # valid iff x + y / 2 >= -0.6
        return np.array([[0.0, 0.0], [-0.5, 0.0], [-1.0, 1.0]], np.float32), None

    @pytest.fixture
    def invalid_case(self):
        return np.array([[-2.0, 0.0], [0.0, -1.5]], np.float32), None


# ------------------------------------------------------------------------------------------------------ traffic


@pytest.fixture(scope="session")
def traffic_domain(tmp_path_factory):
    pytest.importorskip("sumo")
    pytest.importorskip("libsumo")
    pytest.importorskip("shapely")
    from genneg.domains.traffic import TrafficDomain

    root = tmp_path_factory.mktemp("contract-traffic")
    TrafficDomain(preset="tiny", data_dir=root).prepare_data()
    return get_domain("traffic", preset="tiny", data_dir=root, map_lines=96, map_points=5)


class TestTrafficDomain(DomainContract):
    @pytest.fixture
    def domain(self, traffic_domain):
        return traffic_domain


# ------------------------------------------------------------------------------------------------------ motion


@pytest.fixture(scope="session")
def motion_domain(tmp_path_factory):
    pytest.importorskip("smplx")
    pytest.importorskip("pybullet")
    return get_domain("motion", cache_dir=str(tmp_path_factory.mktemp("contract-motion")))


class TestMotionDomain(DomainContract):
    @pytest.fixture
    def domain(self, motion_domain):
        return motion_domain


class TestTrafficSceneOracle(OracleContract):
    """Scenes of two cars (x, y, yaw, length, width in metres) on a straight 10 m wide road along x."""

    @pytest.fixture
    def oracle(self):
        pytest.importorskip("shapely")
        from genneg.oracles.traffic import SceneOracle

        return SceneOracle()

    @staticmethod
    def scenes(*pairs):
        from shapely.geometry import box

        boxes = np.array([[(*a, 0.0, 4.0, 2.0), (*b, 0.0, 4.0, 2.0)] for a, b in pairs])
        road = np.empty(len(pairs), object)
        road[:] = [box(-50, -5, 50, 5)] * len(pairs)
        return {"boxes": boxes, "defined": np.ones(boxes.shape[:2], bool), "drivable_area": road}, None

    @pytest.fixture
    def valid_case(self):
        return self.scenes(((0, 0), (10, 0)), ((-20, -2), (-20, 2.5)), ((30, 1), (40, -1)))

    @pytest.fixture
    def invalid_case(self):
        return self.scenes(((0, 0), (1, 0.5)), ((0, 0), (0, 20)), ((60, 0), (70, 0)))

    @pytest.fixture
    def invalid_reasons(self):
        return ["collision", "offroad", "offroad"]
