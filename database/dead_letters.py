"""The dead-letter file: audit records the database refused for good, kept for replay.

``dead-letter.jsonl`` in the spool directory holds one line per refused record: the
error, the time (``at``) and the record as the spool encodes it. The daemon only ever
appends to it; nothing here deletes a dead letter. ``main.py audit replay`` writes them
again once the operator has fixed the cause: the ones that go in are moved to
``dead-letter.replayed.jsonl`` (an archive, appended), the ones still refused stay, with
their new error.

The daemon (appending) and the replay command (rewriting) take ``dead-letter.lock``
around each of their steps; the replay holds it only to read and to swap the file, never
while it talks to the database, so the daemon's event loop is never held up for long.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.money import utcnow
from core.records import AuditRecord, Severity, event_record
from database.codec import encode_record

DEAD_LETTER_FILE = "dead-letter.jsonl"
ARCHIVE_FILE = "dead-letter.replayed.jsonl"
LOCK_FILE = "dead-letter.lock"


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the dead-letter lock of ``directory`` (blocking; every holder is brief)."""
    with (directory / LOCK_FILE).open("ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def append_dead_letters(directory: Path, lines: Iterable[bytes]) -> None:
    """Append lines to the dead-letter file and fsync it."""
    data = b"".join(lines)
    if not data:
        return
    with locked(directory):
        _append(directory / DEAD_LETTER_FILE, data)


def _at(line: bytes) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(line)["at"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class DeadLetterSummary:
    """How many dead letters wait, and when the oldest was refused."""

    count: int
    oldest: datetime | None

    @property
    def oldest_age_s(self) -> float | None:
        if self.oldest is None:
            return None
        return max(0.0, (utcnow() - self.oldest).total_seconds())


class DeadLetterCounter:
    """Count and age of the dead letters, re-read only when the file changed."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / DEAD_LETTER_FILE
        self._seen: tuple[int, int, int] | None = None
        self._summary = DeadLetterSummary(0, None)

    def summary(self) -> DeadLetterSummary:
        try:
            st = self.path.stat()
        except OSError:
            self._seen, self._summary = None, DeadLetterSummary(0, None)
            return self._summary
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._seen:
            self._seen, self._summary = stamp, summarise(self.path)
        return self._summary


def summarise(path: Path) -> DeadLetterSummary:
    """Count the lines of a dead-letter file and read the oldest one's time."""
    try:
        lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    except OSError:
        return DeadLetterSummary(0, None)
    stamps = [at for at in map(_at, lines) if at is not None]
    return DeadLetterSummary(len(lines), min(stamps, default=None))


def take_snapshot(directory: Path) -> tuple[list[bytes], int]:
    """The dead-letter lines as they are now, and the file's size they end at."""
    with locked(directory):
        path = directory / DEAD_LETTER_FILE
        data = path.read_bytes() if path.exists() else b""
    return [line for line in data.split(b"\n") if line.strip()], len(data)


def settle(directory: Path, upto: int, replayed: list[bytes], refused: list[bytes]) -> None:
    """After a replay: archive ``replayed``, keep ``refused`` plus whatever the daemon
    appended after byte ``upto``. The archive is written first: a crash between the two
    steps leaves a line in both files (harmless: a replay is idempotent), never in none."""
    with locked(directory):
        if replayed:
            _append(directory / ARCHIVE_FILE, b"".join(line + b"\n" for line in replayed))
        path = directory / DEAD_LETTER_FILE
        data = path.read_bytes() if path.exists() else b""
        kept = b"".join(line + b"\n" for line in refused) + data[upto:]
        tmp = directory / (DEAD_LETTER_FILE + ".new")
        with tmp.open("wb") as f:
            f.write(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def dead_line(rec: AuditRecord | None, exc: BaseException, raw: bytes | None = None) -> bytes:
    """A dead-letter line: the error, the time, and the record as the spool encodes it."""
    head = json.dumps({"error": f"{type(exc).__name__}: {exc}", "at": utcnow().isoformat()})
    try:
        body = encode_record(rec).decode() if rec is not None else None
    except Exception:
        body = None
    if body is not None:
        return (head[:-1] + "," + body[1:]).encode()
    shown = raw.decode(errors="replace") if raw is not None else repr(rec)
    return (head[:-1] + "," + json.dumps({"raw": shown})[1:] + "\n").encode()


def refused_event(
    kind: object, key: dict[str, Any], exc: BaseException, account: str | None
) -> AuditRecord:
    """The ``audit_record_refused`` event of a dead-lettered record."""
    return event_record(
        "audit_record_refused",
        f"an audit record ({kind}) was refused by the database and kept in "
        f"{DEAD_LETTER_FILE}; fix the cause, then run `main.py audit replay`",
        severity=Severity.ERROR,
        account=account,
        detail={
            "record_kind": str(kind),
            "error": f"{type(exc).__name__}: {exc}"[:500],
            **{k: str(v) for k, v in key.items()},
        },
    )
