"""docs/architecture.md stays true to the repository: it names every module, cites only
tests that exist, links only files that exist, and nothing points outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
PACKAGES = ("config", "core", "exchanges", "database", "cli")
OUTSIDE_REFERENCES = ("design.md", "../shared", "/work/shared")
NO_OUTSIDE_REFERENCES = ("core", "exchanges", "database", "migrations", "docs")

_CITED_TEST = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


def _text() -> str:
    return PAGE.read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as '-'."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_module_of_the_packages_is_named() -> None:
    """Each .py file under config/, core/, exchanges/, database/ and cli/ appears in the page
    by its path."""
    text = _text()
    modules = sorted(
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).glob("*.py")
    )
    assert len(modules) > 60  # the packages were found at all
    assert [] == [module for module in modules if f"`{module}`" not in text]


def test_every_cited_test_exists() -> None:
    """Each ``tests/...py`` path the page cites is a file, and each ``::name`` after it is a
    function defined in that file."""
    cited = _CITED_TEST.findall(_text())
    assert len({name for _, name in cited if name}) > 50  # the failure-mode table is there
    missing = []
    for path, name in cited:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and name not in _test_names(file):
            missing.append(f"{path}::{name}")
    assert [] == missing


def test_every_relative_link_resolves_inside_the_repository() -> None:
    """Each relative link names a file of the repository (and an anchor, a heading of the
    page); links outside it, or to nothing, are refused."""
    text = _text()
    anchors = {_slug(heading) for heading in _HEADING.findall(text)}
    links = _LINK.findall(text)
    assert links
    broken = []
    for target in links:
        if re.match(r"^[a-z]+:", target):
            continue  # a URL, not a file of the repository
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in anchors:
                broken.append(target)
            continue
        resolved = (PAGE.parent / path).resolve()
        inside = resolved.is_relative_to(ROOT)
        if not inside or not resolved.is_file():
            broken.append(target)
    assert [] == broken


def test_settings_are_pointed_at_not_restated() -> None:
    """The page links the settings reference beside it (docs/settings.md) for the settings
    contract, and the README's Layout section links the page."""
    assert "](settings.md)" in _text()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    assert "](docs/architecture.md)" in layout


@pytest.mark.parametrize("folder", NO_OUTSIDE_REFERENCES)
def test_nothing_refers_to_a_file_outside_the_repository(folder: str) -> None:
    """No file under the folder mentions DESIGN.md or the shared folder beside the
    repository: what a contributor needs to read is in the repository."""
    offenders = []
    for path in sorted((ROOT / folder).rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace").lower()
        offenders += [
            f"{path.relative_to(ROOT)}: {ref}" for ref in OUTSIDE_REFERENCES if ref in text
        ]
    assert (ROOT / folder).is_dir()
    assert [] == offenders
