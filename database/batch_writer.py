"""The database half of the audit writer: batches of records into their tables.

:class:`BatchWriter` owns two connections of the pool and writes each batch in one
transaction: a table's rows, when they are few (``MERGE_MAX_ROWS``), in one statement
that takes them as one JSON text (the common small batch, where round trips are the cost);
more, by ``COPY`` (rows believed new straight in, the others merged through the
session's staging tables; database/audit_tables.py). Two ways:

- :meth:`BatchWriter.launch`: the fast path, two batches in flight. While one batch
  commits (the server checks its foreign keys), the next is sent on the other
  connection. A batch starts its statements only once the one before has sent its own,
  so it may wait on that one's rows but never the reverse (no deadlock), and it commits
  only after that one committed (order). If a batch fails, the one after it rolls back.
- :meth:`BatchWriter.write`: the careful path, one batch alone. A batch the database
  refuses (a constraint or data error) is split in halves until each bad record is
  alone; those go to ``on_refused``, every other row is written. A refusal that no row
  could escape (:func:`schema_refusal`: the table's schema changed) is not split: the
  write fails as if the database were away, and the records are kept.

Within a batch, a table's rows already known to this writer (updates) are merged before
its new rows are inserted. Order matters for positions: the close of one position (an
update) and the open of the next on the same market (a new row) often share a batch, and
the partial unique index ``positions_one_open_per_market`` refuses the new open while
the old row still says open. Updates first is record order for that pair: a position
is always closed before the next one on its market is opened.

Every batch task's outcome is retrieved when it ends, whoever waits for it, so a batch
that rolled back because of the one before never surfaces as "Task exception was never
retrieved".
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from config.logging import get_logger
from core.records import AuditRecord, RecordKind
from database.audit_tables import (
    MERGE_MAX_ROWS,
    TABLES,
    Rows,
    TableSpec,
    group_rows,
    is_poison,
    merge_statements,
    prepare_staging,
    write_fresh,
    write_merged,
    write_rank,
    write_staged,
)

log = get_logger("database.audit")

Groups = list[tuple[TableSpec, Rows, Rows]]


class Aborted(Exception):
    """A batch rolled back because the one before it failed (it is written again)."""


class SchemaRefusal(Exception):
    """The database refuses every row of a table, whatever its values: its schema no
    longer matches the rows this daemon writes (a new NOT NULL column it does not fill, a
    column or table gone). Not one bad record: nothing is dead-lettered, the records are
    held (spooled) until the schema takes them again."""


# undefined_column, undefined_table, datatype_mismatch: the statement, not a value.
_SCHEMA_STATES = frozenset({"42703", "42P01", "42804"})
_WRITTEN = {spec.table.split(".", 1)[1]: frozenset(spec.columns) for spec in TABLES.values()}
# A partitioned table's errors name the partition (migration 0012): trades_p202612,
# trades_default. The partition's columns are its table's.
_PARTITION = re.compile(r"_(?:p\d{6}|p\d{8}|default)$")


def schema_refusal(exc: BaseException) -> str | None:
    """Why ``exc`` refuses every row of its table, or None when it may be one row's fault.

    A NOT NULL violation on a column the writer never sends is the schema's doing: no
    row this daemon builds can satisfy it.
    """
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    state = getattr(exc, "sqlstate", None) or ""
    table = _PARTITION.sub("", getattr(exc, "table_name", None) or "")
    if state in _SCHEMA_STATES:
        return f"schema mismatch: {exc}"
    if state == "23502":
        column = getattr(exc, "column_name", None)
        written = _WRITTEN.get(table)
        if written is not None and column is not None and column not in written:
            return (
                f"schema mismatch: monitoring.{table}.{column} is NOT NULL and this daemon"
                " does not write it"
            )
    return None


def _retrieve(task: asyncio.Future[None]) -> None:
    """Mark a finished batch task's exception as seen (its Job reports the outcome)."""
    if not task.cancelled():
        task.exception()


@dataclass(slots=True)
class Job:
    """A batch in flight: its records, when its oldest was recorded, and its task.

    ``sent`` is set once the batch's statements are done (or it failed).
    """

    records: list[AuditRecord]
    oldest: float
    task: asyncio.Future[None]
    sent: asyncio.Event

    @classmethod
    def not_started(cls, records: list[AuditRecord], oldest: float) -> Job:
        """A batch that could not even start: it takes the careful path, in its turn."""
        task: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task.set_exception(Aborted("not started"))
        task.exception()  # retrieved: the caller reads the outcome through ``ok``
        sent = asyncio.Event()
        sent.set()
        return cls(records, oldest, task, sent)

    @property
    def ok(self) -> bool:
        """Committed."""
        return self.task.done() and not self.task.cancelled() and self.task.exception() is None

    @property
    def failed(self) -> bool:
        return self.task.done() and not self.ok

    @property
    def ready(self) -> bool:
        """Its statements are sent and it has not failed: the next batch may go."""
        return self.sent.is_set() and not self.failed


class BatchWriter:
    """Writes batches over two pool connections; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        on_refused: Callable[[AuditRecord, BaseException], None],
        write_timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        known_keys_cap: int = 500_000,
    ) -> None:
        self._pool = pool
        self._on_refused = on_refused
        self._write_timeout_s = write_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._conns: list[asyncpg.Connection | None] = [None, None]
        self._slot = 0
        # Keys of versioned rows this writer has sent: a hint for COPY versus merge.
        self._known: dict[RecordKind, set[Any]] = {}
        self._known_cap = known_keys_cap
        # The one-statement writes of small groups, typed from the tables (see _connection).
        self._merges: dict[RecordKind, str] | None = None
        self.error: BaseException | None = None
        """Why the last write found the database unavailable."""

    # -- the fast path ---------------------------------------------------------------
    async def launch(self, records: list[AuditRecord], oldest: float, prev: Job | None) -> Job:
        """Start writing ``records``, to commit after ``prev``."""
        try:
            groups = group_rows(records, self._known, self._known_cap)
            conn = await self._connection(self._slot)
        except Exception as exc:  # a bad record, or no connection
            self.error = exc
            return Job.not_started(records, oldest)
        self._slot ^= 1
        sent = asyncio.Event()
        task = asyncio.ensure_future(self._job(conn, groups, prev, sent))
        task.add_done_callback(_retrieve)
        return Job(records, oldest, task, sent)

    async def _job(
        self, conn: asyncpg.Connection, groups: Groups, prev: Job | None, sent: asyncio.Event
    ) -> None:
        timeout_s = self._write_timeout_s
        try:
            if prev is not None:
                await prev.sent.wait()
                if prev.failed:
                    raise Aborted("the batch before this one failed")
            tx = conn.transaction()
            await tx.start()
            try:
                await self._statements(conn, groups)
                sent.set()
                if prev is not None:
                    await asyncio.wait({prev.task})
                    if prev.failed:
                        raise Aborted("the batch before this one failed")
                await asyncio.wait_for(tx.commit(), timeout_s)
            except BaseException as exc:
                if not isinstance(exc, Aborted):
                    self.error = exc
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
        finally:
            sent.set()

    # -- the careful path ------------------------------------------------------------
    async def write(self, records: Sequence[AuditRecord]) -> bool:
        """Commit ``records``, refused ones isolated; False if the database is away."""
        try:
            conn = await self._connection()
            await self._write_part(conn, records)
        except Exception as exc:
            self.error = exc
            await self.release()
            return False
        return True

    async def _write_part(
        self, conn: asyncpg.Connection, records: Sequence[AuditRecord], *, ordered: bool = False
    ) -> None:
        """One transaction; if a row is refused, split until it is alone.

        Halves are cut from the records sorted in write order (positions first), so a
        row never lands in an earlier half than the position it points to.
        """
        try:
            groups = group_rows(records, self._known, self._known_cap)
            async with conn.transaction():
                await self._statements(conn, groups)
        except Exception as exc:
            if (why := schema_refusal(exc)) is not None:
                raise SchemaRefusal(why) from exc
            if not is_poison(exc):
                raise
            if len(records) == 1:
                self._on_refused(records[0], exc)
                return
            records = records if ordered else sorted(records, key=write_rank)
            middle = len(records) // 2
            await self._write_part(conn, records[:middle], ordered=True)
            await self._write_part(conn, records[middle:], ordered=True)

    async def _statements(self, conn: asyncpg.Connection, groups: Groups) -> None:
        timeout_s = self._write_timeout_s
        merges = self._merges or {}
        for spec, fresh, known in groups:
            # Updates of known rows before new rows (see the module docstring).
            merge = merges.get(spec.kind)
            if (
                merge is not None
                and len(fresh) + len(known) <= MERGE_MAX_ROWS
                and await write_merged(conn, merge, known + fresh, timeout_s)
            ):
                continue
            if known:
                await write_staged(conn, spec, known, timeout_s=timeout_s)
            if fresh:
                await write_fresh(conn, spec, fresh, timeout_s=timeout_s)

    # -- connections -----------------------------------------------------------------
    async def _connection(self, slot: int = 0) -> asyncpg.Connection:
        conn = self._conns[slot]
        if conn is None:
            conn = await self._pool.acquire(timeout=self._connect_timeout_s)
            self._conns[slot] = conn
            try:
                # COPY straight into jsonb columns needs asyncpg's binary, text-taking
                # codec rather than the pool's dict codec; the connection is terminated
                # when given back, so no other pool user ever sees this.
                for name in ("json", "jsonb"):
                    await conn.reset_type_codec(name, schema="pg_catalog")
                await asyncio.wait_for(prepare_staging(conn), self._write_timeout_s)
                self._merges = await asyncio.wait_for(merge_statements(conn), self._write_timeout_s)
            except BaseException:
                await self.release()
                raise
        return conn

    async def release(self) -> None:
        """Give both connections back (terminated). Safe to call at any time."""
        for slot, conn in enumerate(self._conns):
            self._conns[slot] = None
            if conn is None:
                continue
            # Never back into the pool as is: its codecs were changed, and after a failure
            # its state is unknown. The pool opens a fresh one when needed. A connection
            # that died has already gone back to the pool by itself: both calls may refuse.
            try:
                conn.terminate()
                await self._pool.release(conn, timeout=5)
            except (asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.debug("audit_connection_release_failed", error=type(exc).__name__)
