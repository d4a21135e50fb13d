"""The README and docs/ stand on their own: every relative link resolves to a file in the repository, and the
README stays a short page for users (issue 17: about 10 KB)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 10_500
# [text](target) and ![alt](target); a target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def relative_links(text: str) -> list[str]:
    """The link targets of a markdown text that point into the repository (no scheme, not a bare #anchor), with any
    #anchor or ?query removed. Links inside fenced code blocks are not links."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    targets = [m.group(1) for m in LINK.finditer(prose)]
    return [re.split(r"[#?]", t)[0] for t in targets if not EXTERNAL.match(t) and not t.startswith("#")]


def test_relative_links_are_found_and_external_ones_skipped():
    text = ("[a](docs/a.md) ![b](figures/b.png) [c](https://x.org/c.md) [d](#anchor) [e](cli.md#several-processes)\n"
            "```bash\n[f](nowhere.md)\n```\n")
    assert relative_links(text) == ["docs/a.md", "figures/b.png", "cli.md"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves_inside_the_repository(page):
    broken = []
    for target in relative_links(page.read_text()):
        path = (page.parent / target).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to files not in the repository: {broken}"


def test_readme_is_a_short_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, (f"README.md is {size} bytes; keep it under {README_MAX_BYTES} "
                                      "(move details to docs/)")
