"""Logging: structlog, one event per line.

JSON when stdout is not a terminal (systemd, files, pipes) or when configured, readable
key=value on a terminal. Values are made JSON-safe (``Decimal`` as a string, datetimes
as ISO-8601 UTC). A last processor replaces every registered secret by ``***`` wherever it
appears in a line, so a secret cannot reach the log even inside an exception text.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, MutableMapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TextIO

import orjson
import structlog

_secrets: set[str] = set()
REDACTED = "***"


def register_secrets(values: Iterable[str]) -> None:
    """Remember values that must never be printed (API keys, database passwords)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    """``text`` with every registered secret masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _jsonable(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        event[key] = _plain(value)
    return event


def _one_line(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console lines stay one event per line: newlines inside values (a traceback, a
    multi-line venue message) are escaped, and the traceback becomes an ordinary field
    instead of the block the console renderer would print under the line."""
    trace = event.pop("exception", None)
    if trace is not None:
        event["exc"] = trace
    for key, value in event.items():
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            event[key] = value.replace("\r", "\\r").replace("\n", "\\n")
    return event


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return repr(value)


def _orjson_dumps(event: Any, **_: Any) -> str:
    try:
        return orjson.dumps(event, default=_orjson_default).decode()
    except TypeError:
        # orjson refuses some values (integers beyond 64 bits, say). A log line must
        # never be the reason trading stops: fall back to the slow, total encoder.
        return json.dumps(event, default=repr)


def _redact_rendered(_: Any, __: str, line: Any) -> Any:
    # Runs after the renderer, so it sees the final text: nothing escapes it.
    return redact(line) if _secrets and isinstance(line, str) else line


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Set up structlog for the process. ``fmt`` is ``json``, ``console`` or ``auto``."""
    out = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if use_json:
        # orjson renders datetimes itself and Decimals through ``default``: one pass,
        # several times faster than the stdlib encoder on the trading path.
        processors.append(structlog.processors.JSONRenderer(serializer=_orjson_dumps))
    else:
        processors += [
            _jsonable,
            _one_line,
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0),
        ]
    processors.append(_redact_rendered)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str | None = None, **bound: Any) -> Any:
    """A structlog logger, optionally with context bound (``position_id=...``)."""
    log = structlog.get_logger(name) if name else structlog.get_logger()
    return log.bind(**bound) if bound else log
