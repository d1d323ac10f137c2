"""Every SQL query of ORDERS_TRADES_AUDIT_REPORT.md runs against the real schema."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import asyncpg

from core.models import (
    Fill,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    PositionStatus,
    Side,
)
from core.records import order_event_record, order_record, position_record, trade_record
from database.repository import Repository
from tests.integration.audit_helpers import T0

REPORT = Path(__file__).resolve().parents[2] / "ORDERS_TRADES_AUDIT_REPORT.md"


def report_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", REPORT.read_text(), flags=re.DOTALL)


async def seed(pool: asyncpg.Pool) -> None:
    """Position 55: a market entry, a stop moved once, a market exit; and position 56 with
    no order at all."""
    repo = Repository(pool)
    pos = Position(55, "main", "paper", "BTC/USDT:USDT", PositionSide.LONG, opened_at=T0)
    await repo.upsert_position(position_record(pos).row)
    await repo.upsert_position(
        position_record(Position(56, "main", "paper", "ETH/USDT:USDT", PositionSide.SHORT)).row
    )

    def new(cid: str, otype: OrderType, side: Side, purpose: OrderPurpose) -> Order:
        return Order(
            cid,
            "main",
            "paper",
            "BTC/USDT:USDT",
            side,
            otype,
            Decimal("0.5"),
            purpose=purpose,
            position_id=55,
            status=OrderStatus.NEW,
            trigger_price=Decimal(95) if otype is OrderType.STOP_MARKET else None,
            created_at=T0,
            updated_at=T0,
        )

    entry = new("td-main-p55-en-1", OrderType.MARKET, Side.BUY, OrderPurpose.ENTRY)
    entry_fill = Fill("E1", Decimal(100), Decimal("0.5"), Decimal("0.05"), ts=T0)
    stop1 = new("td-main-p55-sl-2", OrderType.STOP_MARKET, Side.SELL, OrderPurpose.STOP_LOSS)
    stop2 = new("td-main-p55-sl-3", OrderType.STOP_MARKET, Side.SELL, OrderPurpose.STOP_LOSS)
    exit_ = new("td-main-p55-ex-4", OrderType.MARKET, Side.SELL, OrderPurpose.EXIT)
    exit_fill = Fill("X1", Decimal(110), Decimal("0.5"), Decimal("0.05"), ts=T0)
    filled_entry = entry.with_fill(entry_fill)
    filled_exit = exit_.with_fill(exit_fill)
    for snapshot in (
        filled_entry,
        stop1.with_status(OrderStatus.CANCELLED),
        stop2.with_status(OrderStatus.CANCELLED),
        filled_exit,
    ):
        await repo.upsert_order(order_record(snapshot).row)
    await repo.append_order_event(order_event_record(entry, "created", None).row)
    await repo.append_order_event(
        order_event_record(filled_entry, "fill", OrderStatus.NEW, {"trade_id": "E1"}).row
    )
    await repo.insert_trade(trade_record(filled_entry, entry_fill).row)
    await repo.insert_trade(trade_record(filled_exit, exit_fill, realized_pnl=Decimal("4.9")).row)
    closed = pos.evolve(
        status=PositionStatus.CLOSED,
        realized_pnl=Decimal("4.9"),
        closed_at=T0,
        exit_reason="signal",
    )
    await repo.upsert_position(position_record(closed).row)


async def test_every_report_query_runs(pool: asyncpg.Pool) -> None:
    """Each ```sql block of the report executes without error on a seeded trail."""
    await seed(pool)
    queries = report_queries()
    assert len(queries) >= 12
    for sql in queries:
        await pool.fetch(sql)


async def test_report_queries_answer_the_questions(pool: asyncpg.Pool) -> None:
    """The documented queries return the orders, trades, counts and joins they promise."""
    await seed(pool)
    q = report_queries()
    market = await pool.fetch(q[0])
    assert [r["client_order_id"] for r in market] == ["td-main-p55-en-1", "td-main-p55-ex-4"]
    stops = await pool.fetch(q[1])
    assert [r["client_order_id"] for r in stops] == ["td-main-p55-sl-2", "td-main-p55-sl-3"]
    trades = await pool.fetch(q[2])
    assert [r["trade_id"] for r in trades] == ["E1", "X1"]
    assert trades[1]["realized_pnl"] == Decimal("4.9")
    assert dict(await pool.fetchrow(q[3])) == {"orders": 4, "trades": 2}
    joined = await pool.fetch(q[4])
    assert [(r["position_id"], r["client_order_id"]) for r in joined] == [
        (55, "td-main-p55-en-1"),
        (55, "td-main-p55-sl-2"),
        (55, "td-main-p55-sl-3"),
        (55, "td-main-p55-ex-4"),
        (56, None),
    ]
    history = await pool.fetch(q[5])
    assert [(r["previous_status"], r["new_status"]) for r in history] == [
        (None, "NEW"),
        ("NEW", "FILLED"),
    ]
    assert await pool.fetch(q[6]) == []  # filled quantities match the executions
