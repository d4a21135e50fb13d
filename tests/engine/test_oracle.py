"""The Oracle contract: results, composition, registry, batched and parallel labelling, failures."""

import concurrent.futures as cf
import time

import numpy as np
import pytest

from genneg.oracle import FunctionOracle, OracleResult, all_of, get_oracle, oracle
from genneg.labelling import label


def positive(x, cond=None):
    return np.asarray(x)[:, 0] > 0


def small(x, cond=None):
    return np.abs(np.asarray(x)[:, 1]) < 1


def test_result_validation():
    with pytest.raises(ValueError, match="1-D"):
        OracleResult(np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="boolean"):
        OracleResult(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="entries for a batch"):
        OracleResult(np.ones(3, bool), {"a": np.ones(2, bool)})
    r = OracleResult(np.array([True, True]), {"a": np.array([False, True])}, defined=np.array([True, False]))
    assert r.valid.tolist() == [True, False] and r.num_undefined == 1  # undefined is never valid


def test_all_of_combines_verdicts_and_reasons():
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 5.0]])
    r = all_of(FunctionOracle("positive", positive), FunctionOracle("small", small))(x)
    assert r.valid.tolist() == [True, False, False]
    assert r.reasons["positive"].tolist() == [False, True, False]
    assert r.reasons["small"].tolist() == [False, False, True]


def test_registry_decorator_and_unknown_names():
    @oracle("far_right", domain="unit")
    def far_right(x, cond=None):
        return np.asarray(x)[:, 0] > 10

    o = get_oracle("far_right", domain="unit")
    assert o(np.array([[11.0, 0.0]])).valid.tolist() == [True]
    with pytest.raises(KeyError, match="unknown oracle 'nope'"):
        get_oracle("nope")


def flaky(x, cond=None):
    x = np.asarray(x)
    if (x[:, 0] == 13).any():
        raise RuntimeError("unlucky sample")
    return x[:, 0] > 0


def test_label_records_failing_samples_as_undefined():
    x = np.array([[1.0, 0], [13.0, 0], [-1.0, 0], [2.0, 0], [13.0, 0]])
    r = label(FunctionOracle("flaky", flaky), x, batch_size=2)
    assert r.defined.tolist() == [True, False, True, True, False]
    assert r.valid.tolist() == [True, False, False, True, False]
    assert r.num_undefined == 2 and "unlucky sample" in r.errors[0]


def test_label_rejects_wrong_shapes_and_empty_batches():
    wrong = FunctionOracle("wrong", lambda x, c: np.ones(len(x) + 1, bool))
    with pytest.raises(ValueError, match="wrong"):
        label(wrong, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="empty"):
        label(FunctionOracle("p", positive), np.zeros((0, 2)))


def slow_on_negative(x, cond=None):
    x = np.asarray(x)
    if (x[:, 0] < 0).any():
        time.sleep(2.0)
    return x[:, 0] > 0


def test_label_on_an_executor_with_a_timeout():
    x = np.array([[1.0, 0], [2.0, 0], [-1.0, 0], [3.0, 0]])
    with cf.ThreadPoolExecutor(4) as pool:  # the slow batch is re-run per sample: only its slow sample is lost
        r = label(FunctionOracle("slow", slow_on_negative), x, batch_size=2, executor=pool, timeout=0.25)
    assert r.defined.tolist() == [True, True, False, True]
    assert "timed out" in r.errors[0]
    with cf.ProcessPoolExecutor(2) as pool:
        r = label(FunctionOracle("p", positive), np.random.default_rng(0).normal(size=(100, 2)), batch_size=16, executor=pool)
    assert r.defined.all() and r.valid.sum() > 20


def picky(x, cond=None):
    x = np.asarray(x)
    if (x[:, 0] < 0).any():
        raise ValueError("x must be positive for the simulator")  # a per-sample failure, whatever its wording
    return x[:, 0] > 1


def test_sample_failures_are_told_apart_from_malformed_output_by_type():
    r = label(FunctionOracle("picky", picky), np.array([[2.0, 0], [-1.0, 0], [0.5, 0]]))
    assert r.defined.tolist() == [True, False, True] and r.valid.tolist() == [True, False, False]
    from genneg.oracle import OracleOutputError

    with pytest.raises(OracleOutputError):
        label(FunctionOracle("wrong", lambda x, c: np.ones((len(x), 2), bool)), np.zeros((3, 2)))


def test_oracles_from_the_entry_point_group(tmp_path, monkeypatch):
    """A package's ``genneg.oracles`` entry points may name a plain function, an @oracle-decorated one, a factory
    or an Oracle object; each is found by name without the user importing the package."""
    import importlib
    import textwrap

    from genneg import oracle as oracle_mod

    (tmp_path / "my_rules.py").write_text(textwrap.dedent("""
        import numpy as np
        from genneg.oracle import FunctionOracle, oracle

        def positive_x(samples, cond):
            return np.asarray(samples)[:, 0] > 0

        @oracle("decorated_rule")
        def decorated(samples, cond):
            return np.asarray(samples)[:, 1] > 0

        def factory():
            return FunctionOracle("from_factory", lambda s, c: np.asarray(s)[:, 0] < 0)

        instance = FunctionOracle("instance_rule", lambda s, c: np.ones(len(s), bool))
    """))
    dist = tmp_path / "my_rules-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-rules\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[genneg.oracles]\nep_plain = my_rules:positive_x\nep_decorated = my_rules:decorated\n"
        "ep_factory = my_rules:factory\nep_instance = my_rules:instance\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(oracle_mod, "_REGISTRY", dict(oracle_mod._REGISTRY))
    x = np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert {"ep_plain", "ep_decorated", "ep_factory", "ep_instance"} <= set(oracle_mod.available_oracles())
    assert get_oracle("ep_plain")(x, None).valid.tolist() == [True, False]
    assert get_oracle("ep_decorated")(x, None).valid.tolist() == [False, True]
    assert get_oracle("ep_factory")(x, None).valid.tolist() == [False, True]
    assert get_oracle("ep_instance")(x, None).valid.tolist() == [True, True]
    assert get_oracle("ep_plain").reason_names == ("ep_plain",)


def test_infraction_summary_and_its_one_line_format():
    from genneg.evaluate import format_infractions, infraction_summary

    valid = np.array([True, True, False, False, True])
    result = OracleResult(valid, {"a": ~valid, "b": np.array([False, False, True, False, False])},
                          defined=np.array([True, True, True, False, True]))
    s = infraction_summary(result)
    assert s["n"] == 4 and s["undefined"] == 1 and s["total"]["count"] == 1  # the undefined sample is excluded
    assert s["total"]["lo"] < 0.25 < s["total"]["hi"]
    line = format_infractions(result, digits=1)
    assert line.startswith("invalid 25.0 % [") and "a 25.0 %" in line and "b 25.0 %" in line and line.endswith(", 1 undefined")
