"""Shared by the bad-input tables of the engine (``tests/reliability/test_bad_inputs.py``), the traffic domain
(``tests/traffic/test_traffic_bad_inputs.py``) and the motion domain (``tests/motion/test_motion_bad_inputs.py``).

Each table is a list of :class:`Bad` rows, declared in a subclass of :class:`BadInputTable`, which runs every row
(:func:`check_bad_input` checks its error type and that the message names the problem and, for a file, the file)
and checks that the row names are unique. Bad files are written once per table into a temporary folder by
:class:`BadFiles`: the generic ones here, each domain's own through the writers its table names.

Importable from every test folder: ``tests/conftest.py`` puts ``tests/`` on ``sys.path`` (pytest's default
``prepend`` import mode), as it does for every conftest's folder.
"""

from __future__ import annotations

import contextlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class Bad:
    """One bad input: ``call(files)`` must raise ``error`` with a message matching ``match`` (a regex)."""

    name: str
    call: Callable[[Any], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str


def check_bad_input(case: Bad, files: BadFiles) -> None:
    """``case.call(files)`` raises ``case.error`` with a non-empty message that matches ``case.match``."""
    with pytest.raises(case.error) as info:
        case.call(files)
    message = str(info.value.args[0]) if isinstance(info.value, KeyError) and info.value.args else str(info.value)
    assert message.strip(), f"{case.name}: the error has no message"
    assert re.search(case.match, message, flags=re.S), f"{case.name}: message {message!r} does not name the problem"


def check_unique_names(cases: list[Bad]) -> None:
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), sorted({n for n in names if names.count(n) > 1})


def file_cases(label: str, reader: Callable[[Any], Any], rows) -> list[Bad]:
    """One Bad per ``(name, file, error, match)`` row: ``reader`` applied to that fixture file."""
    return [Bad(f"{label} {name}", lambda f, file=file: reader(f.path(file)), err, match)
            for name, file, err, match in rows]


class BadFiles:
    """Bad files, written once: ``f.path("name")``. The generic files are written here (``plain.npz`` and its
    truncated twin, binary garbage, an empty file, an ``.npz`` of pickled objects, truncated JSON); each
    ``writer(root)`` adds a domain's own."""

    def __init__(self, root: Path, *writers: Callable[[Path], None]):
        self.root = root
        np.savez(root / "plain.npz", a=np.zeros(3))
        whole = self.plain_npz_bytes()
        (root / "truncated.npz").write_bytes(whole[: len(whole) // 2])
        (root / "garbage.bin").write_bytes(b"\x00\x01\x02 not a file format \xff")
        (root / "empty.txt").write_text("")
        np.savez(root / "object.npz", a=np.array([{"x": 1}], dtype=object))
        (root / "trunc.json").write_text('{"a": ')
        for write in writers:
            write(root)

    def path(self, name: str) -> Path:
        return self.root / name

    def plain_npz_bytes(self) -> bytes:
        return (self.root / "plain.npz").read_bytes()


class BadInputTable:
    """The tests of one bad-input table. A subclass sets ``cases`` (its rows) and ``writers`` (functions that write
    its own bad files into the folder); each row becomes a test of its own, named after the row. A subclass may add
    tests that take the ``files`` fixture (e.g. that the good twins of the bad files load)."""

    cases: list[Bad] = []
    writers: tuple[Callable[[Path], None], ...] = ()

    def pytest_generate_tests(self, metafunc):
        if "case" in metafunc.fixturenames:
            metafunc.parametrize("case", self.cases, ids=[c.name for c in self.cases])

    @pytest.fixture(scope="class")
    @classmethod
    def files(cls, tmp_path_factory) -> BadFiles:
        return BadFiles(tmp_path_factory.mktemp("bad-files"), *cls.writers)

    def test_bad_input_fails_with_a_message_that_names_the_problem(self, case: Bad, files: BadFiles):
        check_bad_input(case, files)

    def test_the_table_names_are_unique(self):
        check_unique_names(self.cases)


@contextlib.contextmanager
def _without(modules: tuple[str, ...], fresh: tuple[str, ...] = ()):
    """Imports of ``modules`` fail inside the block, as when an optional extra is not installed; modules under the
    ``fresh`` prefixes are imported anew (and the originals put back afterwards)."""
    saved = {k: v for k, v in sys.modules.items() if k in modules or k.startswith(fresh) and fresh}
    try:
        for k in saved:
            del sys.modules[k]
        for m in modules:
            sys.modules[m] = None  # `import m` raises ModuleNotFoundError
        yield
    finally:
        for k in [k for k in sys.modules if k in modules or fresh and k.startswith(fresh)]:
            del sys.modules[k]
        sys.modules.update(saved)


def without(modules, call, fresh=()):
    """``call`` run as if ``modules`` were not installed (see :func:`_without`)."""

    def run_it(f):
        with _without(tuple(modules), tuple(fresh)):
            return call(f)

    return run_it


def tiny_smpl() -> dict[str, np.ndarray]:
    """A structurally valid SMPL model with one vertex per joint (for readers and the body, not for realism)."""
    from genneg.domains.motion.skeleton import PARENTS

    v = 24
    return {"v_template": np.random.default_rng(0).normal(size=(v, 3)), "shapedirs": np.zeros((v, 3, 10)),
            "posedirs": np.zeros((v, 3, 207)), "J_regressor": np.eye(v), "weights": np.eye(v),
            "kintree_table": np.stack([np.array(PARENTS, np.int64) % 2**32, np.arange(v)]), "f": np.array([[0, 1, 2]])}
