"""Expensive or external oracles: per-sample timeouts and failures on an executor become undefined, counted samples.

The "simulator" below hangs on samples whose first coordinate is 7 and crashes on 13; every other sample gets a
verdict (valid iff x > 0). Thread-pool hangs wait on an event the test sets once labelling has returned, so no test
waits for a hanging call to end.
"""

import concurrent.futures as cf
import os
import threading
import time

import numpy as np
import pytest

from genneg.oracle import FunctionOracle, OracleOutputError
from genneg.labelling import label, on_executor

HANG, CRASH = 7.0, 13.0
release = threading.Event()


def _simulate(x, hang):
    x = np.asarray(x)
    if (x[:, 0] == CRASH).any():
        raise RuntimeError("simulator crashed")
    if (x[:, 0] == HANG).any():
        hang()
    return x[:, 0] > 0


def simulator(x, cond=None):
    return _simulate(x, lambda: release.wait(30.0))


def sleepy_simulator(x, cond=None):  # for process pools, where the event cannot reach the worker
    return _simulate(x, lambda: time.sleep(2.0))


def dies_on_crash(x, cond=None):
    if (np.asarray(x)[:, 0] == CRASH).any():
        os._exit(3)  # the worker process dies: the pool breaks
    return np.asarray(x)[:, 0] > 0


def wrong_length(x, cond=None):
    return np.ones(len(x) + 1, bool)


def scene(values):
    """Samples [n, 2] whose first coordinate is ``values``; the expected defined / valid flags."""
    x = np.stack([np.asarray(values, float), np.zeros(len(values))], 1)
    defined = ~np.isin(x[:, 0], (HANG, CRASH))
    return x, defined, defined & (x[:, 0] > 0)


@pytest.fixture
def threads():
    release.clear()
    pool = cf.ThreadPoolExecutor(8)
    yield pool
    release.set()
    pool.shutdown(wait=True)


VALUES = [1, -2, 3, HANG, 5, CRASH, CRASH, -8, 9, 10, 11, 12, -1, 2, 4, 6, 8, HANG, -3, 2, CRASH, 1, 1, -5]


def test_hanging_and_crashing_samples_of_a_batch_are_the_only_undefined_ones(threads):
    x, defined, valid = scene(VALUES)
    done = []
    r = label(FunctionOracle("sim", simulator), x, batch_size=4, executor=threads, timeout=0.3, callback=done.append)
    release.set()
    assert r.defined.tolist() == defined.tolist()
    assert r.valid.tolist() == valid.tolist()
    assert r.num_undefined == 5 and sum(done) == len(x)
    assert r.reasons["sim"].tolist() == (defined & ~valid).tolist()  # undefined samples commit no infraction
    assert any("timed out" in e for e in r.errors) and any("simulator crashed" in e for e in r.errors)


def test_per_sample_futures_give_the_same_verdicts(threads):
    x, defined, valid = scene(VALUES)
    r = label(FunctionOracle("sim", simulator), x, executor=threads, timeout=0.3, per_sample=True)
    release.set()
    assert r.defined.tolist() == defined.tolist() and r.valid.tolist() == valid.tolist()


def test_calls_stuck_behind_hanging_calls_are_given_up_not_waited_for_forever():
    release.clear()
    pool = cf.ThreadPoolExecutor(1)  # the one worker hangs on the first sample: the others can never start
    try:
        x, _, _ = scene([HANG, 1, 2, -3])
        r = label(FunctionOracle("sim", simulator), x, executor=pool, timeout=0.05, per_sample=True)
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert r.num_undefined == 4 and not r.valid.any()
    assert any("timed out" in e for e in r.errors) and any("not run" in e for e in r.errors)


def test_process_pool_oracle_that_sleeps_and_raises():
    x, defined, valid = scene([1, 2, HANG, -1, CRASH, 3, 4, -5, 6, 7.5, 8, 9])
    with cf.ProcessPoolExecutor(3) as pool:
        r = label(FunctionOracle("sim", sleepy_simulator), x, batch_size=4, executor=pool, timeout=0.25)
    assert r.defined.tolist() == defined.tolist() and r.valid.tolist() == valid.tolist()
    assert r.num_undefined == 2


def test_a_dead_worker_process_leaves_samples_undefined_instead_of_crashing():
    x, _, _ = scene([1, 2, CRASH, 4])
    with cf.ProcessPoolExecutor(1) as pool:
        r = label(FunctionOracle("fragile", dies_on_crash), x, batch_size=2, executor=pool)
    assert r.num_undefined >= 2 and not r.defined[2]  # the pool breaks: what could not run is undefined
    assert r.valid[r.defined].tolist() == [True] * int(r.defined.sum())
    assert any("BrokenProcessPool" in e for e in r.errors)


def test_malformed_verdicts_still_raise_on_an_executor(threads):
    with pytest.raises(OracleOutputError):
        label(FunctionOracle("wrong", wrong_length), np.zeros((6, 2)), batch_size=2, executor=threads, timeout=1.0)


def test_timeout_needs_an_executor_and_a_positive_value(threads):
    x = np.zeros((2, 2))
    with pytest.raises(ValueError, match="need an executor"):
        label(FunctionOracle("sim", simulator), x, timeout=1.0)
    with pytest.raises(ValueError, match="> 0"):
        label(FunctionOracle("sim", simulator), x, executor=threads, timeout=0.0)


def test_undefined_samples_are_counted_in_the_evaluation_and_the_report(threads):
    """An executor-backed oracle in a domain: evaluate_denoiser counts undefined samples; the report says so."""
    from dataclasses import replace

    from genneg.config import EvalConfig
    from genneg.evaluate import EvalData, evaluate_denoiser
    from genneg.report import aggregate, markdown
    from genneg.testing import GaussianMixtureDomain

    def gmm_simulator(points, cond=None):
        p = np.asarray(points)
        if (p[:, 1] > 0.9).any():
            raise RuntimeError("simulator crashed")
        if (p[:, 0] < -1.6).any():
            release.wait(30.0)
        return p @ np.array([1.0, 0.5]) >= -0.6

    domain = GaussianMixtureDomain(oracle_fn=gmm_simulator)
    cfg = domain.presets()["default"]
    cfg = replace(cfg, eval=EvalConfig(num_samples=300, num_nll=10, nll_sigmas=2))
    oracle = on_executor(domain.oracle(), threads, timeout=0.2, batch_size=8)  # 3 hang: 6 threads held
    metrics, samples, result = evaluate_denoiser(domain.gmm.denoiser, domain, cfg, EvalData(domain, cfg), oracle,
                                                 with_nll=False)
    release.set()
    crash, hang = samples[:, 1] > 0.9, (samples[:, 0] < -1.6) & ~(samples[:, 1] > 0.9)
    assert crash.sum() > 0 and hang.sum() > 0  # the drawn samples exercise both failures
    assert result.defined.tolist() == (~crash & ~hang).tolist()
    inf = metrics["infraction"]
    assert inf["undefined"] == crash.sum() + hang.sum() and inf["n"] == 300 - inf["undefined"]
    invalid = (samples @ np.array([1.0, 0.5]) < -0.6) & result.defined
    assert inf["total"]["count"] == invalid.sum()  # rates are over defined samples only
    agg = aggregate(cfg, {0: {"base": {"metrics": metrics}}})
    assert agg["rows"]["base"]["undefined"] == inf["undefined"]
    assert f"{inf['undefined']} samples had no oracle verdict (excluded)" in markdown("gmm", cfg, agg, 1.0, 1)
