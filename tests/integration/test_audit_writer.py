"""The audit writer against a real PostgreSQL: exactly once, in order, never blocking."""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import statistics
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from core.models import PositionSide
from core.position_model import Position, PositionStatus
from core.records import AuditRecord, RecordKind, event_record, position_record
from database import batch_writer
from database.audit import AuditWriter
from database.audit_queue import OVERFLOW_FILE
from database.batch_writer import BatchWriter
from database.codec import encode_record
from database.spool import DEAD_LETTER_FILE, Spool, SpoolError
from tests.integration.audit_helpers import T0, position_story

EXPECTED_PER_STORY = {
    "positions": 1,
    "orders": 3,
    "order_events": 12,
    "trades": 3,
    "position_updates": 2,
    "events": 1,
}


# Events the writer records about itself (replays, dead letters, degraded state).
WRITER_EVENTS = [
    "audit_spool_replayed",
    "audit_record_refused",
    "audit_degraded",
    "audit_recovered",
]


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Rows per audit table (the writer's own spool-replay events left out)."""
    found = {
        table: await pool.fetchval(f"SELECT count(*) FROM monitoring.{table}")
        for table in EXPECTED_PER_STORY
    }
    found["events"] -= await pool.fetchval(
        "SELECT count(*) FROM monitoring.events WHERE kind = ANY($1::text[])", WRITER_EVENTS
    )
    return found


def segments(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("segment-*"))


@pytest.fixture(params=["merge", "copy"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with small groups written by one statement (the default) and again
    with every group through COPY, as groups above MERGE_MAX_ROWS are."""
    if request.param == "copy":
        monkeypatch.setattr(batch_writer, "MERGE_MAX_ROWS", 0)
    return str(request.param)


def expected(stories: int) -> dict[str, int]:
    return {table: n * stories for table, n in EXPECTED_PER_STORY.items()}


async def assert_events_in_version_order(pool: asyncpg.Pool) -> None:
    """Per order, history rows were inserted (id order) in version order."""
    wrong = await pool.fetchval(
        "SELECT count(*) FROM (SELECT version, lag(version) OVER "
        "(PARTITION BY client_order_id ORDER BY id) AS prev FROM monitoring.order_events) e "
        "WHERE prev >= version"
    )
    assert wrong == 0


async def test_mixed_records_are_written_once_and_current(
    pool: asyncpg.Pool, tmp_path: Path, write_path: str
) -> None:
    """Every kind lands in its table once; orders and positions show their newest state."""
    async with AuditWriter(pool, tmp_path) as audit:
        for pid in range(1, 21):
            for rec in position_story(pid):
                audit.record(rec)
        await audit.drain(timeout_s=30)
        assert audit.written == 20 * 33
        assert audit.lag_p99_s > 0
    assert await counts(pool) == expected(20)
    statuses = await pool.fetch("SELECT DISTINCT status, version FROM monitoring.orders")
    assert [tuple(r) for r in statuses] == [("FILLED", 5)]
    positions = await pool.fetch("SELECT DISTINCT status FROM monitoring.positions")
    assert [r["status"] for r in positions] == ["closed"]
    await assert_events_in_version_order(pool)


async def test_older_snapshot_arriving_later_changes_nothing(
    pool: asyncpg.Pool, tmp_path: Path, write_path: str
) -> None:
    """A stale order version, in a later batch or from a fresh writer, loses to the newest."""
    story = position_story(1)
    newest = story[1:].copy()
    stale = [r for r in story if r.kind is RecordKind.ORDER and r.row["version"] == 2]
    async with AuditWriter(pool, tmp_path) as audit:
        for rec in [story[0], *newest]:
            audit.record(rec)
        await audit.drain(timeout_s=10)
        for rec in stale:
            audit.record(rec)
        await audit.drain(timeout_s=10)
    async with AuditWriter(pool, tmp_path) as fresh_writer:  # does not know the keys
        for rec in stale:
            fresh_writer.record(rec)
        await fresh_writer.drain(timeout_s=10)
    versions = await pool.fetch("SELECT DISTINCT version FROM monitoring.orders")
    assert [r["version"] for r in versions] == [5]


async def test_poison_records_go_to_dead_letter_and_the_rest_is_written(
    pool: asyncpg.Pool, tmp_path: Path, write_path: str
) -> None:
    """Rows the database refuses are isolated with their error; all others are written."""
    story = position_story(1)
    order_row = dict(next(r for r in story if r.kind is RecordKind.ORDER).row)
    bad_status = AuditRecord(
        RecordKind.ORDER, {**order_row, "client_order_id": "bad-1", "status": "NOT_A_STATUS"}
    )
    orphan = AuditRecord(
        RecordKind.ORDER, {**order_row, "client_order_id": "bad-2", "position_id": 999_999}
    )
    unencodable = AuditRecord(
        RecordKind.ORDER, {**order_row, "client_order_id": "bad-3", "size": "not a number"}
    )
    records = [*story[:10], bad_status, orphan, *story[10:20], unencodable, *story[20:]]
    async with AuditWriter(pool, tmp_path) as audit:
        for rec in records:
            audit.record(rec)
        await audit.drain(timeout_s=30)
        assert audit.dead_letters == 3
    assert await counts(pool) == expected(1)
    lines = (tmp_path / DEAD_LETTER_FILE).read_text().splitlines()
    dead = [json.loads(line) for line in lines]
    assert sorted(d["r"]["client_order_id"] for d in dead) == ["bad-1", "bad-2", "bad-3"]
    errors = {d["r"]["client_order_id"]: d["error"] for d in dead}
    assert "CheckViolation" in errors["bad-1"]
    assert "ForeignKeyViolation" in errors["bad-2"]
    refused = await pool.fetch(
        "SELECT detail->>'client_order_id' AS coid FROM monitoring.events "
        "WHERE kind = 'audit_record_refused'"
    )
    assert sorted(r["coid"] for r in refused) == ["bad-1", "bad-2", "bad-3"]


async def test_poison_in_a_busy_pipeline_is_isolated(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """With small batches (two in flight at once), bad rows scattered through the stream
    are dead-lettered and every good row is still written once, in order."""
    records: list[AuditRecord] = []
    bad = 0
    for pid in range(1, 41):
        story = position_story(pid)
        if pid % 7 == 0:
            row = dict(story[1].row)
            row.update(client_order_id=f"bad-{pid}", status="NOT_A_STATUS")
            story.insert(5, AuditRecord(RecordKind.ORDER, row))
            bad += 1
        records += story
    async with AuditWriter(pool, tmp_path, batch_size=10) as audit:
        for i, rec in enumerate(records):
            audit.record(rec)
            if i % 25 == 0:
                await asyncio.sleep(0)
        await audit.drain(timeout_s=60)
        assert audit.dead_letters == bad
        # Every good record, and one audit_record_refused event per bad one.
        assert audit.written == (len(records) - bad) + bad
    assert await counts(pool) == expected(40)
    await assert_events_in_version_order(pool)


async def test_aclose_flushes_everything(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Records given right before aclose() are in the database when it returns."""
    audit = AuditWriter(pool, tmp_path)
    await audit.start()
    for pid in range(1, 6):
        for rec in position_story(pid):
            audit.record(rec)
    await audit.aclose()
    await audit.aclose()  # idempotent
    assert await counts(pool) == expected(5)
    assert not segments(tmp_path)


async def test_spool_replay_twice_leaves_one_copy(
    pool: asyncpg.Pool, tmp_path: Path, write_path: str
) -> None:
    """A spool left on disk is replayed at start; replaying the same records again (a
    crash mid-replay) adds nothing."""
    records = [rec for pid in (1, 2, 3) for rec in position_story(pid)]
    for _ in range(2):
        spool = Spool(tmp_path)
        spool.open()
        spool.append(encode_record(rec) for rec in records)
        spool.close()
        async with AuditWriter(pool, tmp_path) as audit:
            await audit.drain(timeout_s=30)
            assert audit.written >= len(records)
        assert not segments(tmp_path)
        assert await counts(pool) == expected(3)
    await assert_events_in_version_order(pool)
    replayed = await pool.fetchval(
        "SELECT count(*) FROM monitoring.events WHERE kind = 'audit_spool_replayed'"
    )
    assert replayed == 2


def _context_switches() -> tuple[int, int]:
    """(voluntary, involuntary) context switches of this thread so far."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_nvcsw, usage.ru_nivcsw


async def test_record_never_waits_for_a_locked_table(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """With monitoring.orders locked ACCESS EXCLUSIVE by another session, 10,000 record()
    calls each return at once and never wait on anything; the rows land after the lock."""
    records = [rec for pid in range(1, 304) for rec in position_story(pid)][:10_000]
    durations: list[int] = []
    own_time: list[int] = []  # calls the OS did not preempt: the time is record()'s own
    waits = 0
    async with AuditWriter(pool, tmp_path) as audit:
        audit.record(records[0])
        await audit.drain(timeout_s=10)  # connected and warm: the lock will bite a write
        locker = await pool.acquire()
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE monitoring.orders IN ACCESS EXCLUSIVE MODE")
        try:
            for i, rec in enumerate(records[1:], start=1):
                voluntary, involuntary = _context_switches()
                t0 = time.perf_counter_ns()
                audit.record(rec)
                elapsed = time.perf_counter_ns() - t0
                voluntary_after, involuntary_after = _context_switches()
                durations.append(elapsed)
                # A voluntary switch means the thread blocked (I/O, a lock, a sleep).
                waits += voluntary_after != voluntary
                if involuntary_after == involuntary:
                    own_time.append(elapsed)
                if i % 100 == 0:
                    await asyncio.sleep(0)  # the writer runs, and blocks on the lock
            await asyncio.sleep(0.2)
            assert audit.queue_depth > 0  # it really was stuck behind the lock
        finally:
            await lock.rollback()
            await pool.release(locker)
        await audit.drain(timeout_s=60)
    durations.sort()
    p99_us = durations[int(len(durations) * 0.99)] / 1000
    print(
        f"record() under lock: p50={statistics.median(durations) / 1000:.2f}us "
        f"p99={p99_us:.2f}us max={durations[-1] / 1e6:.3f}ms "
        f"max_unpreempted={max(own_time) / 1e6:.3f}ms blocked_calls={waits}"
    )
    assert waits == 0
    assert p99_us < 50
    assert max(own_time) < 5_000_000  # 5 ms
    total = await pool.fetchval("SELECT count(*) FROM monitoring.order_events")
    assert total == sum(1 for r in records if r.kind is RecordKind.ORDER_EVENT)


async def test_full_queue_spills_to_disk_and_keeps_order(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """With the table locked and a tiny queue, records overflow to disk (no blocking, no
    loss) and still reach the database in order."""
    records = [rec for pid in range(1, 31) for rec in position_story(pid)]
    async with AuditWriter(pool, tmp_path, queue_size=50, batch_size=40) as audit:
        audit.record(records[0])
        await audit.drain(timeout_s=10)
        locker = await pool.acquire()
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE monitoring.orders IN ACCESS EXCLUSIVE MODE")
        try:
            for rec in records[1:]:
                audit.record(rec)
                await asyncio.sleep(0)
            assert (tmp_path / OVERFLOW_FILE).exists()
            assert audit.spool_bytes > 0
        finally:
            await lock.rollback()
            await pool.release(locker)
        await audit.drain(timeout_s=60)
    assert await counts(pool) == expected(30)
    await assert_events_in_version_order(pool)
    assert not (tmp_path / OVERFLOW_FILE).exists()


async def test_record_after_close_is_kept_for_the_next_writer(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A record arriving after aclose() is kept on disk and written by the next writer."""
    story = position_story(1)
    audit = AuditWriter(pool, tmp_path)
    await audit.start()
    await audit.aclose()
    for rec in story:
        audit.record(rec)
    assert (tmp_path / OVERFLOW_FILE).exists()
    async with AuditWriter(pool, tmp_path) as again:
        await again.drain(timeout_s=10)
    assert await counts(pool) == expected(1)


async def test_record_before_start_is_written_after(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """record() works before start(): the queue holds the rows until the task runs."""
    audit = AuditWriter(pool, tmp_path)
    for rec in position_story(7):
        audit.record(rec)
    assert audit.queue_depth == 33
    async with audit:
        await audit.flush(timeout_s=10)
    assert await counts(pool) == expected(1)


async def test_drain_without_start_is_an_error(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Waiting on a writer that was never started fails instead of hanging."""
    with pytest.raises(RuntimeError):
        await AuditWriter(pool, tmp_path).drain(timeout_s=1)


async def test_a_second_writer_on_one_spool_is_refused(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Two writers never share a spool directory."""
    async with AuditWriter(pool, tmp_path):
        with pytest.raises(SpoolError):
            await AuditWriter(pool, tmp_path).start()


def market_position(pid: int, status: PositionStatus, version: int) -> AuditRecord:
    """Position ``pid`` on one shared market, as a snapshot of the given version."""
    return position_record(
        Position(
            pid,
            "main",
            "paper",
            "BTC/USDT:USDT",
            PositionSide.LONG,
            status=status,
            opened_at=T0,
            updated_at=T0,
            version=version,
        )
    )


async def test_close_of_one_position_and_open_of_the_next_share_a_batch(
    pool: asyncpg.Pool, write_path: str
) -> None:
    """A batch holding the close of position 1 (an update of a row this writer wrote) and
    the open of position 2 on the same market commits on the fast path: the update is
    applied before the insert, so the one-open-position-per-market index is never hit."""
    writer = BatchWriter(pool, on_refused=lambda rec, exc: None)
    try:
        first = await writer.launch(
            [market_position(1, PositionStatus.ACTIVE, 3)], time.monotonic(), None
        )
        await asyncio.wait({first.task})
        second = await writer.launch(
            [
                market_position(1, PositionStatus.CLOSED, 4),
                market_position(2, PositionStatus.PENDING_ENTRY, 1),
            ],
            time.monotonic(),
            first,
        )
        await asyncio.wait({second.task})
        assert (True, True) == (first.ok, second.ok)
    finally:
        await writer.release()
    rows = await pool.fetch("SELECT id, status FROM monitoring.positions ORDER BY id")
    assert [(1, "closed"), (2, "pending_entry")] == [tuple(r) for r in rows]


async def test_a_failed_batch_and_the_one_aborted_after_it_leave_no_unretrieved_error(
    pool: asyncpg.Pool,
) -> None:
    """A batch the database refuses and the batch rolled back behind it: both outcomes are
    retrieved, so asyncio never reports 'Task exception was never retrieved'."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: reported.append(str(ctx.get("message"))))
    writer = BatchWriter(pool, on_refused=lambda rec, exc: None)
    try:
        bad = AuditRecord(
            RecordKind.POSITION, {**market_position(1, PositionStatus.ACTIVE, 1).row, "side": "up"}
        )
        failing = await writer.launch([bad], time.monotonic(), None)
        aborted = await writer.launch(
            [market_position(2, PositionStatus.ACTIVE, 1)], time.monotonic(), failing
        )
        await asyncio.wait({failing.task, aborted.task})
        del failing, aborted
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
        await writer.release()
    assert [] == reported


HOSTILE = 'it\'s "quoted" \\ back\\slash, {braces}, [1,2], ünïcödé ✓\nnew line\ttab'


async def test_values_reach_their_columns_exactly(
    pool: asyncpg.Pool, tmp_path: Path, write_path: str
) -> None:
    """Decimals of many digits, microsecond times, hostile text and a jsonb detail read
    back from the tables exactly as recorded, on either write path."""
    story = position_story(1)
    first_order = next(r for r in story if r.kind is RecordKind.ORDER)
    row = dict(first_order.row)
    row.update(
        price=Decimal("12345.678901234567890123"),
        error_message=HOSTILE,
        updated_at=T0 + timedelta(microseconds=123457),
        version=99,
    )
    event = event_record(
        "test_exact",
        HOSTILE,
        account="main",
        position_id=1,
        client_order_id=row["client_order_id"],
        detail={"price": Decimal("0.000000001"), "text": HOSTILE, "n": [1, None]},
    )
    async with AuditWriter(pool, tmp_path) as audit:
        for rec in [*story, AuditRecord(RecordKind.ORDER, row), event]:
            audit.record(rec)
        await audit.drain(timeout_s=10)
    got = await pool.fetchrow(
        "SELECT price, error_message, updated_at FROM monitoring.orders WHERE client_order_id = $1",
        row["client_order_id"],
    )
    assert tuple(got) == (row["price"], HOSTILE, row["updated_at"])
    detail = await pool.fetchrow(
        "SELECT message, detail::text AS detail FROM monitoring.events WHERE kind = 'test_exact'"
    )
    assert detail["message"] == HOSTILE
    stored = json.loads(detail["detail"])
    assert Decimal(stored.pop("price")) == Decimal("0.000000001")
    assert stored == {"text": HOSTILE, "n": [1, None]}


async def test_a_value_json_cannot_carry_takes_the_copy_path(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A small group holding a value with no JSON form (an integer beyond 64 bits in a
    numeric column) is written by COPY instead, exactly, with the rest of its batch."""
    story = position_story(1)
    first_order = next(r for r in story if r.kind is RecordKind.ORDER)
    row = dict(first_order.row, size=2**70, version=99)
    async with AuditWriter(pool, tmp_path) as audit:
        for rec in [*story, AuditRecord(RecordKind.ORDER, row)]:
            audit.record(rec)
        await audit.drain(timeout_s=10)
    size = await pool.fetchval(
        "SELECT size FROM monitoring.orders WHERE client_order_id = $1", row["client_order_id"]
    )
    assert size == Decimal(2**70)
    assert await counts(pool) == expected(1)


async def test_copy_source_hands_many_rows_over_in_chunks_with_the_loop_free_between() -> None:
    """Up to COPY_CHUNK_ROWS rows go to COPY as they are; more come in order, chunk by
    chunk, with other tasks run between chunks (no long hold of the event loop)."""
    from database.audit_tables import COPY_CHUNK_ROWS, copy_source

    few = [(i,) for i in range(COPY_CHUNK_ROWS)]
    assert copy_source(few) is few
    many = [(i,) for i in range(COPY_CHUNK_ROWS * 3 + 5)]
    turns: list[int] = []
    seen: list[tuple[int, ...]] = []

    async def other_task() -> None:
        while True:
            turns.append(len(seen))
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    source = copy_source(many)
    assert not isinstance(source, list)
    async for row in source:
        seen.append(row)
    other.cancel()
    assert many == seen
    # The other task ran after each of the first three chunks, never inside one.
    assert [COPY_CHUNK_ROWS, 2 * COPY_CHUNK_ROWS, 3 * COPY_CHUNK_ROWS] == turns[1:]


async def test_large_groups_through_copy_arrive_whole(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Groups of more rows than one COPY chunk, new and then updated (the staged merge),
    land completely and at their newest versions."""
    stories = 40
    async with AuditWriter(pool, tmp_path, batch_size=5000) as audit:
        for pid in range(1, stories + 1):
            for rec in position_story(pid):
                audit.record(rec)
        await audit.drain(timeout_s=60)
    assert await counts(pool) == expected(stories)
    statuses = await pool.fetch("SELECT DISTINCT status, version FROM monitoring.orders")
    assert [tuple(r) for r in statuses] == [("FILLED", 5)]
    await assert_events_in_version_order(pool)
