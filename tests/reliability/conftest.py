"""Fixtures of the reliability tests: one uninterrupted tiny toy run per session (the kill tests' reference, and
trained networks for the numerical checks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import finish, start, toy_command


@pytest.fixture(scope="session")
def toy_reference(tmp_path_factory) -> Path:
    """The seed folder of an uninterrupted `genneg run toy` with the kill tests' settings."""
    run = tmp_path_factory.mktemp("straight") / "run"
    finish(start(toy_command(run, resume=False)))
    return run / "seed0"
