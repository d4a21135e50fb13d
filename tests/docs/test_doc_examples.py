"""Every code example in README.md and docs/*.md runs.

Per file, in a fresh temporary folder and in the order they appear:

- ```python blocks run in one namespace (a block may use what an earlier block of the same file defined);
- ```bash blocks whose first line starts with ``genneg`` run line by line through ``genneg.cli.main`` (every line
  of such a block must be a ``genneg`` command), with tiny settings: ``--preset`` becomes ``tiny`` (added where
  a command names none), ``--seeds``, ``--workers`` and ``--oracle-workers`` become 1, ``--n`` at most 200,
  ``--quiet`` is added, and ``train`` / ``run`` get the ``SHRINK`` overrides before the example's own ``--set``
  (so the example's win).

Other blocks (``make``, ``pip``, toml, text) are not run. A block right after a ``<!-- skip-test -->`` line is not
run either: keep those for what truly cannot run here (multi-hour or GPU-only commands).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
EXPECTED_DOCS = {"docs/toy.md", "docs/traffic.md", "docs/motion.md", "docs/cli.md", "docs/api.md",
                 "docs/adding_an_oracle.md"}
SKIP = "<!-- skip-test -->"
FENCE = re.compile(r"^```(\w*)\s*$")
TINY_DOMAINS = {"toy", "traffic", "motion"}
QUIET = {"train", "sample", "eval", "run", "data"}
SHRINK = ["base.steps=20", "classifier.steps=10", "distil.steps=10", "genneg.rounds=1", "genneg.samples_per_round=64",
          "genneg.distil_samples=64", "genneg.baselines=[]", "eval.num_samples=64", "eval.num_nll=16",
          "eval.nll_sigmas=2"]


def code_blocks(text: str) -> list[dict]:
    """``[{"lang", "code", "line", "skip"}]`` for every fenced block of a markdown text."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        before = [ln for ln in lines[:i] if ln.strip()]
        blocks.append({"lang": m.group(1), "code": "\n".join(lines[i + 1 : j]), "line": i + 1,
                       "skip": bool(before) and before[-1].strip() == SKIP})
        i = j + 1
    return blocks


def runnable(block: dict) -> str | None:
    """"python", "genneg" or None (not run)."""
    if block["skip"]:
        return None
    if block["lang"] == "python":
        return "python"
    if block["lang"] in ("bash", "sh", "shell") and block["code"].lstrip().startswith("genneg"):
        return "genneg"
    return None


def tiny_argv(line: str) -> list[str]:
    """A documented ``genneg ...`` command line -> the argv its test runs (see the module docstring)."""
    args = shlex.split(line, comments=True)
    if not args or args[0] != "genneg":
        raise ValueError(f"not a genneg command: {line!r}")
    args = args[1:]
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a in ("--seeds", "--workers", "--oracle-workers"):
            out += [a, "1"]
            i += 2
            continue
        if a in ("--n", "--num-samples"):
            out += [a, str(min(int(args[i + 1]), 200))]
            i += 2
            continue
        if a == "--preset" and len(args) > 1 and args[1] in TINY_DOMAINS:
            out += [a, "tiny"]
            i += 2
            continue
        out.append(a)
        i += 1
    command = out[0] if out else ""
    if command in ("train", "run", "data") and len(out) > 1 and out[1] in TINY_DOMAINS and "--preset" not in out:
        out += ["--preset", "tiny"]
    if command in ("train", "run"):
        first_set = out.index("--set") if "--set" in out else len(out)
        out[first_set:first_set] = [x for s in SHRINK for x in ("--set", s)]
    if command in QUIET and "--quiet" not in out:
        out.append("--quiet")
    return out


def test_every_doc_page_is_there():
    assert EXPECTED_DOCS <= set(DOCS)


def test_cli_page_documents_every_subcommand():
    from genneg.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [name for name in sub.choices if f"## genneg {name}" not in text]
    assert not missing, f"docs/cli.md has no section for: {missing}"


def test_tiny_argv_rewrites_budgets_but_keeps_the_example():
    argv = tiny_argv("genneg run toy --preset default --seeds 3 --workers 3 --set genneg.rounds=3  # comment")
    assert argv[:4] == ["run", "toy", "--preset", "tiny"] and argv[argv.index("--seeds") + 1] == "1"
    assert argv[argv.index("--workers") + 1] == "1" and argv[-1] == "--quiet"
    sets = [argv[k + 1] for k, a in enumerate(argv) if a == "--set"]
    assert sets[-1] == "genneg.rounds=3" and "base.steps=20" in sets  # the example's own --set comes last
    assert tiny_argv("genneg train traffic --run-dir r")[:5] == ["train", "traffic", "--run-dir", "r", "--preset"]
    assert tiny_argv("genneg sample --run-dir r --n 5000 --out s.npz") == [
        "sample", "--run-dir", "r", "--n", "200", "--out", "s.npz", "--quiet"]
    assert tiny_argv("genneg presets toy") == ["presets", "toy"]
    with pytest.raises(ValueError):
        tiny_argv("make demo")


def test_skip_marker_applies_to_the_next_block_only():
    text = f"a\n\n{SKIP}\n```bash\ngenneg run x\n```\n\n```python\nprint(1)\n```\n"
    blocks = code_blocks(text)
    assert [b["skip"] for b in blocks] == [True, False] and [runnable(b) for b in blocks] == [None, "python"]


@pytest.mark.parametrize("doc", DOCS)
def test_examples_run(doc, tmp_path, monkeypatch, genneg_cache):
    from genneg.cli import main

    blocks = code_blocks((ROOT / doc).read_text())
    kinds = [runnable(b) for b in blocks]
    assert any(kinds), f"{doc} has no runnable example"
    assert sum(b["skip"] for b in blocks) <= 2, f"{doc}: keep skipped examples few"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENNEG_CACHE", str(genneg_cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__doc_example__"}
    for block, kind in zip(blocks, kinds):
        where = f"{doc}:{block['line']}"
        if kind == "python":
            exec(compile(block["code"], where, "exec"), namespace)  # noqa: S102 - our own documentation
        elif kind == "genneg":
            for line in block["code"].splitlines():
                if not line.strip():
                    continue
                try:
                    code = main(tiny_argv(line))
                except SystemExit as e:  # argparse errors and the CLI's own "error: ..." exits
                    code = e.code
                assert code in (0, None), f"{where}: `{line.strip()}` exited with {code}"
