"""Notebook run times, printed at the end of the test session (the issue asks what the notebooks cost in CI)."""

import pytest

NOTEBOOK_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="session")
def notebook_seconds() -> dict[str, float]:
    return NOTEBOOK_SECONDS


def pytest_terminal_summary(terminalreporter):
    if NOTEBOOK_SECONDS:
        terminalreporter.section("notebook run times (GENNEG_NOTEBOOK_FAST=1)")
        for name, seconds in NOTEBOOK_SECONDS.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
