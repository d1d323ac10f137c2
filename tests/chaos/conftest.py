"""Fixtures and knobs of the chaos suite (see each scenario's module docstring)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from config.logging import configure_logging
from tests.e2e.conftest import fresh_db_url, trader

__all__ = ["fresh_db_url", "scaled", "trader"]


def scaled(full: int) -> int:
    """``full`` times ``CHAOS_SCALE`` (default 1), at least 1."""
    return max(1, round(full * float(os.environ.get("CHAOS_SCALE", "1"))))


# Kept open for the whole session: structlog caches loggers bound to it on first use.
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """In-process scenarios: structlog to /dev/null (the journal's rows are the record)."""
    configure_logging("json", "CRITICAL", _DEVNULL)
    yield


def chaos_seed(default: int) -> int:
    """``CHAOS_SEED`` if set, else the scenario's ``default``."""
    return int(os.environ.get("CHAOS_SEED", str(default)))
