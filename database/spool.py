"""The audit spool: records kept on local disk while PostgreSQL is unreachable.

A directory of numbered, append-only JSON-lines segments (``segment-000000000001.jsonl``,
...), one record per line (database/codec.py encodes them losslessly). Records are
appended at the tail and replayed from the head, so order is kept. A segment is
deleted only after everything in it is committed to the database; a crash mid-replay
replays that segment again on the next start, which is harmless because every audit
row has an idempotency key. Appends are ``fsync``'d (file, and directory on creation).

Beside the segments: ``dead-letter.jsonl`` (records the database refused for good, each
with the error; database/dead_letters.py) and the writer's ``overflow.jsonl`` (see
database/audit.py). An exclusive ``flock`` on ``.lock`` keeps two writers out of one spool.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from core.errors import TraderError
from database.dead_letters import DEAD_LETTER_FILE, append_dead_letters

__all__ = ["DEAD_LETTER_FILE", "Spool", "SpoolError", "append_dead_letters", "read_lines"]

_SEGMENT = re.compile(r"^segment-(\d{12})\.jsonl$")


class SpoolError(TraderError):
    """The spool cannot be used (already in use by another process, or not writable)."""


def fsync_dir(directory: Path) -> None:
    """Make a creation, rename or deletion in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Ordered, durable, append-only storage of encoded audit records."""

    def __init__(self, directory: Path, *, max_segment_bytes: int = 16 << 20) -> None:
        self.directory = Path(directory)
        self.max_segment_bytes = max_segment_bytes
        self._lock: IO[bytes] | None = None
        self._tail: IO[bytes] | None = None
        self._tail_bytes = 0
        self._segments: list[Path] = []
        self._bytes = 0

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        """Create the directory, take the lock, and find the segments left by a past run."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = (self.directory / ".lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise SpoolError(f"audit spool {self.directory} is in use by another process") from None
        self._lock = lock
        found = [p for p in self.directory.iterdir() if _SEGMENT.match(p.name)]
        self._segments = sorted(found, key=_number)
        self._bytes = sum(p.stat().st_size for p in self._segments)

    def close(self) -> None:
        """Close the tail and release the lock. Idempotent."""
        self.seal()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- state -----------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        """Bytes waiting in segments (what a metric shows as the spool size)."""
        return self._bytes

    def __bool__(self) -> bool:
        return bool(self._segments)

    def segments(self) -> list[Path]:
        """The segments, oldest first."""
        return list(self._segments)

    # -- writing ---------------------------------------------------------------------
    def append(self, lines: Iterable[bytes]) -> int:
        """Append encoded lines at the tail and fsync; return the bytes written.

        Raises OSError (a full disk) with nothing of ``lines`` left in the segment."""
        data = b"".join(lines)
        if not data:
            return 0
        if self._tail is None or self._tail_bytes >= self.max_segment_bytes:
            self._new_tail()
        assert self._tail is not None
        fd = self._tail.fileno()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            # A full disk can take part of it: cut back to whole lines, so that a later
            # append (or a replay) never meets a torn record in the middle of a segment.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._tail_bytes)
            raise
        self._tail_bytes += len(data)
        self._bytes += len(data)
        return len(data)

    def seal(self) -> None:
        """Close the tail segment: the next append starts a new one."""
        if self._tail is not None:
            self._tail.close()
            self._tail = None
            self._tail_bytes = 0

    def adopt(self, path: Path) -> None:
        """Move a finished file in as the newest segment (atomic rename in one directory)."""
        self.seal()
        target = self._next_segment_path()
        size = path.stat().st_size
        os.replace(path, target)
        fsync_dir(self.directory)
        self._segments.append(target)
        self._bytes += size

    def _new_tail(self) -> None:
        self.seal()
        path = self._next_segment_path()
        self._tail = path.open("ab", buffering=0)  # unbuffered: append() cuts back a failed write
        fsync_dir(self.directory)
        self._segments.append(path)

    def _next_segment_path(self) -> Path:
        last = _number(self._segments[-1]) if self._segments else 0
        return self.directory / f"segment-{last + 1:012d}.jsonl"

    # -- reading ---------------------------------------------------------------------
    def head(self) -> Path | None:
        """The oldest segment, sealed first if it is the one being appended to."""
        if not self._segments:
            return None
        if len(self._segments) == 1:
            self.seal()
        return self._segments[0]

    def remove(self, path: Path) -> None:
        """Delete a fully replayed segment (only ever the head)."""
        if not self._segments or self._segments[0] != path:
            raise SpoolError(f"{path.name} is not the head of the spool")
        if self._tail is not None and len(self._segments) == 1:
            self.seal()
        size = path.stat().st_size if path.exists() else 0
        path.unlink(missing_ok=True)
        fsync_dir(self.directory)
        self._segments.pop(0)
        self._bytes -= size


def _number(path: Path) -> int:
    match = _SEGMENT.match(path.name)
    if match is None:
        raise SpoolError(f"{path.name} is not a spool segment")
    return int(match.group(1))


def read_lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes, bool]]:
    """Yield ``(line number, line, complete)`` of a segment from line ``start``.

    ``complete`` is False only for a last line without its newline: a write torn by a crash.
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail_complete = data.endswith(b"\n") or not data
    if lines and lines[-1] == b"":
        lines.pop()
    last = len(lines) - 1
    for number in range(start, len(lines)):
        line = lines[number]
        if line.strip():
            yield number, line, number != last or tail_complete
