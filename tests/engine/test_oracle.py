"""The Oracle contract: results, composition, registry, batched and parallel labelling, failures."""

import concurrent.futures as cf
import time

import numpy as np
import pytest

from genneg.oracle import FunctionOracle, OracleResult, all_of, get_oracle, register_oracle
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


def test_registry_decorator_and_unknown_names(monkeypatch):
    from genneg import oracle as oracle_mod

    monkeypatch.setattr(oracle_mod, "_REGISTRY", dict(oracle_mod._REGISTRY))

    @register_oracle("unit:far_right")
    def far_right():
        return FunctionOracle("far_right", lambda x, cond=None: np.asarray(x)[:, 0] > 10)

    o = get_oracle("far_right", domain="unit")
    assert o(np.array([[11.0, 0.0]])).valid.tolist() == [True]
    assert get_oracle("unit:far_right") is not o  # a new Oracle per lookup, from the factory
    with pytest.raises(KeyError, match="unknown oracle 'nope'"):
        get_oracle("nope")
    with pytest.raises(ValueError, match="already registered; pass overwrite=True"):
        register_oracle("unit:far_right", far_right)
    register_oracle("unit:far_right", lambda: FunctionOracle("far_left", lambda x, c: np.asarray(x)[:, 0] < -10),
                    overwrite=True)
    assert get_oracle("far_right", domain="unit").name == "far_left"
    with pytest.raises(TypeError, match="factory of no arguments"):
        register_oracle("unit:not_callable", "my_rules:factory")  # a path, not the factory
    register_oracle("unit:rule_not_factory", small)  # a rule function registered by mistake
    with pytest.raises(TypeError, match="must take no arguments"):
        get_oracle("unit:rule_not_factory")
    register_oracle("unit:returns_a_flag", lambda: True)
    with pytest.raises(TypeError, match="returned bool, not an Oracle"):
        get_oracle("unit:returns_a_flag")


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
        r = label(FunctionOracle("p", positive), np.random.default_rng(0).normal(size=(100, 2)), batch_size=16,
                  executor=pool)
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
    """A package's ``genneg.oracles`` entry points name factories; each is listed without importing the package,
    imported when its name is first looked up, and an entry that names no factory fails with a clear error."""
    import importlib
    import sys
    import textwrap

    from genneg import oracle as oracle_mod

    (tmp_path / "my_rules.py").write_text(textwrap.dedent("""
        import numpy as np
        from genneg.oracle import FunctionOracle

        def positive_x(samples, cond):
            return np.asarray(samples)[:, 0] > 0

        def factory():
            return FunctionOracle("from_factory", lambda s, c: np.asarray(s)[:, 0] < 0)

        def rules():
            return FunctionOracle("positive_x", positive_x)

        instance = FunctionOracle("instance_rule", lambda s, c: np.ones(len(s), bool))
    """))
    dist = tmp_path / "my_rules-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-rules\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[genneg.oracles]\nep_factory = my_rules:factory\nmine:positive_x = my_rules:rules\n"
        "ep_plain = my_rules:positive_x\nep_instance = my_rules:instance\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_rules", raising=False)
    importlib.invalidate_caches()
    monkeypatch.setattr(oracle_mod, "_REGISTRY", dict(oracle_mod._REGISTRY))
    x = np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert {"ep_factory", "mine:positive_x", "ep_plain", "ep_instance"} <= set(oracle_mod.available_oracles())
    assert "my_rules" not in sys.modules  # listed, not imported
    assert get_oracle("ep_factory")(x, None).valid.tolist() == [False, True]
    assert "my_rules" in sys.modules and "ep_factory" in oracle_mod._REGISTRY  # imported on lookup, then registered
    assert get_oracle("positive_x", domain="mine")(x, None).valid.tolist() == [True, False]
    assert get_oracle("mine:positive_x").reason_names == ("positive_x",)
    with pytest.raises(TypeError, match="'ep_plain': its factory must take no arguments"):
        get_oracle("ep_plain")  # a rule function, not a factory
    with pytest.raises(TypeError, match="'ep_instance': its factory must take no arguments"):
        get_oracle("ep_instance")  # an Oracle object, not a factory


def test_infraction_summary_and_its_one_line_format():
    from genneg.evaluate import format_infractions, infraction_summary

    valid = np.array([True, True, False, False, True])
    result = OracleResult(valid, {"a": ~valid, "b": np.array([False, False, True, False, False])},
                          defined=np.array([True, True, True, False, True]))
    s = infraction_summary(result)
    assert s["n"] == 4 and s["undefined"] == 1 and s["total"]["count"] == 1  # the undefined sample is excluded
    assert s["total"]["lo"] < 0.25 < s["total"]["hi"]
    line = format_infractions(result, digits=1)
    assert (line.startswith("invalid 25.0 % [") and "a 25.0 %" in line and "b 25.0 %" in line
            and line.endswith(", 1 undefined"))
