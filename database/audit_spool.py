"""Writing a batch, and the spool: the audit writer's records while PostgreSQL is away.

A batch the database cannot take goes to the spool (database/spool.py, fsync'd), and so
does everything after it while the spool is non-empty; the spool is replayed in order
when the database answers again. The overflow file becomes the newest segment once the
queue ahead of it has drained. At close, whatever is still in memory is spooled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from config.logging import get_logger
from core.records import AuditRecord, Severity, event_record
from database.audit_queue import OVERFLOW_FILE, AuditQueue
from database.batch_writer import SchemaRefusal
from database.codec import decode_record, encode_record
from database.dead_letters import (
    append_dead_letters,
    dead_line,
)
from database.spool import read_lines

if TYPE_CHECKING:
    pass

log = get_logger("database.audit")


class AuditSpool(AuditQueue):
    """Batch writes with their failure handling, the spool and its replay."""

    async def _write(self, records: Sequence[AuditRecord]) -> bool:
        """Commit ``records`` (refused ones dead-lettered); False if the database is away."""
        refused_before = self.dead_letters
        if not await self._db.write(records):
            error = self._db.error
            self._unavailable(error)
            if isinstance(error, SchemaRefusal):
                self._set_state(schema=str(error))
            return False
        self.written += len(records) - (self.dead_letters - refused_before)
        if self._state.degraded:
            self._set_state(disk=None, schema=None)
        return True

    def _unavailable(self, exc: BaseException | None) -> None:
        text = f"{type(exc).__name__}: {exc}".strip()
        if text != self.last_error:
            log.warning("audit_database_unavailable", error=text, queue_depth=self.queue_depth)
        self.last_error = text

    async def _to_spool(self, records: Iterable[AuditRecord]) -> bool:
        """Append ``records`` to the spool (fsync'd). False if the disk refused."""
        lines: list[bytes] = []
        for rec in records:
            try:
                lines.append(encode_record(rec))
            except Exception as exc:
                self._dead_letter(rec, exc)
        # fsync off the event loop. Shielded: a cancelled writer must not leave a
        # half-done append racing with aclose(), which waits for it instead.
        write = asyncio.ensure_future(asyncio.to_thread(self._spool.append, lines))
        self._spool_write = write
        try:
            await asyncio.shield(write)
        except OSError as exc:
            self.last_error = f"spool: {exc}"
            log.critical("audit_spool_write_failed", error=str(exc), dir=str(self.spool_dir))
            self._set_state(disk=f"database unavailable and spool refused: {exc}")
            return False
        if self._state.disk is not None:
            self._set_state(disk=None)
        return True

    async def _queue_to_spool(self) -> None:
        while self._queue:
            records, oldest = self._take()
            if not await self._to_spool(records):
                self._put_back(records, oldest)
                return
            self._settle(len(records))

    async def _replay(self) -> bool:
        """Replay the spool from its head into the database; True once it is empty."""
        total = 0
        while (head := self._spool.head()) is not None:
            lines = await asyncio.to_thread(_read_segment, head, self._replay_from.get(head, 0))
            for i in range(0, len(lines), self._batch_size):
                chunk = lines[i : i + self._batch_size]
                records = self._decode(head, chunk)
                if records and not await self._write(records):
                    return False
                total += len(records)
                self._replay_from[head] = chunk[-1][0] + 1
            self._spool.remove(head)
            self._replay_from.pop(head, None)
            self._progress.set()
        if total:
            log.info("audit_spool_replayed", records=total)
            self.record(
                event_record(
                    "audit_spool_replayed",
                    f"{total} audit records written from the spool",
                    severity=Severity.WARNING,
                    detail={"records": total},
                )
            )
        return True

    def _decode(self, path: Path, chunk: list[tuple[int, bytes, bool]]) -> list[AuditRecord]:
        records = []
        for number, line, complete in chunk:
            try:
                records.append(decode_record(line))
            except Exception as exc:
                if not complete:
                    log.warning("audit_spool_torn_line", file=path.name, line=number)
                    continue
                self.dead_letters += 1
                append_dead_letters(self.spool_dir, [dead_line(None, exc, raw=line)])
                log.error("audit_spool_bad_line", file=path.name, line=number, error=str(exc))
                self._refused_event(None, {}, exc)
        return records

    def _adopt_overflow(self) -> None:
        """The queue ahead has drained: the overflow file becomes the newest segment, and
        records neither the queue nor the file could take go back into the queue."""
        overflow, self._overflow = self._overflow, None
        if overflow is not None:
            try:
                overflow.close()  # flushes: a full disk can refuse the last of it
            except OSError as exc:
                log.critical(
                    "audit_overflow_flush_failed", error=str(exc), records=self._overflow_count
                )
            path = self.spool_dir / OVERFLOW_FILE
            try:
                self._spool.adopt(path)
            except OSError as exc:
                self.last_error = f"overflow: {exc}"
                log.critical("audit_overflow_adopt_failed", error=str(exc))
        self._settle(self._overflow_count)
        self._overflow_count = 0
        self._overflow_bytes = 0
        if self._emergency:
            # Records the overflow file could not take: newer than it, older than the queue.
            self._put_back(self._emergency, time.monotonic())
            self._emergency = []

    def _spool_everything_now(self) -> None:
        """At close: whatever is still in memory goes to the spool, in order (blocking)."""
        pending = list(self._inflight or []) + list(self._queue)
        self._inflight = None
        self._queue.clear()
        self._stamps.clear()
        lines = []
        for rec in pending:
            try:
                lines.append(encode_record(rec))
            except Exception as exc:
                self._dead_letter(rec, exc)
        try:
            self._spool.append(lines)
            self._settle(len(pending))
            if self._overflow is not None:
                self._adopt_overflow()
            if self._emergency:
                self._spool.append(encode_record(rec) for rec in self._emergency)
                self._settle(len(self._emergency))
                self._emergency.clear()
        except OSError as exc:
            log.critical("audit_records_lost", records=len(pending), error=str(exc))


def _read_segment(path: Path, start: int) -> list[tuple[int, bytes, bool]]:
    return list(read_lines(path, start))
