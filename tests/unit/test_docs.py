"""The README and docs/ stay true: every link resolves (files and #headings), every `make` target they show exists,
the README stays a five-minute read, every docs page is linked from it, and docs/settings.md is the settings table's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iris_tools import environment
from tests.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
MAKE = re.compile(r"(?:`|^\s*(?:\$ )?|&& )make (?:-s )?([a-z][a-z-]*)\b", re.MULTILINE)  # in code, not prose
README_MAX_LINES = 250


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page: Path) -> None:
    broken = []
    for match in LINK.finditer(page.read_text()):
        link = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", link):  # https:, mailto: (nothing on the machine to check)
            continue
        path, _, anchor = link.partition("#")
        found = (page.parent / path).resolve() if path else page
        if not found.exists():
            broken.append(f"{link}: no file {found}")
        elif anchor and found.suffix == ".md" and anchor not in anchors(found):
            broken.append(f"{link}: no heading #{anchor} in {found.name}")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_make_target_shown_exists(page: Path) -> None:
    shown = set(MAKE.findall(page.read_text()))
    assert shown - targets() == set()


def test_the_readme_is_short_and_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    linked = {Path(m.group(1) or m.group(2)).name for m in LINK.finditer(readme)}
    assert {page.name for page in (ROOT / "docs").glob("*.md")} - linked == set()


def test_the_settings_page_is_the_table_s() -> None:
    """Regenerate with: python -m iris_tools.environment --markdown > docs/settings.md"""
    assert (ROOT / "docs" / "settings.md").read_text() == environment.markdown()
