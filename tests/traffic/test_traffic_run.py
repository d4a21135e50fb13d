"""End to end: `genneg run traffic --preset tiny` through the CLI entry point (about a minute on 2 cores)."""

import json

import numpy as np

from genneg.cli import main


def test_genneg_run_tiny_end_to_end(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    code = main(["run", "traffic", "--preset", "tiny", "--quiet", "--run-dir", str(run_dir),
                 "--set", f'data.data_dir="{tiny_data_dir}"'])
    assert code == 0
    results = json.loads((run_dir / "results.json").read_text())
    rows = results["aggregate"]["rows"]
    expected = {"base", "round1", "round2", "distilled", "rejection", "no_is", "time_independent", "discriminator",
                "penalty"}
    assert set(rows) == expected
    for stage, row in rows.items():
        assert 0.0 <= row["infraction"]["mean"] <= 1.0 and set(row["reasons"]) == {"collision", "offroad"}
        if stage != "rejection":
            assert np.isfinite(row["nll"]["mean"])
    assert rows["rejection"]["infraction"]["mean"] == 0.0
    report = (run_dir / "report.md").read_text()
    assert report.count("\n| ") >= len(expected)
    # the domain's own measures (TrafficDomain.metrics) of every sampled stage (rejection's are not measured on its
    # accepted samples), a row each in the report
    assert all({"invalid_per_vehicle", "collision_per_scene", "w1_length_m", "w1_gap_m"} <= set(row["domain"])
               for stage, row in rows.items() if stage != "rejection")
    assert "| w1_lane_heading_rad |" in report and "| offroad_per_vehicle |" in report
    assert (run_dir / "figures" / "samples.png").stat().st_size > 10_000
    z = np.load(run_dir / "seed0" / "samples_base.npz")
    assert z["s_boxes"].shape[1:] == (4, 5) and z["s_scene"].dtype == np.int64
