"""Every SQL query of ORDERS_TRADES_AUDIT_REPORT.md runs against the real schema."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import asyncpg

from core.models import PositionSide, Side
from core.order_model import Fill, Order, OrderPurpose, OrderStatus, OrderType
from core.position_model import Position, PositionStatus
from core.records import order_event_record, order_record, position_record, trade_record
from database.repository import Repository
from tests.integration.audit_helpers import T0

REPORT = Path(__file__).resolve().parents[2] / "ORDERS_TRADES_AUDIT_REPORT.md"


def psql_variables(text: str) -> dict[str, str]:
    """The ``\\set name value`` lines of the report's psql blocks."""
    blocks = re.findall(r"```psql\n(.*?)```", text, flags=re.DOTALL)
    return dict(re.findall(r"^\\set (\w+) (\S+)$", "".join(blocks), flags=re.MULTILINE))


def substituted(sql: str, variables: dict[str, str]) -> str:
    """``sql`` with psql's ``:'name'`` (a quoted literal) and ``:name`` (as is) replaced, as
    psql does with the report's variables."""
    for name, value in variables.items():
        literal = "'" + value.replace("'", "''") + "'"
        sql = sql.replace(f":'{name}'", literal)
        sql = re.sub(rf"(?<![:\w]):{name}\b", value, sql)
    return sql


def report_queries() -> list[str]:
    """The report's ```sql blocks, run as psql would after the report's ``\\set`` lines;
    the first block (finding a position) is not one of the seeded questions."""
    text = REPORT.read_text()
    variables = psql_variables(text)
    queries = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    return [substituted(q, variables) for q in queries[1:]]


def test_report_names_the_position_with_psql_variables() -> None:
    """The per-position queries use :pid / :'cid', set once by \\set lines shown in the
    report, so a reader points them at their own position."""
    text = REPORT.read_text()
    assert {"pid": "55", "cid": "td-main-p55-en-1"} == psql_variables(text)
    raw = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    assert sum(":pid" in q for q in raw) >= 3 and any(":'cid'" in q for q in raw)
    assert not any("= 55" in q or "p55" in q for q in raw)


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
    await pool.fetch(re.findall(r"```sql\n(.*?)```", REPORT.read_text(), flags=re.DOTALL)[0])


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
    # An order of the position filled without its execution recorded is listed.
    stray = Order(
        "td-main-p55-ex-5", "main", "paper", "BTC/USDT:USDT", Side.SELL, OrderType.MARKET,
        Decimal("0.3"), purpose=OrderPurpose.EXIT, position_id=55, status=OrderStatus.NEW,
    )  # fmt: skip
    unrecorded = stray.with_fill(Fill("X9", Decimal(111), Decimal("0.3"), ts=T0))
    await Repository(pool).upsert_order(order_record(unrecorded).row)
    listed = await pool.fetch(q[6])
    assert [(r["client_order_id"], r["traded"]) for r in listed] == [("td-main-p55-ex-5", 0)]
