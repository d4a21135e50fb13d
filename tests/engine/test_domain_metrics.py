"""A domain's own measures (``Domain.metrics``) travel from evaluation into the report, with their intervals."""

import math

import numpy as np
import pytest

from genneg.config import GenNegConfig, RunConfig
from genneg.evaluate import domain_metrics
from genneg.oracle import OracleResult
from genneg.report import aggregate, markdown


class _Domain:
    def __init__(self, out):
        self.out = out
        self.calls = []

    def metrics(self, samples, cond, result, split):
        self.calls.append(split)
        return self.out


def _result(n=4):
    return OracleResult(valid=np.ones(n, bool), reasons={"r": np.zeros(n, bool)})


def test_values_and_intervals_are_normalised():
    d = _Domain({"gap_m": 1.5, "offroad_per_vehicle": {"value": 0.1, "lo": 0.05, "hi": 0.2}, "count": np.int64(3)})
    out = domain_metrics(d, None, None, _result(), "val")
    assert d.calls == ["val"]
    assert out["offroad_per_vehicle"] == {"value": 0.1, "lo": 0.05, "hi": 0.2}
    assert out["gap_m"]["value"] == 1.5 and math.isnan(out["gap_m"]["lo"]) and math.isnan(out["gap_m"]["hi"])
    assert out["count"]["value"] == 3.0


@pytest.mark.parametrize("bad, err, match", [
    ({1: 0.5}, TypeError, "non-string name"),
    ({"x": "high"}, TypeError, r"metrics\['x'\] is not a number"),
    ({"x": math.nan}, ValueError, r"metrics\['x'\] is not finite"),
    ({"x": {"lo": 0.0}}, ValueError, "not finite"),
])
def test_bad_measures_are_named(bad, err, match):
    with pytest.raises(err, match=match):
        domain_metrics(_Domain(bad), None, None, _result(), "test")


def _record(rate, dom):
    reasons = {"r": {"rate": rate, "lo": 0.0, "hi": 1.0, "count": 1}}
    return {"metrics": {"infraction": {"n": 100, "undefined": 0, "total": reasons["r"], "reasons": reasons},
                        "seconds_per_1000": 1.0, "valid_per_second": 10.0, "domain": dom}}


def test_the_report_has_a_row_per_measure_and_a_column_per_stage():
    cfg = RunConfig(domain="toy", genneg=GenNegConfig(rounds=1, baselines=()))
    m = lambda v, lo=math.nan, hi=math.nan: {"value": v, "lo": lo, "hi": hi}  # noqa: E731
    one = {0: {"base": _record(0.3, {"w1_length": m(0.20, 0.1, 0.3)}), "round1": _record(0.1, {"w1_length": m(0.25)}),
               "distilled": _record(0.1, {"w1_length": m(0.22, 0.15, 0.31)})}}
    agg = aggregate(cfg, one)
    assert agg["rows"]["base"]["domain"]["w1_length"]["mean"] == pytest.approx(0.20)
    text = markdown("toy", cfg, agg, 0.0, 1)
    header = next(line for line in text.splitlines() if line.startswith("| measure |"))
    assert header.split(" | ")[1:] == ["base model", "Gen-neG round 1 (stacked guidance)", "Gen-neG distilled |"]
    row = next(line for line in text.splitlines() if line.startswith("| w1_length |"))
    assert row == "| w1_length | 0.2 [0.1, 0.3] | 0.25 | 0.22 [0.15, 0.31] |"

    two = {s: {st: _record(0.2, {"w1_length": m(v + s)})
               for st, v in (("base", 0.2), ("round1", 0.3), ("distilled", 0.4))}
           for s in (0, 1)}
    row = next(line for line in markdown("toy", cfg, aggregate(cfg, two), 0.0, 2).splitlines() if "w1_length" in line)
    assert row.startswith("| w1_length | 0.7 ± ")  # mean of 0.2 and 1.2 over the two seeds, with its t-interval


def test_no_measures_no_table():
    cfg = RunConfig(domain="toy", genneg=GenNegConfig(rounds=1, baselines=()))
    rec = _record(0.2, {})
    del rec["metrics"]["domain"]
    assert "| measure |" not in markdown("toy", cfg, aggregate(cfg, {0: {"base": rec}}), 0.0, 1)
