"""Contract tests that every domain and every oracle passes, as pytest base classes to subclass.

One test class per protocol, with no special cases per domain (diffusers' ``SchedulerCommonTest`` does the same
for schedulers). Use them on your own domain or oracle::

    from genneg.contract import DomainContract, OracleContract

    class TestMyDomain(DomainContract):
        @pytest.fixture
        def domain(self):
            return make_domain(n_train=2000)

    class TestMyOracle(OracleContract):
        @pytest.fixture
        def oracle(self):
            return MyOracle()

        @pytest.fixture
        def valid_case(self):      # (samples, cond) that must pass, hand-built in physical units
            return np.array([[0.1, 0.2]]), None

        @pytest.fixture
        def invalid_case(self):    # (samples, cond) that must fail, each with a reason flagged
            return np.array([[5.0, 5.0]]), None

Class attributes tune the sizes (``batch``, ``oracle_rows``) and the preset whose networks are built (``preset``;
default: "tiny" when the domain has one, else its first preset). Cheap domains need nothing else; a domain whose
data are slow to build should return a session- or module-scoped object from its ``domain`` fixture.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from . import rng
from .batch import batch_size_of, concat, take
from .config import RunConfig
from .domain import Domain, missing_members
from .oracle import Oracle, OracleResult

__all__ = ["DomainContract", "OracleContract", "assert_batches_equal"]

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------------------ helpers


def _leaves(obj, path: str = "cond"):
    """Yields ``(path, array)`` for every array or tensor in a nested structure."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}[{k!r}]")
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{i}]")


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def assert_batches_equal(a, b, what: str = "batch", rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Asserts two nested batches (arrays, tensors, dicts, tuples, None, scalars) hold the same values."""
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys(), f"{what}: keys differ"
        for k in a:
            assert_batches_equal(a[k], b[k], f"{what}[{k!r}]", rtol, atol)
    elif isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), f"{what}: lengths differ"
        for i, (u, v) in enumerate(zip(a, b)):
            assert_batches_equal(u, v, f"{what}[{i}]", rtol, atol)
    elif isinstance(a, (np.ndarray, torch.Tensor)):
        u, v = _numpy(a), _numpy(b)
        assert u.shape == v.shape, f"{what}: shapes {u.shape} and {v.shape} differ"
        if u.dtype.kind in "fc":
            np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=what)
        else:
            np.testing.assert_array_equal(u, v, err_msg=what)
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def _check_result(result, n: int, what: str) -> None:
    """An OracleResult with bool flags of length n everywhere, and no sample both valid and flagged."""
    assert isinstance(result, OracleResult), f"{what} returned {type(result).__name__}, not an OracleResult"
    assert len(result) == n, f"{what} returned {len(result)} verdicts for {n} samples"
    for name, flags in [("valid", result.valid), ("defined", result.defined), *result.reasons.items()]:
        assert flags.dtype == bool and flags.shape == (n,), f"{what}: {name} is {flags.dtype} {flags.shape}"
    for name, flags in result.reasons.items():
        assert not (result.valid & flags).any(), f"{what}: samples are valid yet flagged {name!r}"


# ------------------------------------------------------------------------------------------------------ domains


class DomainContract:
    """The Domain protocol as tests. Subclasses provide a ``domain`` fixture."""

    batch = 4  # rows pushed through the networks and the malformed-input checks
    oracle_rows = 256  # data rows decoded and judged by the domain's own oracle
    min_data_valid = 0.99  # share of the domain's own data its oracle must pass
    preset: str | None = None  # whose net / classifier_net configs build the networks

    @pytest.fixture
    def domain(self):
        raise NotImplementedError("subclass DomainContract and define a `domain` fixture returning your domain")

    # ---------------------------------------------------------------------------------------------- helpers
    def run_config(self, domain) -> RunConfig:
        presets = domain.presets()
        name = self.preset or ("tiny" if "tiny" in presets else next(iter(presets)))
        return presets[name]

    def data_rows(self, domain, split: str = "test", n: int | None = None):
        """The first ``n`` rows (default: ``oracle_rows``) of a split, ``(x0, cond)``."""
        x0, cond = domain.dataset(split)
        rows = slice(0, min(n or self.oracle_rows, x0.shape[0]))
        return x0[rows], take(cond, rows)

    def noisy_inputs(self, domain, cond):
        """Network inputs ``(x_in, c_noise)`` for ``batch`` conditions, at σ spread over the schedule."""
        shape = domain.sample_shape(cond, self.batch)
        g = torch.Generator().manual_seed(0)
        sigma = torch.logspace(math.log10(0.01), math.log10(40.0), self.batch)
        x = rng.randn(shape, g) * domain.sigma_data
        return x, sigma.log() / 4  # EDM's c_noise

    # ---------------------------------------------------------------------------------------------- protocol
    def test_protocol_members(self, domain):
        assert missing_members(domain) == [], f"missing Domain members: {missing_members(domain)}"
        assert isinstance(domain, Domain)
        assert isinstance(domain.name, str) and domain.name, "domain.name must be a non-empty string"
        sd = domain.sigma_data
        assert isinstance(sd, float) and math.isfinite(sd) and sd > 0, f"sigma_data must be a float > 0, got {sd!r}"

    def test_presets_are_run_configs_of_this_domain(self, domain):
        presets = domain.presets()
        assert isinstance(presets, dict) and presets, "presets() must return a non-empty {name: RunConfig}"
        for name, cfg in presets.items():
            assert isinstance(cfg, RunConfig), f"preset {name!r} is a {type(cfg).__name__}, not a RunConfig"
            assert cfg.domain == domain.name, f"preset {name!r} names domain {cfg.domain!r}, not {domain.name!r}"
            assert cfg.preset == name, f"preset {name!r} says its name is {cfg.preset!r}"

    # ---------------------------------------------------------------------------------------------- data
    @pytest.mark.parametrize("split", SPLITS)
    def test_dataset_is_finite_batch_first(self, domain, split):
        x0, cond = domain.dataset(split)
        assert isinstance(x0, torch.Tensor) and x0.is_floating_point(), f"{split}: x0 must be a float tensor"
        assert x0.ndim >= 2 and x0.shape[0] > 0, f"{split}: x0 must be [N, ...] with N > 0, got {tuple(x0.shape)}"
        assert torch.isfinite(x0).all(), f"{split}: x0 has NaN or inf"
        n = x0.shape[0]
        for path, leaf in _leaves(cond):
            assert leaf.ndim == 0 or leaf.shape[0] == n, f"{split}: {path} has {leaf.shape[0]} rows for {n} samples"
        k = min(3, n)
        head = take(cond, slice(0, k))
        assert tuple(domain.sample_shape(head, k)) == (k, *x0.shape[1:]), f"{split}: sample_shape disagrees with x0"
        self._check_defined(cond, x0, split)

    @staticmethod
    def _check_defined(cond, x, what: str) -> None:
        if not isinstance(cond, dict) or "defined" not in cond:
            return
        defined = _numpy(cond["defined"])
        assert defined.dtype == bool, f"{what}: cond['defined'] must be boolean, got {defined.dtype}"
        assert defined.shape == tuple(x.shape[: defined.ndim]), (
            f"{what}: cond['defined'] {defined.shape} does not match the leading axes of x {tuple(x.shape)}")

    def test_dataset_is_deterministic(self, domain):
        for split in SPLITS:
            (a, ca), (b, cb) = domain.dataset(split), domain.dataset(split)
            assert torch.equal(a, b), f"dataset({split!r}) differs between two calls"
            assert_batches_equal(ca, cb, f"dataset({split!r}) cond")

    def test_splits_differ(self, domain):
        train, test = domain.dataset("train")[0], domain.dataset("test")[0]
        k = min(len(train), len(test), 16)
        assert not torch.equal(train[:k], test[:k]), "the train and test splits start with the same samples"

    def test_conditions_deterministic_by_seed(self, domain):
        n = 5
        c1, c2 = domain.conditions(n, "test", 3), domain.conditions(n, "test", 3)
        assert_batches_equal(c1, c2, "conditions(5, 'test', seed=3)")
        if c1 is not None:
            assert batch_size_of(c1) == n, f"conditions(5, ...) has batch size {batch_size_of(c1)}"
            for path, leaf in _leaves(c1):
                assert leaf.ndim == 0 or leaf.shape[0] == n, f"conditions: {path} has {leaf.shape[0]} rows, not {n}"
        shape = domain.sample_shape(c1, n)
        assert shape[0] == n, f"sample_shape(cond, {n}) = {shape}"
        self._check_defined(c1, torch.empty(shape), "conditions")

    # ---------------------------------------------------------------------------------------------- networks
    def test_denoiser_net_keeps_the_shape_of_x(self, domain):
        cfg = self.run_config(domain)
        cond = domain.conditions(self.batch, "test", 0)
        x, c_noise = self.noisy_inputs(domain, cond)
        with torch.no_grad():
            out = domain.make_denoiser_net(dict(cfg.net))(x, c_noise, cond)
        assert out.shape == x.shape, f"denoiser net returned {tuple(out.shape)} for x {tuple(x.shape)}"
        assert torch.isfinite(out).all(), "denoiser net returned NaN or inf"

    def test_classifier_net_returns_one_logit_per_sample(self, domain):
        cfg = self.run_config(domain)
        cond = domain.conditions(self.batch, "test", 0)
        x, c_noise = self.noisy_inputs(domain, cond)
        with torch.no_grad():
            out = domain.make_classifier_net(dict(cfg.classifier_net))(x, c_noise, cond)
        assert out.shape == (self.batch,), f"classifier net returned {tuple(out.shape)}, want ({self.batch},)"
        assert torch.isfinite(out).all(), "classifier net returned NaN or inf"

    # ---------------------------------------------------------------------------------------------- decode, oracle
    def test_oracle_passes_the_domains_own_data(self, domain):
        x0, cond = self.data_rows(domain)
        oracle = domain.oracle()
        assert isinstance(oracle, Oracle) and isinstance(oracle.name, str)
        result = oracle(domain.decode(x0, cond), cond)
        _check_result(result, x0.shape[0], f"oracle {oracle.name!r} on data")
        rate = result.valid.mean()
        assert rate >= self.min_data_valid, f"the oracle passes only {100 * rate:.1f} % of the domain's own data"

    def test_oracle_judges_noise(self, domain):
        """Untrained models produce samples far from the data; the oracle must still return a verdict each."""
        cond = domain.conditions(self.batch, "test", 1)
        x0 = rng.randn(domain.sample_shape(cond, self.batch), torch.Generator().manual_seed(1))
        result = domain.oracle()(domain.decode(x0 * 3 * domain.sigma_data, cond), cond)
        _check_result(result, self.batch, "oracle on noise")

    def test_decode_is_batch_first(self, domain):
        x0, cond = self.data_rows(domain, n=6)
        idx = np.array([4, 0, 2])[np.array([4, 0, 2]) < x0.shape[0]]
        whole = domain.decode(x0, cond)
        assert batch_size_of(whole) == x0.shape[0], "decode changed the batch size"
        part = domain.decode(x0[torch.as_tensor(idx)], take(cond, idx))
        assert_batches_equal(part, take(whole, idx), "decode of a sub-batch")

    def test_decode_rejects_nan(self, domain):
        x0, cond = self.data_rows(domain, n=self.batch)
        bad = x0.clone()
        bad.view(bad.shape[0], -1)[0, 0] = float("nan")
        with pytest.raises((ValueError, TypeError)):
            domain.decode(bad, cond)

    def test_decode_rejects_wrong_shape(self, domain):
        x0, cond = self.data_rows(domain, n=self.batch)
        for bad in (x0[..., :-1], x0[0], torch.cat([x0, x0[..., :1]], -1)):
            with pytest.raises((ValueError, TypeError)):
                domain.decode(bad, cond)

    # ---------------------------------------------------------------------------------------------- pictures
    @pytest.mark.parametrize("with_result", [True, False])
    def test_plot_draws_on_an_axes(self, domain, with_result):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x0, cond = self.data_rows(domain, n=16)
        samples = domain.decode(x0, cond)
        result = domain.oracle()(samples, cond) if with_result else None
        fig = plt.figure()
        ax = fig.add_subplot()
        try:
            domain.plot(samples, cond, result, ax, title="contract")
            fig.canvas.draw()
            drew = any(a.has_data() for a in fig.axes)
        finally:
            plt.close(fig)
        assert drew, "plot drew nothing onto the Axes"


# ------------------------------------------------------------------------------------------------------ oracles


class OracleContract:
    """The Oracle protocol as tests. Subclasses provide fixtures ``oracle``, ``valid_case`` and ``invalid_case``
    (each ``(samples, cond)`` in physical units, hand-built), and optionally ``invalid_reasons``: for each invalid
    sample, the reason name it must be flagged with."""

    @pytest.fixture
    def invalid_reasons(self) -> list[str] | None:
        return None

    def test_is_a_named_oracle(self, oracle):
        assert isinstance(oracle, Oracle)
        assert isinstance(oracle.name, str) and oracle.name, "an oracle needs a non-empty name"

    def test_verdict_shape_and_dtype(self, oracle, valid_case, invalid_case):
        for what, (samples, cond) in (("valid", valid_case), ("invalid", invalid_case)):
            result = oracle(samples, cond)
            _check_result(result, batch_size_of(samples), f"{oracle.name!r} on the {what} case")
            assert result.defined.all(), f"{oracle.name!r} left hand-built {what} samples undefined"

    def test_valid_samples_pass(self, oracle, valid_case):
        result = oracle(*valid_case)
        assert result.valid.all(), f"{oracle.name!r} rejects valid samples {np.flatnonzero(~result.valid)}"
        flagged = {k: np.flatnonzero(v) for k, v in result.reasons.items() if v.any()}
        assert not flagged, f"{oracle.name!r} flags valid samples: {flagged}"

    def test_invalid_samples_fail_with_a_reason(self, oracle, invalid_case, invalid_reasons):
        result = oracle(*invalid_case)
        assert not result.valid.any(), f"{oracle.name!r} passes invalid samples {np.flatnonzero(result.valid)}"
        assert result.reasons, f"{oracle.name!r} names no reasons"
        any_reason = np.any([v for v in result.reasons.values()], axis=0)
        assert any_reason.all(), f"invalid samples {np.flatnonzero(~any_reason)} have no reason flagged"
        for i, name in enumerate(invalid_reasons or []):
            assert name in result.reasons, f"{oracle.name!r} has no reason {name!r}; it has {list(result.reasons)}"
            assert result.reasons[name][i], f"invalid sample {i} is not flagged {name!r}"

    def test_reason_names_do_not_depend_on_the_batch(self, oracle, valid_case, invalid_case):
        assert list(oracle(*valid_case).reasons) == list(oracle(*invalid_case).reasons)

    def test_batch_order_invariance(self, oracle, valid_case, invalid_case):
        samples, cond = self._mixed(valid_case, invalid_case)
        n = batch_size_of(samples)
        perm = np.random.default_rng(0).permutation(n)
        whole, shuffled = oracle(samples, cond), oracle(take(samples, perm), take(cond, perm))
        np.testing.assert_array_equal(shuffled.valid, whole.valid[perm])
        for k, v in whole.reasons.items():
            np.testing.assert_array_equal(shuffled.reasons[k], v[perm], err_msg=f"reason {k!r}")
        for i in range(min(n, 8)):  # a sample's verdict does not depend on its batch-mates
            single = oracle(take(samples, [i]), take(cond, [i]))
            assert single.valid[0] == whole.valid[i], f"sample {i} judged differently alone and in a batch"

    def test_inputs_are_not_modified(self, oracle, valid_case, invalid_case):
        samples, cond = self._mixed(valid_case, invalid_case)
        before = copy.deepcopy((samples, cond))
        oracle(samples, cond)
        assert_batches_equal((samples, cond), before, "oracle inputs after the call", rtol=0, atol=0)

    def test_empty_batch_is_a_clear_error(self, oracle, valid_case):
        samples, cond = valid_case
        with pytest.raises((ValueError, TypeError)):
            oracle(take(samples, slice(0, 0)), take(cond, slice(0, 0)))

    @staticmethod
    def _mixed(valid_case, invalid_case) -> tuple[Any, Any]:
        (vs, vc), (is_, ic) = valid_case, invalid_case
        return concat([vs, is_]), concat([vc, ic])
