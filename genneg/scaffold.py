"""`genneg new-domain NAME`: writes a working domain package from the template in ``genneg/templates/domain``.

The generated package passes the contract tests (``genneg.contract``) as written, and ``genneg run NAME
--domain-path DIR/NAME --preset tiny`` runs it end to end; users then replace its data, network, oracle and plot.
"""

from __future__ import annotations

import keyword
import re
from importlib.resources import files
from pathlib import Path
from string import Template

__all__ = ["scaffold_domain", "check_domain_name"]

_TEMPLATE = "templates/domain"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check_domain_name(name: str) -> str:
    """A domain name must be a lower-case Python identifier (it names a package and an oracle namespace)."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ValueError(f"domain name {name!r} must be a lower-case Python identifier such as 'my_domain'")
    return name


def _template_files() -> list[tuple[str, str]]:
    """``(relative path with NAME placeholders, template text)`` for every template file."""
    root = files("genneg").joinpath(_TEMPLATE)
    out, stack = [], [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                stack.append((entry, f"{prefix}{entry.name}/"))
            elif entry.name.endswith(".tmpl"):
                out.append((prefix + entry.name[: -len(".tmpl")], entry.read_text()))
    if not out:
        raise FileNotFoundError(f"no domain template found under genneg/{_TEMPLATE} (is genneg installed fully?)")
    return sorted(out)


def _target(rel: str, name: str) -> str:
    """Package files go to ``NAME/``; the tests to ``tests/test_NAME.py`` beside it."""
    rel = rel.replace("NAME", name)
    return rel if rel.startswith("tests/") else f"{name}/{rel}"


def scaffold_domain(name: str, directory: str | Path = ".") -> list[Path]:
    """Writes ``DIR/NAME/`` (the domain package) and ``DIR/tests/test_NAME.py``; returns the written paths.

    Raises:
        ValueError: the name is not a lower-case identifier.
        FileExistsError: a file it would write exists already (nothing is written then).
    """
    check_domain_name(name)
    root = Path(directory)
    plan = [(root / _target(rel, name), Template(text).substitute(name=name)) for rel, text in _template_files()]
    existing = [str(p) for p, _ in plan if p.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)}")
    for path, text in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return [p for p, _ in plan]
