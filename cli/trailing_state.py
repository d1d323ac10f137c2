"""The trailing stops' saved state: the file a run writes and the next one restores.

Separate from the composition root (cli/service.py) because it is file I/O with its own
failure rule: an unreadable file is set aside, never a reason to refuse a start.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import orjson
import structlog

from config.settings import Settings
from core.errors import ValidationError
from core.journal import Journal
from core.money import utcnow
from core.order_manager import OrderManager
from core.records import Severity
from core.triggers import TrailingState

log = structlog.get_logger("service")


def trailing_file(settings: Settings) -> Path:
    return settings.state_dir / f"trailing-{settings.account}.json"


def save_trailing(path: Path, states: list[TrailingState]) -> None:
    """Write atomically (temp file, fsync, rename): a crash leaves the old or the new.

    Blocking file I/O: the daemon calls it in a worker thread (core/daemon.py). The
    encoding is orjson's, a tenth of the standard library's (about 70 us for 500 stops
    against 1 ms): CPU spent in a worker holds the GIL, and the event loop waits for it
    (up to the interpreter's 5 ms switch interval at a time), ticks included."""
    data = [
        {
            "id": s.client_order_id,
            "activated": s.activated,
            "extreme": str(s.extreme) if s.extreme is not None else None,
        }
        for s in states
    ]
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as handle:
        handle.write(orjson.dumps(data))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _parse_trailing(text: str) -> list[TrailingState]:
    raw = json.loads(text)
    if not isinstance(raw, list):
        raise TypeError("not a list of trailing states")
    states = []
    for item in raw:
        cid, activated, extreme = item["id"], item["activated"], item["extreme"]
        if not isinstance(cid, str) or not cid or not isinstance(activated, bool):
            raise ValueError(f"malformed entry {item!r}")
        peak = None if extreme is None else Decimal(str(extreme))
        if peak is not None and not (peak.is_finite() and peak > 0):
            raise ValueError(f"extreme of {cid} is not a positive price: {extreme!r}")
        states.append(TrailingState(cid, activated, peak))
    return states


def load_trailing(path: Path, journal: Journal | None = None) -> list[TrailingState]:
    """The trailing state a previous run saved; empty when there is none.

    A file that cannot be read or parsed must not stop every start-up from now on: it is
    set aside (:func:`set_aside_trailing`) and the daemon starts without it.
    """
    if not path.exists():
        return []
    try:
        return _parse_trailing(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, ArithmeticError) as exc:
        set_aside_trailing(path, f"{type(exc).__name__}: {exc}", journal)
    return []


def set_aside_trailing(path: Path, error: str, journal: Journal | None = None) -> None:
    """Move an unusable trailing state file to ``<name>.corrupt-<UTC time>`` (kept for a
    person to look at) and say so with an error event naming both files. Trailing orders
    then resume from the current price instead of their saved extreme."""
    aside = path.with_name(f"{path.name}.corrupt-{utcnow():%Y%m%dT%H%M%SZ}")
    try:
        path.replace(aside)
        moved = str(aside)
    except OSError as exc:
        moved = f"not moved ({exc.strerror})"
    message = f"trailing state file {path} is unusable ({error}); moved to {moved}"
    if journal is not None:
        journal.event(
            "trailing_state_unreadable",
            message,
            severity=Severity.ERROR,
            file=str(path),
            moved_to=moved,
        )
    else:
        log.error("trailing_state_unreadable", file=str(path), moved_to=moved, error=error)


def restore_trailing(orders: OrderManager, path: Path, journal: Journal) -> None:
    """Resume the trailing stops re-armed from the database where they were. States the
    trigger book refuses (naming an order that is not a trailing stop, an active one
    without a price) set the file aside like an unreadable one: nothing is restored."""
    states = load_trailing(path, journal)
    try:
        orders.rearm((), states)
    except ValidationError as exc:
        set_aside_trailing(path, f"ValidationError: {exc}", journal)
