"""Log lines: one event per line in both formats, even for a traceback or a multi-line
value, and a registered secret masked wherever it appears."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from config.logging import configure_logging, register_secrets


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    structlog.reset_defaults()


def _log_awkward_events() -> None:
    log = structlog.get_logger("t")
    log.info("venue_reply", detail="line one\nline two\r\nline three", position_id=7)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("loop_error", client_order_id="td-main-p7-sl-1")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_each_event_is_exactly_one_line(stream: io.StringIO, fmt: str) -> None:
    """Two events (one with embedded newlines, one with a traceback) give two lines."""
    configure_logging(fmt, "INFO", stream)
    _log_awkward_events()
    lines = stream.getvalue().splitlines()
    assert 2 == len(lines)
    assert "position_id" in lines[0] and "line three" in lines[0]
    assert "RuntimeError" in lines[1] and "td-main-p7-sl-1" in lines[1]


def test_json_lines_parse_and_keep_the_bound_ids(stream: io.StringIO) -> None:
    """In JSON each line parses on its own and carries the ids as fields."""
    configure_logging("json", "INFO", stream)
    _log_awkward_events()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert 7 == first["position_id"]
    assert "td-main-p7-sl-1" == second["client_order_id"]


def test_auto_is_json_when_not_a_terminal(stream: io.StringIO) -> None:
    """``auto`` on a stream that is not a TTY (systemd, a pipe) writes JSON."""
    configure_logging("auto", "INFO", stream)
    structlog.get_logger("t").info("hello", n=1)
    assert {"event": "hello", "n": 1}.items() <= json.loads(stream.getvalue()).items()


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_registered_secret_is_masked_even_inside_an_exception(
    stream: io.StringIO, fmt: str
) -> None:
    """A secret in a value or in an exception's text never reaches the line."""
    register_secrets(["sekrit-api-key-123"])
    configure_logging(fmt, "INFO", stream)
    log = structlog.get_logger("t")
    log.info("connect", url="https://x/?key=sekrit-api-key-123")
    try:
        raise ValueError("bad key sekrit-api-key-123")
    except ValueError:
        log.exception("auth_failed")
    assert "sekrit-api-key-123" not in stream.getvalue()
    assert 2 == len(stream.getvalue().splitlines())
