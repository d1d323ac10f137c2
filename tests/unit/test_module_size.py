"""Every module of the daemon reads in one sitting: at most 400 lines, and no function or
method longer than 60 lines (decorators excluded), over cli/, config/, core/, database/
and exchanges/. A module that grows past this is split by concept, not trimmed."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "config", "core", "database", "exchanges")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_the_packages_are_found() -> None:
    """The scan sees the daemon's modules at all (a wrong root would pass everything)."""
    assert len(_modules()) > 80


def test_no_module_is_longer_than_400_lines() -> None:
    """Each module of the packages has at most 400 lines."""
    long = {
        path.relative_to(ROOT).as_posix(): lines
        for path in _modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_longer_than_60_lines() -> None:
    """Each function and method of the packages spans at most 60 lines, def to last line."""
    long = {}
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                span = node.end_lineno - node.lineno + 1
                if span > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = span
    assert long == {}
