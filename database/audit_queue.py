"""The audit writer's lowest layer: its state, the memory queue that ``record`` appends
to, the overflow file it spills to when the queue is full, the health it reports, and the
dead letters of records refused for good. Nothing here awaits the database.

The writer is built in three layers: this one; database/audit_spool.py (writing a batch,
the spool while the database is away, and its replay); database/audit.py (the lifecycle
and the background task that delivers the queue, two batches in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import asyncpg

from config.logging import get_logger
from core.records import AuditRecord, Severity, event_record
from core.resource import AsyncResource
from database.audit_state import TrailState
from database.batch_writer import BatchWriter
from database.codec import encode_record
from database.dead_letters import (
    DeadLetterCounter,
    append_dead_letters,
    dead_line,
    refused_event,
)
from database.spool import Spool

if TYPE_CHECKING:
    pass

log = get_logger("database.audit")


OVERFLOW_FILE = "overflow.jsonl"
_KEY_COLUMNS = ("client_order_id", "event_key", "trade_id", "id", "position_id")


class AuditQueue(AsyncResource):
    """The queue, the overflow file, health and dead letters of one audit writer."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        spool_dir: Path,
        *,
        batch_size: int = 5000,
        queue_size: int = 100_000,
        write_timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
        close_timeout_s: float = 30.0,
        spool_interval_s: float = 0.05,
        account: str | None = None,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self._account = account
        self._spool = Spool(self.spool_dir)
        self._batch_size = batch_size
        self._queue_size = queue_size
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._close_timeout_s = close_timeout_s
        self._spool_interval_s = spool_interval_s

        # Records and their record() times, side by side: appending a record allocates
        # no tuple, so record() never triggers a garbage collection pass by itself.
        self._queue: deque[AuditRecord] = deque()
        self._stamps: deque[float] = deque()
        self._overflow: IO[bytes] | None = None
        self._overflow_count = 0
        self._overflow_bytes = 0
        self._emergency: list[AuditRecord] = []
        self._inflight: list[AuditRecord] | None = None
        self._spool_write: asyncio.Future[int] | None = None

        self._init_delivery(pool, write_timeout_s, connect_timeout_s)

        self._recorded = 0
        self._settled = 0
        self._lags: deque[float] = deque(maxlen=1024)
        # Told of each committed batch's lag, in seconds: the metrics' histogram.
        self.on_lag: Callable[[float], None] | None = None
        self.written = 0
        """Records committed to the database (replayed ones included)."""
        self.dead_letters = 0
        """Records the database refused for good, now in ``dead-letter.jsonl``."""
        self.last_error: str | None = None
        """The last reason a write failed (database unreachable, refused row, ...)."""
        self.lost = 0
        """Records shed while degraded with memory full (neither database nor disk)."""
        self._shedding = False
        self._state = TrailState(self.spool_dir)
        self._dead = DeadLetterCounter(self.spool_dir)

    def _init_delivery(
        self, pool: asyncpg.Pool, write_timeout_s: float, connect_timeout_s: float
    ) -> None:
        """The background task's machinery: its wake-ups, the batch writer, the back-off."""
        self._wake = asyncio.Event()
        self._closing_event = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._db = BatchWriter(
            pool,
            on_refused=self._dead_letter,
            write_timeout_s=write_timeout_s,
            connect_timeout_s=connect_timeout_s,
        )
        self._closing = False
        self._closed = False
        self._next_attempt = 0.0
        self._backoff_s = self._retry_min_s
        self._replay_from: dict[Path, int] = {}

    def record(self, rec: AuditRecord) -> None:
        """Queue ``rec`` for writing. O(1); never awaits, never blocks on I/O, never raises."""
        try:
            self._recorded += 1
            if self._overflow is None and len(self._queue) < self._queue_size and not self._closed:
                self._queue.append(rec)
                self._stamps.append(time.monotonic())
                self._wake.set()
                return
            self._spill(rec)
        except Exception as exc:  # the caller's trade must not fail for the audit's sake
            self._emergency.append(rec)
            self.last_error = f"record: {type(exc).__name__}: {exc}"

    @property
    def degraded(self) -> bool:
        """True while records can be kept neither in the database nor in the spool (or the
        database refuses every row of a table): no new risk may be taken."""
        return self._state.degraded

    @property
    def degraded_reason(self) -> str | None:
        return self._state.reason

    @property
    def dead_letter_count(self) -> int:
        """Records in ``dead-letter.jsonl``, waiting for ``main.py audit replay``."""
        return self._dead.summary().count

    @property
    def dead_letter_oldest_age_s(self) -> float | None:
        """Seconds since the oldest waiting dead letter was refused (None: there are none)."""
        return self._dead.summary().oldest_age_s

    def _set_state(self, **change: str | None) -> None:
        if not self._state.set(**change):
            return
        self._shedding = False
        if self._state.degraded:
            log.critical("audit_degraded", reason=self._state.reason)
            self._record_own(
                event_record(
                    "audit_degraded",
                    f"audit trail unavailable, no new risk taken: {self._state.reason}",
                    severity=Severity.CRITICAL,
                    detail={"reason": self._state.reason},
                )
            )
        else:
            log.warning("audit_recovered", lost=self.lost)
            self._record_own(
                event_record(
                    "audit_recovered",
                    "audit trail kept again; new entries and orders accepted",
                    severity=Severity.WARNING,
                    detail={"lost": self.lost},
                )
            )

    def _record_own(self, rec: AuditRecord) -> None:
        """The writer's own record of a state change: queued even when memory is full
        (one per change, so memory stays bounded), never shed."""
        self._recorded += 1
        self._queue.append(rec)
        self._stamps.append(time.monotonic())
        self._wake.set()

    @property
    def queue_depth(self) -> int:
        """Records not yet written or spooled: queued in memory, in a batch being written
        (a stalled write holds up to two batches), or in the overflow file."""
        inflight = len(self._inflight) if self._inflight else 0
        return len(self._queue) + inflight + self._overflow_count + len(self._emergency)

    @property
    def spool_bytes(self) -> int:
        """Bytes waiting on disk for the database (spool segments and overflow file)."""
        return self._spool.size_bytes + self._overflow_bytes

    @property
    def lag_p99_s(self) -> float:
        """p99 over recent batches of the time from ``record()`` to commit (oldest row)."""
        if not self._lags:
            return 0.0
        ordered = sorted(self._lags)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    @property
    def lag_max_s(self) -> float:
        return max(self._lags, default=0.0)

    def _take(self) -> tuple[list[AuditRecord], float]:
        """Up to a batch from the head of the queue, and when its oldest was recorded."""
        queue, stamps = self._queue, self._stamps
        n = min(self._batch_size, len(queue))
        oldest = stamps[0]
        records = [queue.popleft() for _ in range(n)]
        for _ in range(n):
            stamps.popleft()
        return records, oldest

    def _put_back(self, records: list[AuditRecord], stamp: float) -> None:
        """Return records to the head of the queue, oldest first."""
        self._queue.extendleft(reversed(records))
        self._stamps.extendleft([stamp] * len(records))

    def _spill(self, rec: AuditRecord) -> None:
        """The memory queue is full (or closed): append to the overflow file, in order.

        Not while the disk refuses records: memory is full and the disk is too, so the
        record is shed (counted, logged): memory stays bounded."""
        if self._state.disk is not None and not self._closed:
            self._shed(rec)
            return
        try:
            line = encode_record(rec)
        except Exception as exc:
            self._dead_letter(rec, exc)
            return
        try:
            if self._closed:
                # No writer any more: append for the next one to adopt at its start.
                with (self.spool_dir / OVERFLOW_FILE).open("ab") as late:
                    late.write(line)
                    os.fsync(late.fileno())
                log.warning("audit_record_after_close", kind=str(rec.kind))
                return
            if self._overflow is None:
                self._overflow = (self.spool_dir / OVERFLOW_FILE).open("ab", buffering=1 << 20)
                log.warning("audit_queue_overflow", queue_size=self._queue_size)
            self._overflow.write(line)
            self._overflow_count += 1
            self._overflow_bytes += len(line)
        except OSError as exc:
            self.last_error = f"overflow: {exc}"
            if len(self._emergency) < self._queue_size:
                self._emergency.append(rec)
            else:
                self._shed(rec)

    def _shed(self, rec: AuditRecord) -> None:
        if not self._shedding:  # once per episode; the count is in lost and the events
            self._shedding = True
            log.critical("audit_records_shed", reason=self._state.reason, kind=str(rec.kind))
        self.lost += 1
        self._settle(1)  # given up on: flush() and drain() do not wait for it

    def _dead_letter(self, rec: AuditRecord, exc: BaseException) -> None:
        self.dead_letters += 1
        self.last_error = f"refused: {type(exc).__name__}: {exc}"
        row = rec.row if isinstance(rec, AuditRecord) else {}
        key = {c: row[c] for c in _KEY_COLUMNS if c in row and row[c] is not None}
        log.error(
            "audit_record_refused",
            kind=getattr(rec, "kind", None),
            error=f"{type(exc).__name__}: {exc}",
            **{k: str(v) for k, v in key.items()},
        )
        try:
            append_dead_letters(self.spool_dir, [dead_line(rec, exc)])
        except OSError as err:
            log.critical("audit_dead_letter_write_failed", error=str(err), record=repr(rec))
        if row.get("kind") != "audit_record_refused":  # never about itself: no loop
            self._refused_event(getattr(rec, "kind", None), key, exc)

    def _refused_event(self, kind: Any, key: dict[str, Any], exc: BaseException) -> None:
        """Say in ``monitoring.events`` that a record was dead-lettered."""
        self.record(refused_event(kind, key, exc, self._account))

    def _note_lag(self, seconds: float) -> None:
        """A batch committed ``seconds`` after its oldest record was recorded."""
        self._lags.append(seconds)
        if self.on_lag is not None:
            self.on_lag(seconds)

    def _settle(self, n: int) -> None:
        self._settled += n
        self._progress.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when closing."""
        if seconds <= 0 or self._closing:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing_event.wait(), seconds)

    async def _wait(self, done: Any, timeout_s: float | None) -> None:
        if self._task is None:
            raise RuntimeError("the audit writer is not started")
        async with asyncio.timeout(timeout_s):
            while not done():
                if self._task.done():
                    raise RuntimeError("the audit writer has stopped")
                self._progress.clear()
                await self._progress.wait()
