"""Notebook run times, printed at the end of the test session (the issue asks what the notebooks cost in CI).

Each notebook test records its time as a report property, which pytest-xdist hands from the worker that ran it to the
controller that prints the summary."""


def pytest_terminal_summary(terminalreporter):
    seconds = [value for report in terminalreporter.stats.get("passed", [])
               for key, value in getattr(report, "user_properties", []) if key == "notebook_seconds"]
    if seconds:
        terminalreporter.section("notebook run times (GENNEG_NOTEBOOK_FAST=1)")
        for name, value in sorted(seconds):
            terminalreporter.write_line(f"{name}: {value:.1f} s")
