"""The time-partitioned audit tables (migration 0012): the conversion keeps every row,
partitions are made ahead, a row without its partition waits and moves in, and the
retention removes exactly what is past it."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from database.embedded import EmbeddedPostgres
from database.migrate import MIGRATIONS_DIR, migrate
from database.partitions import PartitionChange, maintain_partitions
from tests.integration.test_audit_rollups import DAILY_FROM_TRADES

AUDIT_TABLES = ("order_events", "trades", "position_updates", "events")
NOW = datetime.now(UTC)
# Times across the years, a far future and the current moment: each must keep its row.
TIMES = (
    datetime(2019, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 6, 1, tzinfo=UTC),
    NOW - timedelta(days=3),
    NOW,
    datetime(2031, 1, 1, tzinfo=UTC),
)

_SEED = """
INSERT INTO monitoring.positions (id, account, exchange, symbol, side, status, opened_at)
VALUES (1, 'main', 'paper', 'BTC/USDT:USDT', 'long', 'active', $1);
INSERT INTO monitoring.orders (client_order_id, position_id, account, exchange, symbol,
    type, side, purpose, size, status, created_at, updated_at)
VALUES ('td-main-p1-en-1', 1, 'main', 'paper', 'BTC/USDT:USDT', 'MARKET', 'buy',
    'entry', 0.5, 'FILLED', $1, $1);
"""


async def _seed_old_schema(conn: asyncpg.Connection) -> None:
    """Rows of every audit table at every time of TIMES, written to the 0011 schema."""
    await conn.execute(_SEED.replace("$1", "'2019-01-01T00:00:00Z'"))
    for i, ts in enumerate(TIMES):
        await conn.execute(
            "INSERT INTO monitoring.order_events (event_key, client_order_id, position_id,"
            " kind, new_status, version, detail, created_at)"
            " VALUES ($1, 'td-main-p1-en-1', 1, 'status', 'NEW', $2, $3::jsonb, $4)",
            f"td-main-p1-en-1#{i}#status",
            i,
            '{"quote": "it\'s", "n": 1.10}',
            ts,
        )
        await conn.execute(
            "INSERT INTO monitoring.trades (position_id, exchange, symbol, side, order_type,"
            " price, executed_qty, client_order_id, trade_id, fee, executed_at)"
            " VALUES (1, 'paper', 'BTC/USDT:USDT', 'buy', 'MARKET', 100.123456789012345678,"
            " 0.5, 'td-main-p1-en-1', $1, 0.01, $2)",
            f"pt-{i}",
            ts,
        )
        await conn.execute(
            "INSERT INTO monitoring.position_updates (position_id, ts, price, held_s)"
            " VALUES (1, $1, 101.5, 3.25)",
            ts,
        )
        await conn.execute(
            "INSERT INTO monitoring.events (event_key, kind, severity, account, message,"
            " created_at) VALUES ($1, 'alert', 'warning', 'main', 'line\nbreak', $2)",
            f"ev-{i}",
            ts,
        )


async def _contents(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    return {
        t: [dict(r) for r in await conn.fetch(f"SELECT * FROM monitoring.{t} ORDER BY id")]
        for t in AUDIT_TABLES
    }


@pytest.fixture
async def old_schema(embedded_pg: EmbeddedPostgres, tmp_path: Path) -> str:
    """A database at migration 0011, with audit rows: what a running install has."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0012":
            shutil.copy(path, older / path.name)
    await migrate(embedded_pg.url, older)
    conn = await asyncpg.connect(embedded_pg.url)
    try:
        await _seed_old_schema(conn)
    finally:
        await conn.close()
    return embedded_pg.url


async def test_the_conversion_keeps_every_row_value_and_id(old_schema: str) -> None:
    """Migrating a 0011 database partitions the four tables with every row, every value
    and every id as it was, none left in a default partition, and ids continue above."""
    conn = await asyncpg.connect(old_schema)
    try:
        before = await _contents(conn)
        assert (await migrate(old_schema))[0] == "0012_partitioned_audit.sql"
        # The migration's own pass applies the 7-day retention to position samples, as
        # the hourly purge of 0011 would have.
        cutoff = datetime.now(UTC) - timedelta(days=7)
        before["position_updates"] = [r for r in before["position_updates"] if r["ts"] >= cutoff]
        assert len(before["position_updates"]) == 3  # 3 days ago, now, 2031
        assert await _contents(conn) == before
        # 0013's per-day summaries start from the rows already there.
        daily = await conn.fetch("SELECT * FROM monitoring.daily_pnl ORDER BY account, day")
        assert [dict(r) for r in daily] == [dict(r) for r in await conn.fetch(DAILY_FROM_TRADES)]
        assert len(daily) == len(TIMES)
        kinds = await conn.fetch(
            "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY($1::text[])",
            list(AUDIT_TABLES),
        )
        assert {r["relname"]: r["relkind"] for r in kinds} == dict.fromkeys(AUDIT_TABLES, "p")
        for table in AUDIT_TABLES:
            waiting = await conn.fetchval(f"SELECT count(*) FROM monitoring.{table}_default")
            assert waiting == 0, table
        new_id = await conn.fetchval(
            "INSERT INTO monitoring.trades (position_id, exchange, symbol, side, order_type,"
            " price, executed_qty, client_order_id, trade_id, executed_at) VALUES"
            " (1, 'paper', 'BTC/USDT:USDT', 'sell', 'MARKET', 1, 1, 'td-main-p1-en-1',"
            " 'pt-new', now()) RETURNING id"
        )
        assert new_id == max(r["id"] for r in before["trades"]) + 1
        # The 0007 trigger still fills the account from the order.
        assert (
            await conn.fetchval("SELECT account FROM monitoring.trades WHERE trade_id = 'pt-new'")
            == "main"
        )
    finally:
        await conn.close()


async def test_a_row_without_its_partition_waits_and_moves_in(pool: asyncpg.Pool) -> None:
    """A row for a month with no partition lands in the default partition; making that
    month's partition moves it there, once."""
    far = datetime(2041, 5, 10, 12, tzinfo=UTC)
    await pool.execute(
        "INSERT INTO monitoring.events (event_key, kind, message, created_at)"
        " VALUES ('far', 'alert', 'from the future', $1)",
        far,
    )
    where = "SELECT tableoid::regclass::text FROM monitoring.events WHERE event_key = 'far'"
    assert await pool.fetchval(where) == "monitoring.events_default"
    made = await pool.fetchval("SELECT monitoring.create_audit_partition('events', $1)", far)
    assert made == "events_p204105"
    assert await pool.fetchval(where) == "monitoring.events_p204105"
    assert await pool.fetchval("SELECT count(*) FROM monitoring.events") == 1
    again = await pool.fetchval("SELECT monitoring.create_audit_partition('events', $1)", far)
    assert again is None


async def test_a_pass_makes_partitions_ahead_once(pool: asyncpg.Pool) -> None:
    """A pass makes the current and the next months (days for position samples) of every
    table, named by their UTC range; a second pass has nothing to do."""
    at = datetime(2036, 1, 31, 23, 30, tzinfo=UTC)
    changes = await maintain_partitions(pool, at=at)
    made = {(c.table, c.partition) for c in changes if c.action == "created"}
    assert {("trades", f"trades_p2036{m:02d}") for m in range(1, 5)} <= made
    assert {("order_events", "order_events_p203604"), ("events", "events_p203601")} <= made
    days = {p for t, p in made if t == "position_updates"}
    assert days == {f"position_updates_p{(at + timedelta(days=d)):%Y%m%d}" for d in range(15)}
    assert await maintain_partitions(pool, at=at) == []


async def test_concurrent_passes_make_each_partition_once(pool: asyncpg.Pool) -> None:
    """Two daemons maintaining at once: no error, and every partition made by one of them."""
    at = datetime(2037, 6, 15, tzinfo=UTC)
    first, second = await asyncio.gather(
        maintain_partitions(pool, at=at), maintain_partitions(pool, at=at)
    )
    names = [c.partition for c in first + second if c.action == "created"]
    assert len(names) == len(set(names)) == 4 + 4 + 4 + 15


async def test_retention_removes_exactly_what_is_past_it(pool: asyncpg.Pool) -> None:
    """Position samples keep 7 days to the second (old days' partitions dropped, with
    their row counts); a retention set on events applies to events alone."""
    await pool.execute(
        "INSERT INTO monitoring.positions (id, account, exchange, symbol, side, status)"
        " VALUES (1, 'main', 'paper', 'BTC/USDT:USDT', 'long', 'active')"
    )
    for age in (10, 8, 6, 0):
        ts = NOW - timedelta(days=age)
        await pool.fetchval("SELECT monitoring.create_audit_partition('position_updates', $1)", ts)
        await pool.execute(
            "INSERT INTO monitoring.position_updates (position_id, ts) VALUES (1, $1)", ts
        )
    for age in (40, 31, 29):
        await pool.execute(
            "INSERT INTO monitoring.events (event_key, kind, created_at) VALUES ($1, 'x', $2)",
            f"age-{age}",
            NOW - timedelta(days=age, minutes=1),
        )
    await pool.execute(
        "UPDATE monitoring.audit_partitioning SET retention = '30 days' WHERE table_name = 'events'"
    )
    try:
        changes = await maintain_partitions(pool, at=NOW)
    finally:
        await pool.execute(
            "UPDATE monitoring.audit_partitioning SET retention = NULL WHERE table_name = 'events'"
        )
    dropped = [c for c in changes if c.table == "position_updates" and c.action == "dropped"]
    assert sorted(c.rows or 0 for c in dropped if c.rows) == [1, 1]
    ages = await pool.fetch("SELECT ts FROM monitoring.position_updates ORDER BY ts")
    assert [r["ts"] for r in ages] == [NOW - timedelta(days=6), NOW]
    kept = await pool.fetch("SELECT event_key FROM monitoring.events")
    assert [r["event_key"] for r in kept] == ["age-29"]
    assert PartitionChange("events", "deleted", None, 2) in changes
    assert not [c for c in changes if c.table in ("trades", "order_events") and c.rows]


async def test_a_table_held_by_a_reader_is_left_for_the_next_pass(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long query holding trades: that table waits 2 s at most and is deferred, with a
    warning; the other tables are maintained; the next pass does trades."""
    at = datetime(2038, 3, 1, tzinfo=UTC)
    async with pool.acquire() as reader:
        tx = reader.transaction()
        await tx.start()
        await reader.execute("LOCK TABLE monitoring.trades IN ACCESS SHARE MODE")
        try:
            changes = await maintain_partitions(pool, at=at)
        finally:
            await tx.rollback()
    assert {c.table for c in changes} == {"order_events", "position_updates", "events"}
    assert "audit_partitions_deferred" in capsys.readouterr().out
    later = await maintain_partitions(pool, at=at)
    assert {c.table for c in later} == {"trades"}
