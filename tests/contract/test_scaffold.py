"""`genneg new-domain`: the scaffolded package passes the contract tests as generated and runs `genneg run` end to
end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from genneg.cli import main
from genneg.contract import DomainContract, OracleContract
from genneg.domain import get_domain
from genneg.oracle import get_oracle
from genneg.scaffold import scaffold_domain

NAME = "scaffolded"


@pytest.fixture(scope="module")
def scaffold_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("new-domain")
    assert main(["new-domain", NAME, "--dir", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def scaffolded(scaffold_dir):
    return get_domain(NAME, domain_path=scaffold_dir / NAME, n_train=2000, n_eval=500)


class TestScaffoldedDomain(DomainContract):
    @pytest.fixture
    def domain(self, scaffolded):
        return scaffolded


class TestScaffoldedOracle(OracleContract):
    @pytest.fixture
    def oracle(self, scaffolded):
        return get_oracle("discs", domain=NAME)

    @pytest.fixture
    def valid_case(self):
        return np.array([[-1.0, 0.0], [1.0, 0.5], [-1.5, 0.3]]), None

    @pytest.fixture
    def invalid_case(self):
        return np.array([[0.1, 0.0], [4.0, 4.0]]), None


def test_writes_package_and_tests(scaffold_dir):
    package = {p.name for p in (scaffold_dir / NAME).iterdir()}
    assert {"__init__.py", "data.py", "oracle.py", "plot.py", "presets.py"} <= package
    assert (scaffold_dir / "tests" / f"test_{NAME}.py").is_file()
    assert not any("${" in p.read_text() for p in scaffold_dir.rglob("*.py")), "a template placeholder was left"
    assert {"default", "tiny"} <= set(get_domain(NAME, domain_path=scaffold_dir / NAME).presets())


def test_refuses_bad_names_and_overwrites(tmp_path, capsys):
    for bad in ("My-Domain", "class", "9lives", ""):
        with pytest.raises(ValueError, match="lower-case Python identifier"):
            scaffold_domain(bad, tmp_path)
    assert not any(tmp_path.iterdir()), "a rejected name wrote files"
    scaffold_domain("twice", tmp_path)
    before = (tmp_path / "twice" / "data.py").read_text()
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        main(["new-domain", "twice", "--dir", str(tmp_path)])
    assert (tmp_path / "twice" / "data.py").read_text() == before
    assert main(["new-domain", "Bad-Name", "--dir", str(tmp_path)]) == 2
    assert "lower-case Python identifier" in capsys.readouterr().err


def test_generated_tests_pass(scaffold_dir):
    """The test file the user gets runs green as generated (in its own process, as the user would run it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=scaffold_dir,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


def test_genneg_run_end_to_end(scaffold_dir, tmp_path):
    run_dir = tmp_path / "run"
    sets = ["base.steps=60", "classifier.steps=40", "distil.steps=40", "genneg.samples_per_round=300",
            "genneg.distil_samples=300", "eval.num_samples=300", "eval.num_nll=50", "eval.nll_sigmas=2",
            "sampler.steps=4", "data.n_train=1000", "data.n_eval=300"]
    argv = ["run", NAME, "--domain-path", str(scaffold_dir / NAME), "--preset", "tiny", "--run-dir", str(run_dir),
            "--quiet", *[a for s in sets for a in ("--set", s)]]
    assert main(argv) == 0
    results = json.loads((run_dir / "results.json").read_text())
    text = json.dumps(results)
    for stage in ("base", "round1", "distilled", "penalty"):
        assert f'"{stage}"' in text, f"stage {stage} missing from results.json"
    assert (run_dir / "report.md").read_text().count("outside") >= 1  # the oracle's reason is reported
