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
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Self

import asyncpg

from config.logging import get_logger
from core.records import AuditRecord
from database.audit_queue import OVERFLOW_FILE
from database.audit_spool import AuditSpool
from database.batch_writer import Job

if TYPE_CHECKING:
    from config.settings import Settings

log = get_logger("database.audit")


class AuditWriter(AuditSpool):
    """An :class:`~core.records.AuditSink` writing to PostgreSQL, spooling when it is away.

    Use as ``async with AuditWriter(pool, spool_dir) as audit:`` (or :meth:`start` /
    :meth:`aclose`). It holds two pool connections while the database is reachable.
    """

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: Settings, **kw: Any) -> AuditWriter:
        """A writer with the batch / queue sizes of ``settings`` and a spool per account."""
        kw.setdefault("batch_size", settings.audit_batch_size)
        kw.setdefault("queue_size", settings.audit_queue_size)
        kw.setdefault("account", settings.account)
        return cls(pool, settings.spool_dir / settings.account, **kw)

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
                helper = self._next_chance(jobs)
                waits: set[asyncio.Future[Any]] = {head} if helper is None else {head, helper}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if helper is not None:
                    helper.cancel()
                if not head.done():
                    continue
                await self._settle_head(jobs)
        finally:
            for job in jobs:
                job.task.cancel()
            if jobs:
                await asyncio.wait({job.task for job in jobs})
                for job in jobs:
                    _ = job.ok  # retrieve the outcome: no "never retrieved" noise

    def _next_chance(self, jobs: deque[Job]) -> asyncio.Future[Any] | None:
        """What else may let a second batch start before the oldest one is done: the
        newest batch finishing sending its statements, or new records arriving."""
        if len(jobs) >= 2 or self._spool or jobs[0].task.done():
            return None
        if not jobs[-1].ready:
            return asyncio.ensure_future(jobs[-1].sent.wait())
        self._wake.clear()
        if not self._queue:
            return asyncio.ensure_future(self._wake.wait())
        return None

    async def _settle_head(self, jobs: deque[Job]) -> None:
        """The oldest batch in flight is done: count it written, or, when it failed, redo
        it and every batch after it (they rolled back too) one at a time, in order."""
        job = jobs.popleft()
        if job.ok:
            if self._state.degraded:
                self._set_state(disk=None, schema=None)
            self.written += len(job.records)
            self._note_lag(time.monotonic() - job.oldest)
            self._settle(len(job.records))
        else:
            # The batches after a failed one roll back: redo them all in order.
            failed = [job, *jobs]
            jobs.clear()
            await asyncio.wait({j.task for j in failed})
            await self._db.release()
            await self._deliver_one_by_one([(j.records, j.oldest) for j in failed])
        self._inflight = [rec for j in jobs for rec in j.records] or None

    async def _deliver_one_by_one(self, batches: list[tuple[list[AuditRecord], float]]) -> None:
        """The slow, careful path: each batch alone (bad rows isolated), or to the spool
        once the database is away (and then every later batch too, to keep the order)."""
        for i, (records, oldest) in enumerate(batches):
            self._inflight = [rec for batch, _ in batches[i:] for rec in batch]
            if not self._spool and await self._write(records):
                self._note_lag(time.monotonic() - oldest)
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
