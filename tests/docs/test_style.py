"""Every tracked Python file keeps its lines within the ``[tool.ruff] line-length`` of pyproject.toml (120).

Checked here without ruff (not a dependency): the files are those ``git ls-files`` lists, or, where git is absent,
the Python files of the project's folders. No torch, no imports of the project: the test takes well under a second.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINE = 120
FOLDERS = ("genneg", "domains", "oracles", "tests", "benchmarks", "notebooks")


def python_files() -> list[Path]:
    """The tracked ``*.py`` files of the repository (``git ls-files``); without git, those under ``FOLDERS`` and at
    the top level."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", "*.py"], cwd=ROOT, capture_output=True, text=True,
                                check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        found = [*ROOT.glob("*.py")]
        for folder in FOLDERS:
            found += [p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]
        return sorted(found)
    return [ROOT / name for name in sorted(listed.split("\0")) if name and (ROOT / name).is_file()]


def long_lines(paths: list[Path], limit: int = MAX_LINE) -> list[str]:
    """``path:line (n characters)`` for every line of ``paths`` longer than ``limit`` characters."""
    out = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if len(line) > limit:
                out.append(f"{path.relative_to(ROOT)}:{number} ({len(line)} characters)")
    return out


def test_the_limit_is_the_one_pyproject_gives_ruff():
    # the [tool.ruff] table up to the next table (a regex, since tomllib needs Python 3.11 and 3.10 is supported)
    table = re.search(r"^\[tool\.ruff\]\n(.*?)(?=^\[|\Z)", (ROOT / "pyproject.toml").read_text(encoding="utf-8"),
                      re.S | re.M)
    assert table, "pyproject.toml has no [tool.ruff] table"
    assert re.search(rf"^line-length\s*=\s*{MAX_LINE}\s*$", table.group(1), re.M), table.group(1)


def test_long_lines_names_file_and_line():
    this = Path(__file__).resolve()
    assert long_lines([this], limit=10_000) == []
    over = long_lines([this], limit=20)
    assert over[0].startswith("tests/docs/test_style.py:1 (") and over[0].endswith(" characters)")


@pytest.mark.parametrize("git", [True, False], ids=["git", "no-git"])
def test_python_files_are_found(git, monkeypatch):
    if not git:
        def no_git(*args, **kwargs):
            raise FileNotFoundError("git")

        monkeypatch.setattr(subprocess, "run", no_git)
    files = python_files()
    assert ROOT / "genneg" / "genneg.py" in files and ROOT / "tests" / "docs" / "test_links.py" in files
    assert not any(".venv" in p.parts or "__pycache__" in p.parts for p in files)


def test_no_python_line_is_longer_than_the_limit():
    over = long_lines(python_files())
    assert not over, f"{len(over)} line(s) over {MAX_LINE} characters:\n" + "\n".join(over)
