"""A tiny trained toy run shared by the scale tests (trained in-process, a few seconds)."""

import pytest


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    from genneg.cli import main

    run = tmp_path_factory.mktemp("scale") / "toy"
    assert main(["train", "toy", "--preset", "tiny", "--set", "base.steps=30", "--run-dir", str(run), "--quiet",
                 "--device", "cpu"]) == 0
    return run
