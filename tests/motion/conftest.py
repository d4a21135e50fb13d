"""Shared fixtures: the proxy body in a per-session cache, the motion domain, the walk clip, and every real window
posed."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("genneg-cache")


@pytest.fixture(scope="session")
def body(cache_dir):
    pytest.importorskip("smplx")
    from genneg.domains.motion.body import load_body

    return load_body("proxy", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def domain(cache_dir, body):
    """The motion domain on the session's proxy body, one per test module."""
    from genneg.domains.motion import make_domain

    return make_domain(cache_dir=str(cache_dir))


@pytest.fixture(scope="session")
def walk(body):
    """The retargeted, grounded walk clip: (root [N, 3], local [N, 24, 3, 3], BodyOutput)."""
    pytest.importorskip("pybullet")
    from genneg.domains.motion.data.deepmimic import default_clip_paths
    from genneg.domains.motion.data.windows import WindowConfig, clip_motion, pose_body

    path = next(p for p in default_clip_paths() if p.stem == "humanoid3d_walk")
    _, root, local, _ = clip_motion(path, WindowConfig(tile=False), body)
    return root, local, pose_body(body, root, local)


@pytest.fixture(scope="session")
def real(body):
    """Every real window of the calibration windows (stride 1) as oracle inputs on the proxy body."""
    pytest.importorskip("pybullet")
    from genneg.domains.motion.calibration import real_samples

    return real_samples(body=body)

