"""The non-blocking audit writer: trading code records, a background task writes.

Trading code calls :meth:`AuditWriter.record`, which appends to an in-memory queue and
returns (no await, no I/O, no exception: failure mode 11). One background task drains
the queue in batches (database/batch_writer.py): one transaction per batch, positions
first, new rows ``COPY``'d straight in and the others merged by their idempotency key,
two batches in flight so that one is sent while the other commits.

Every record travels through one logical FIFO, so order is kept whatever happens::

    spool segments (disk)  <  batch in flight  <  memory queue  <  overflow file (disk)

- Database unreachable (refused, reset, timed out): the batch goes to the spool
  (database/spool.py, fsync'd), and so does everything after it while the spool is
  non-empty. The spool is replayed, in order, when the database answers again; new
  records wait behind it.
- Memory queue full: ``record`` appends the record to ``overflow.jsonl`` instead (never
  blocks, never drops); once the queue ahead of it has drained, the overflow file
  becomes the newest spool segment.
- A record the database refuses for good (a constraint or data error) does not wedge
  the writer: the batch is written again alone, split until the bad rows are alone;
  every good row is written and each bad one goes to ``dead-letter.jsonl`` with the
  error, logged, and an ``audit_record_refused`` event (database/dead_letters.py;
  ``main.py audit replay`` writes them again once the cause is fixed).
- The database refuses every row of a table (its schema changed) or the spool's disk
  refuses records the database does not take: the trail is *degraded*
  (database/audit_state.py). Records are held (in the spool, or in memory up to
  ``queue_size``; past that, new ones are shed, counted in :attr:`AuditWriter.lost`, and
  logged), the daemon takes no new risk, and the state ends by itself when the database
  or the disk takes records again.

Limits: a record still in memory is lost if the process dies (``kill -9``) before its
batch is written or spooled (normally milliseconds); the spool survives a crash. Call
:meth:`record` from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

import asyncpg

from config.logging import get_logger
from core.records import AuditRecord, Severity, event_record
from core.resource import AsyncResource
from database.audit_state import TrailState
from database.batch_writer import BatchWriter, Job, SchemaRefusal
from database.codec import decode_record, encode_record
from database.dead_letters import (
    DeadLetterCounter,
    append_dead_letters,
    dead_line,
    refused_event,
)
from database.spool import Spool, read_lines

if TYPE_CHECKING:
    from config.settings import Settings

log = get_logger("database.audit")

OVERFLOW_FILE = "overflow.jsonl"
_KEY_COLUMNS = ("client_order_id", "event_key", "trade_id", "id", "position_id")


class AuditWriter(AsyncResource):
    """An :class:`~core.records.AuditSink` writing to PostgreSQL, spooling when it is away.

    Use as ``async with AuditWriter(pool, spool_dir) as audit:`` (or :meth:`start` /
    :meth:`aclose`). It holds two pool connections while the database is reachable.
    """

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
        self._backoff_s = retry_min_s
        self._replay_from: dict[Path, int] = {}

        self._recorded = 0
        self._settled = 0
        self._lags: deque[float] = deque(maxlen=1024)
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

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: Settings, **kw: Any) -> AuditWriter:
        """A writer with the batch / queue sizes of ``settings`` and a spool per account."""
        kw.setdefault("batch_size", settings.audit_batch_size)
        kw.setdefault("queue_size", settings.audit_queue_size)
        kw.setdefault("account", settings.account)
        return cls(pool, settings.spool_dir / settings.account, **kw)

    # -- the sink --------------------------------------------------------------------
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

    # -- health ----------------------------------------------------------------------
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

    # -- metrics ---------------------------------------------------------------------
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

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Open the spool (replaying what a past run left) and start the background task."""
        if self._task is not None:
            return
        self._spool.open()
        self._state.open()
        leftover = self.spool_dir / OVERFLOW_FILE
        if leftover.exists() and leftover.stat().st_size:
            self._spool.adopt(leftover)  # newest of all it holds: it goes last
        if self._spool:
            log.warning(
                "audit_spool_found",
                segments=len(self._spool.segments()),
                bytes=self._spool.size_bytes,
            )
        self._task = asyncio.create_task(self._run_forever(), name="audit-writer")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record given so far is committed or fsync'd in the spool."""
        target = self._recorded
        await self._wait(lambda: self._settled >= target, timeout_s)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every record given so far is in the database (spool replayed)."""
        target = self._recorded
        await self._wait(
            lambda: (
                self._settled >= target
                and not self._spool
                and not self._queue
                and self._overflow is None
                and not self._emergency
            ),
            timeout_s,
        )

    async def aclose(self) -> None:
        """Write (or spool) everything, then stop. Idempotent.

        Bounded by ``close_timeout_s``: past it, whatever is still in memory is spooled.
        """
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._closing_event.set()
        task = self._task
        try:
            if task is None:
                self._spool.open()  # never started: what was recorded still goes to disk
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(task), self._close_timeout_s)
                except TimeoutError:
                    log.error("audit_close_timeout", queue_depth=self.queue_depth)
        finally:
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
            write = self._spool_write
            if write is not None:
                if not write.done():
                    await asyncio.wait({write})
                if not write.cancelled() and write.exception() is not None:
                    log.critical("audit_records_lost", error=str(write.exception()))
            self._closed = True
            self._spool_everything_now()
            await self._db.release()
            self._spool.close()
            self._state.close()
            if self._spool:
                log.warning("audit_spool_left", bytes=self._spool.size_bytes)

    # -- the background task ---------------------------------------------------------
    async def _run_forever(self) -> None:
        while True:
            try:
                await self._run()
                return
            except Exception as exc:  # a bug must not stop the audit trail
                self.last_error = f"writer: {type(exc).__name__}: {exc}"
                log.exception("audit_writer_crashed")
                if self._inflight:
                    # The batch in hand is neither written nor spooled: retry it first.
                    self._put_back(self._inflight, time.monotonic())
                    self._inflight = None
                await self._db.release()
                await self._pause(self._retry_max_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue and (self._overflow is not None or self._emergency):
                self._adopt_overflow()
            if self._spool:
                due = self._closing or loop.time() >= self._next_attempt
                if due and await self._replay():
                    self._backoff_s = self._retry_min_s
                    continue
                if due:
                    self._next_attempt = loop.time() + self._backoff_s
                    self._backoff_s = min(self._backoff_s * 2, self._retry_max_s)
                # Still away: keep memory small and records durable, behind the spool.
                await self._queue_to_spool()
                if not self._queue and (self._overflow is not None or self._emergency):
                    self._adopt_overflow()
                if self._closing:
                    return
                pause = min(self._spool_interval_s, max(0.0, self._next_attempt - loop.time()))
                await self._pause(pause)
                continue
            if self._queue:
                await self._deliver_queue()
                continue
            if self._closing:
                return
            self._wake.clear()
            if not self._queue and self._overflow is None and not self._emergency:
                await self._wake.wait()

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

    async def _deliver_queue(self) -> None:
        """Write the queue in batches, two in flight: while one batch commits (the server
        checks its foreign keys), the next is sent on the other connection.

        A batch starts its statements only once the one before has finished sending its
        own, so it can wait on that one's rows but never the reverse: no deadlock. Commits
        happen in order. When a batch fails, the batch after it rolls back too, and both
        are written again one at a time (isolating bad rows) or spooled, in order.
        """
        jobs: deque[Job] = deque()
        try:
            while True:
                # Take the next batch at once if a full one is waiting (grouping it while
                # the server works on the one before), else once the one before has sent
                # its statements, so that what arrives meanwhile rides along.
                room = len(jobs) < 2 and not self._spool and not (jobs and jobs[-1].failed)
                full = len(self._queue) >= self._batch_size
                if room and self._queue and (full or not jobs or jobs[-1].ready):
                    records, oldest = self._take()
                    jobs.append(await self._db.launch(records, oldest, jobs[-1] if jobs else None))
                    self._inflight = [rec for job in jobs for rec in job.records]
                    continue
                if not jobs:
                    return
                head = jobs[0].task
                helper: asyncio.Future[Any] | None = None
                if len(jobs) < 2 and not self._spool and not head.done():
                    if not jobs[-1].ready:
                        helper = asyncio.ensure_future(jobs[-1].sent.wait())
                    else:
                        self._wake.clear()
                        if not self._queue:
                            helper = asyncio.ensure_future(self._wake.wait())
                waits: set[asyncio.Future[Any]] = {head} if helper is None else {head, helper}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if helper is not None:
                    helper.cancel()
                if not head.done():
                    continue
                job = jobs.popleft()
                if job.ok:
                    if self._state.degraded:
                        self._set_state(disk=None, schema=None)
                    self.written += len(job.records)
                    self._lags.append(time.monotonic() - job.oldest)
                    self._settle(len(job.records))
                else:
                    # The batches after a failed one roll back: redo them all in order.
                    failed = [job, *jobs]
                    jobs.clear()
                    await asyncio.wait({j.task for j in failed})
                    await self._db.release()
                    await self._deliver_one_by_one([(j.records, j.oldest) for j in failed])
                self._inflight = [rec for j in jobs for rec in j.records] or None
        finally:
            for job in jobs:
                job.task.cancel()
            if jobs:
                await asyncio.wait({job.task for job in jobs})
                for job in jobs:
                    _ = job.ok  # retrieve the outcome: no "never retrieved" noise

    async def _deliver_one_by_one(self, batches: list[tuple[list[AuditRecord], float]]) -> None:
        """The slow, careful path: each batch alone (bad rows isolated), or to the spool
        once the database is away (and then every later batch too, to keep the order)."""
        for i, (records, oldest) in enumerate(batches):
            self._inflight = [rec for batch, _ in batches[i:] for rec in batch]
            if not self._spool and await self._write(records):
                self._lags.append(time.monotonic() - oldest)
                self._settle(len(records))
                continue
            self._next_attempt = asyncio.get_running_loop().time() + self._backoff_s
            if not await self._to_spool(records):
                # Neither the database nor the disk took them: keep them, oldest first.
                for batch, stamp in reversed(batches[i:]):
                    self._put_back(batch, stamp)
                self._inflight = None
                await self._pause(self._retry_max_s)
                return
            self._settle(len(records))
        self._inflight = None

    # -- database --------------------------------------------------------------------
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

    # -- spool -----------------------------------------------------------------------
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

    # -- dead letters, helpers -------------------------------------------------------
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


def _read_segment(path: Path, start: int) -> list[tuple[int, bytes, bool]]:
    return list(read_lines(path, start))
