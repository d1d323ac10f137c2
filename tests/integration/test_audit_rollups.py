"""The per-day summaries behind the all-time views (migration 0013) give exactly the
figures of their definitions over the raw rows, however the rows were written."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from core.models import PositionSide, Side
from core.order_model import Fill, Order, OrderType
from core.position_model import Position, PositionStatus
from core.records import AuditRecord, position_record, trade_record
from database.audit import AuditWriter
from database.repository import Repository

ACCOUNTS = ("a", "b", "c")
DAY0 = datetime(2026, 3, 28, 22, tzinfo=UTC)  # across a month's end and a DST change

# 0007's daily_pnl, over the trades themselves.
DAILY_FROM_TRADES = """
SELECT t.account, (t.executed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS trades,
       count(*) FILTER (WHERE t.realized_pnl IS NOT NULL) AS exits,
       coalesce(sum(t.realized_pnl), 0) AS realized_pnl, coalesce(sum(t.fee), 0) AS fees,
       sum(coalesce(sum(t.realized_pnl), 0)) OVER (
           PARTITION BY t.account ORDER BY (t.executed_at AT TIME ZONE 'UTC')::date
       ) AS cumulative_pnl
FROM monitoring.trades t GROUP BY 1, 2 ORDER BY 1, 2
"""


def _money(rng: random.Random) -> Decimal:
    """A P&L: often a loss or a win of a few cents to hundreds, sometimes exactly 0."""
    if rng.random() < 0.1:
        return Decimal(0)
    return Decimal(rng.randint(-50_000, 50_000)) / Decimal(100)


def _trail(rng: random.Random, count: int) -> list[list[Position]]:
    """Each position's snapshots in order: opened, maybe finished, maybe corrected after."""
    lives = []
    for pid in range(1, count + 1):
        pos = Position(pid, rng.choice(ACCOUNTS), "paper", f"S{pid}/USDT", PositionSide.LONG)
        life = [pos.evolve(status=PositionStatus.ACTIVE)]
        ending = rng.random()
        if ending < 0.7:
            # Ties in closing time, and closes across three days.
            closed_at = DAY0 + timedelta(minutes=rng.choice((0, 30, 90, 150, 1500, 2900)))
            life.append(
                life[-1].evolve(
                    status=PositionStatus.CLOSED,
                    realized_pnl=_money(rng),
                    fees=Decimal(rng.randint(0, 300)) / 100,
                    closed_at=closed_at,
                )
            )
            if rng.random() < 0.3:  # a late fill corrects the result and the close time
                life.append(
                    life[-1].evolve(
                        realized_pnl=_money(rng),
                        closed_at=closed_at + timedelta(hours=rng.choice((0, 3, 30))),
                    )
                )
        elif ending < 0.85:
            at = None if rng.random() < 0.5 else DAY0 + timedelta(minutes=rng.randint(0, 2900))
            life.append(
                life[-1].evolve(
                    status=PositionStatus.ROLLED_BACK, realized_pnl=-Decimal("0.05"), closed_at=at
                )
            )
        lives.append(life)
    return lives


def _fills(rng: random.Random, count: int) -> list[AuditRecord]:
    records = []
    for n in range(count):
        order = Order(f"td-x-{n}", rng.choice(ACCOUNTS), "paper", "BTC/USDT:USDT", Side.SELL,
                      OrderType.MARKET, Decimal(1))  # fmt: skip
        ts = DAY0 + timedelta(minutes=rng.randint(0, 4000))
        fill = Fill(f"T{n}", Decimal(100), Decimal(1), Decimal(rng.randint(0, 9)) / 10, ts=ts)
        pnl = _money(rng) if rng.random() < 0.5 else None
        records.append(trade_record(order, fill, realized_pnl=pnl))
    return records


async def _rows(pool: asyncpg.Pool, sql: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(sql)]


async def test_summaries_equal_their_definitions_over_random_trails(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Over random trails (closes out of order, ties, corrections after the close that move
    a position to another day, rolled back without a close time), written in batches by
    the audit writer and one row at a time: the performance view equals
    performance_scan(NULL) and daily_pnl equals 0007's aggregate over the trades."""
    repo = Repository(pool)
    for seed in range(12):
        await pool.execute(
            "TRUNCATE monitoring.positions, monitoring.trades, monitoring.daily_pnl_days,"
            " monitoring.performance_days CASCADE"
        )
        rng = random.Random(seed)
        lives = _trail(rng, rng.randint(1, 40))
        snapshots = [(step, pos) for life in lives for step, pos in enumerate(life)]
        rng.shuffle(snapshots)
        snapshots.sort(key=lambda item: item[0])  # a position's versions in order, mixed
        async with AuditWriter(pool, tmp_path / str(seed)) as audit:
            for _step, pos in snapshots:
                if rng.random() < 0.3:
                    await audit.drain(timeout_s=10)
                    await repo.upsert_position(position_record(pos).row)
                else:
                    audit.record(position_record(pos))
            for rec in _fills(rng, rng.randint(0, 60)):
                audit.record(rec)
            await audit.drain(timeout_s=10)
        scan = await _rows(pool, "SELECT * FROM monitoring.performance_scan(NULL) ORDER BY account")
        assert await _rows(pool, "SELECT * FROM monitoring.performance ORDER BY account") == scan
        daily = await _rows(pool, "SELECT * FROM monitoring.daily_pnl ORDER BY account, day")
        assert daily == await _rows(pool, DAILY_FROM_TRADES), seed
    assert scan  # the last trail had finished positions: the comparison compared something


async def test_a_window_still_reads_the_positions(pool: asyncpg.Pool) -> None:
    """performance_since(t) counts only positions finished since t (report --since); at
    NULL it is the all-time view."""
    repo = Repository(pool)
    for pid, days_ago, pnl in ((1, 10, "5"), (2, 1, "-2"), (3, 0, "3")):
        pos = Position(pid, "a", "paper", f"S{pid}/USDT", PositionSide.LONG)
        closed = pos.evolve(
            status=PositionStatus.CLOSED,
            realized_pnl=Decimal(pnl),
            closed_at=datetime.now(UTC) - timedelta(days=days_ago),
        )
        await repo.upsert_position(position_record(closed).row)
    window = await pool.fetchrow(
        "SELECT closed_positions, total_pnl, max_drawdown"
        " FROM monitoring.performance_since(now() - interval '2 days')"
    )
    assert tuple(window) == (2, Decimal(1), Decimal(2))
    every = await pool.fetchrow(
        "SELECT closed_positions, total_pnl, max_drawdown FROM monitoring.performance"
    )
    assert tuple(every) == (3, Decimal(6), Decimal(2))


async def test_two_transactions_finishing_positions_of_one_day_both_count(
    pool: asyncpg.Pool,
) -> None:
    """Two open transactions (the audit writer's two batches in flight) each close a
    position of the same account and day: no key collision, and the summary holds both."""
    closed_at = datetime(2026, 5, 5, 12, tzinfo=UTC)
    rows = []
    for pid, pnl in ((1, "7"), (2, "-3")):
        pos = Position(pid, "a", "paper", f"S{pid}/USDT", PositionSide.LONG)
        rows.append(
            position_record(
                pos.evolve(
                    status=PositionStatus.CLOSED, realized_pnl=Decimal(pnl), closed_at=closed_at
                )
            ).row
        )
    first, second = await pool.acquire(), await pool.acquire()
    try:
        tx1, tx2 = first.transaction(), second.transaction()
        await tx1.start()
        await tx2.start()
        await Repository(first).upsert_position(rows[0])
        waiting = asyncio.create_task(Repository(second).upsert_position(rows[1]))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # the day is locked by the first until it commits
        await tx1.commit()
        await waiting
        await tx2.commit()
    finally:
        await pool.release(first)
        await pool.release(second)
    figures = await pool.fetchrow(
        "SELECT closed_positions, total_pnl, max_drawdown FROM monitoring.performance"
    )
    assert tuple(figures) == (2, Decimal(4), Decimal(3))
    assert [dict(r) for r in await pool.fetch("SELECT * FROM monitoring.performance")] == [
        dict(r) for r in await pool.fetch("SELECT * FROM monitoring.performance_scan(NULL)")
    ]
