"""The monitoring schema and the repository's writes: keys, guards, constraints, views."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from core.models import PositionSide, PriceSource, Side
from core.order_model import Fill, Order, OrderPurpose, OrderStatus, OrderType
from core.position_model import Position, PositionStatus
from core.records import (
    RecordKind,
    event_record,
    order_event_record,
    order_record,
    position_record,
    position_update_record,
    trade_record,
)
from database.repository import Repository

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def position(pid: int, symbol: str = "BTC/USDT:USDT", **kw: object) -> Position:
    base = Position(pid, "main", "paper", symbol, PositionSide.LONG, opened_at=T0, updated_at=T0)
    return base.evolve(**kw) if kw else base


def order(cid: str, pid: int | None = 1, **kw: object) -> Order:
    fields: dict[str, object] = {
        "client_order_id": cid,
        "account": "main",
        "exchange": "paper",
        "symbol": "BTC/USDT:USDT",
        "side": Side.BUY,
        "type": OrderType.MARKET,
        "amount": Decimal("0.5"),
        "position_id": pid,
        "status": OrderStatus.NEW,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(kw)
    return Order(**fields)  # type: ignore[arg-type]


async def test_second_open_position_on_a_market_is_refused(pool: asyncpg.Pool) -> None:
    """The partial unique index allows one non-terminal position per market, then another
    once the first is closed."""
    repo = Repository(pool)
    await repo.upsert_position(position_record(position(1, status=PositionStatus.ACTIVE)).row)
    with pytest.raises(asyncpg.UniqueViolationError):
        await repo.upsert_position(position_record(position(2)).row)
    assert await repo.upsert_position(position_record(position(2, symbol="ETH/USDT:USDT")).row)
    closed = position(1, status=PositionStatus.CLOSED).evolve(version=9)
    await repo.upsert_position(position_record(closed).row)
    assert await repo.upsert_position(position_record(position(3)).row)
    open_ids = [p["id"] for p in await repo.open_positions("main")]
    assert open_ids == [2, 3]


async def test_order_upsert_keeps_the_newest_version(pool: asyncpg.Pool) -> None:
    """An older snapshot that arrives after a newer one changes nothing."""
    repo = Repository(pool)
    await repo.upsert_position(position_record(position(1)).row)
    v1 = order("td-main-p1-en-1")
    v3 = v1.with_fill(Fill("t1", Decimal(100), Decimal("0.5"), ts=T0)).with_exchange_id("x9")
    assert v3.version == 4
    assert await repo.upsert_order(order_record(v3).row)
    assert not await repo.upsert_order(order_record(v1).row)  # late and older: ignored
    row = await repo.get_order("td-main-p1-en-1")
    assert row is not None
    assert (row["status"], row["version"], row["order_id"]) == ("FILLED", 4, "x9")
    assert row["average_price"] == Decimal(100)
    assert await repo.find_order("x9") == row


async def test_trades_and_events_are_written_once(pool: asyncpg.Pool) -> None:
    """The same trade, order event or daemon event recorded twice (a retried batch, a
    replayed spool: the same record, its time included) is stored once."""
    repo = Repository(pool)
    await repo.upsert_position(position_record(position(1)).row)
    o = order("td-main-p1-en-1")
    fill = Fill("T-1", Decimal(100), Decimal("0.5"), ts=T0)
    boot = event_record("start", "up", event_key="boot-1")
    for _ in range(2):
        await repo.insert_trade(trade_record(o, fill).row)
        await repo.append_order_event(order_event_record(o, "created", None, {"a": 1}).row)
        await repo.insert_event(boot.row)
    counts = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM monitoring.trades) AS trades,"
        " (SELECT count(*) FROM monitoring.order_events) AS order_events,"
        " (SELECT count(*) FROM monitoring.events) AS events"
    )
    assert dict(counts) == {"trades": 1, "order_events": 1, "events": 1}
    detail = await pool.fetchval("SELECT detail FROM monitoring.order_events")
    assert detail == {"a": 1}


async def test_enum_columns_refuse_bad_values(pool: asyncpg.Pool) -> None:
    """CHECK constraints keep statuses, sides, types and purposes to the known words."""
    repo = Repository(pool)
    await repo.upsert_position(position_record(position(1)).row)
    good = order_record(order("td-x")).row
    for column, bad in [
        ("status", "filled"),
        ("side", "long"),
        ("type", "STOP"),
        ("purpose", "hedge"),
    ]:
        with pytest.raises(asyncpg.CheckViolationError):
            await repo.upsert_order({**good, column: bad})
    with pytest.raises(asyncpg.CheckViolationError):
        await repo.upsert_position({**position_record(position(5)).row, "side": "buy"})


async def test_order_of_an_unknown_position_is_refused_at_commit(pool: asyncpg.Pool) -> None:
    """orders.position_id is a real (deferred) foreign key to positions."""
    repo = Repository(pool)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await repo.upsert_order(order_record(order("td-orphan", pid=404)).row)
    assert await repo.upsert_order(order_record(order("td-free", pid=None)).row)


async def test_position_ids_come_from_the_sequence(pool: asyncpg.Pool) -> None:
    """Reserved ids are distinct and rising, and a concurrent reservation never repeats one."""
    repo = Repository(pool)
    a, b = await asyncio.gather(repo.reserve_position_ids(50), repo.reserve_position_ids(50))
    assert len(set(a) | set(b)) == 100
    assert a == sorted(a)


async def test_purge_removes_only_old_position_updates(pool: asyncpg.Pool) -> None:
    """The by-hand purge (monitoring.purge_position_updates) deletes samples older than 7
    days and keeps the rest, on the partitioned table too."""
    repo = Repository(pool)
    p = position(1)
    await repo.upsert_position(position_record(p).row)
    now = datetime.now(UTC)
    for age_days in (10, 8, 6, 0):
        await repo.insert_position_update(
            position_update_record(p, ts=now - timedelta(days=age_days)).row
        )
    assert await pool.fetchval("SELECT monitoring.purge_position_updates()") == 2
    assert await pool.fetchval("SELECT count(*) FROM monitoring.position_updates") == 2


async def test_insert_of_a_signal_notifies_the_daemon(pool: asyncpg.Pool) -> None:
    """Inserting a signal or a command sends NOTIFY trader_intake naming the row."""
    got: asyncio.Queue[str] = asyncio.Queue()

    def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        got.put_nowait(payload)

    async with pool.acquire() as listener:
        await listener.add_listener("trader_intake", heard)
        try:
            repo = Repository(pool)
            sid = await repo.insert_signal(symbol="BTC/USDT:USDT", side="long", amount=Decimal(1))
            cid = await repo.insert_command("cancel_order", {"order": "td-1"}, account="main")
            first = json.loads(await asyncio.wait_for(got.get(), 5))
            second = json.loads(await asyncio.wait_for(got.get(), 5))
        finally:
            await listener.remove_listener("trader_intake", heard)
    assert first == {"table": "signals", "id": sid, "account": None}
    assert second == {"table": "commands", "id": cid, "account": "main"}


async def test_performance_view_reports_the_closed_positions(pool: asyncpg.Pool) -> None:
    """Win rate, profit factor, averages, total and max drawdown from closed positions."""
    repo = Repository(pool)
    results = [Decimal(100), Decimal(-50), Decimal(30), Decimal(-80), Decimal(40)]
    for i, pnl in enumerate(results, start=1):
        closed = position(i, symbol=f"S{i}").evolve(
            status=PositionStatus.CLOSED,
            realized_pnl=pnl,
            fees=Decimal(1),
            closed_at=T0 + timedelta(hours=i),
        )
        await repo.upsert_position(position_record(closed).row)
    await repo.upsert_position(position_record(position(9, symbol="OPEN")).row)
    row = await pool.fetchrow("SELECT * FROM monitoring.performance WHERE account = 'main'")
    assert row["closed_positions"] == 5
    assert (row["wins"], row["losses"]) == (3, 2)
    assert row["win_rate"] == Decimal("0.6000")
    assert row["profit_factor"] == Decimal("1.3077")  # 170 / 130, 4 places
    assert row["avg_win"] == Decimal("56.66666667")  # 170 / 3, 8 places
    assert row["avg_loss"] == Decimal(-65)
    assert row["total_pnl"] == Decimal(40)
    assert row["total_fees"] == Decimal(5)
    # Equity 100, 50, 80, 0, 40: the worst fall from a peak is 100 -> 0.
    assert row["max_drawdown"] == Decimal(100)


async def test_positions_without_stop_lists_only_unprotected_ones(pool: asyncpg.Pool) -> None:
    """An active position shows up until a live stop on its closing side exists."""
    repo = Repository(pool)
    active = position(1, status=PositionStatus.ACTIVE, quantity=Decimal(1))
    await repo.upsert_position(position_record(active).row)

    async def listed() -> list[int]:
        return [
            r["id"] for r in await pool.fetch("SELECT id FROM monitoring.positions_without_stop")
        ]

    assert await listed() == [1]
    wrong_side = order(
        "td-sl-wrong", type=OrderType.STOP_MARKET, side=Side.BUY, purpose=OrderPurpose.STOP_LOSS
    )
    await repo.upsert_order(order_record(wrong_side).row)
    assert await listed() == [1]  # a buy stop does not protect a long
    stop = order(
        "td-sl-1", type=OrderType.STOP_MARKET, side=Side.SELL, purpose=OrderPurpose.STOP_LOSS
    )
    await repo.upsert_order(order_record(stop).row)
    assert await listed() == []
    cancelled = stop.with_status(OrderStatus.CANCELLED)
    await repo.upsert_order(order_record(cancelled).row)
    assert await listed() == [1]


async def test_stuck_orders_are_the_old_transitional_ones(pool: asyncpg.Pool) -> None:
    """SUBMITTED for more than 5 minutes is stuck; a resting NEW order is not."""
    repo = Repository(pool)
    await repo.upsert_position(position_record(position(1)).row)
    old = datetime.now(UTC) - timedelta(minutes=10)
    await repo.upsert_order(
        order_record(order("td-stuck", status=OrderStatus.SUBMITTED, updated_at=old)).row
    )
    await repo.upsert_order(order_record(order("td-resting", updated_at=old)).row)
    await repo.upsert_order(
        order_record(
            order("td-fresh", status=OrderStatus.SUBMITTED, updated_at=datetime.now(UTC))
        ).row
    )
    rows = await pool.fetch("SELECT client_order_id FROM monitoring.stuck_orders")
    assert [r["client_order_id"] for r in rows] == ["td-stuck"]


async def test_exposure_and_daily_pnl_views_answer(pool: asyncpg.Pool) -> None:
    """open_exposure sums open positions; daily_pnl sums realised P&L of exits per day."""
    repo = Repository(pool)
    p = position(
        1,
        status=PositionStatus.ACTIVE,
        quantity=Decimal(2),
        entry_price=Decimal(100),
        current_price=Decimal(110),
    )
    await repo.upsert_position(position_record(p).row)
    exposure = await pool.fetchrow("SELECT * FROM monitoring.open_exposure")
    assert (exposure["quantity"], exposure["notional"]) == (Decimal(2), Decimal(220))
    o = order("td-ex", side=Side.SELL, purpose=OrderPurpose.EXIT)
    await repo.insert_trade(
        trade_record(o, Fill("e1", Decimal(110), Decimal(1), ts=T0), realized_pnl=Decimal(9)).row
    )
    await repo.insert_trade(
        trade_record(
            o,
            Fill("e2", Decimal(90), Decimal(1), ts=T0 + timedelta(days=1)),
            realized_pnl=Decimal(-11),
        ).row
    )
    days = await pool.fetch("SELECT * FROM monitoring.daily_pnl ORDER BY day")
    assert [(d["realized_pnl"], d["cumulative_pnl"]) for d in days] == [
        (Decimal(9), Decimal(9)),
        (Decimal(-11), Decimal(-2)),
    ]


async def test_an_orders_price_source_is_stored_and_checked(pool: asyncpg.Pool) -> None:
    """monitoring.orders keeps the price an emulated order watches, and refuses a value
    outside last / mark / quote."""
    repo = Repository(pool)
    await repo.write(position_record(position(1)).kind, position_record(position(1)).row)
    rec = order_record(order("td-main-p1-mo-1", price_source=PriceSource.MARK, emulated=True))
    await repo.write(rec.kind, rec.row)
    stored = await pool.fetchval(
        "SELECT price_source FROM monitoring.orders WHERE client_order_id = $1",
        "td-main-p1-mo-1",
    )
    assert "mark" == stored
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE monitoring.orders SET price_source = 'index' WHERE client_order_id = $1",
            "td-main-p1-mo-1",
        )


async def test_the_same_trade_id_in_two_accounts_is_two_executions(pool: asyncpg.Pool) -> None:
    """Two accounts' paper venues both number from pt-1 (and one trade between two of our
    accounts has one id on both sides): each account keeps its execution; a repeat in
    one account is still ignored; a row without an account takes its order's."""
    repo = Repository(pool)
    fill = Fill("pt-1", Decimal(50000), Decimal("0.5"), ts=T0)
    for account in ("main", "other"):
        await repo.write(
            RecordKind.ORDER,
            order_record(order(f"td-{account}-m1-mo-1", None, account=account)).row,
        )
        row = trade_record(order(f"td-{account}-m1-mo-1", None, account=account), fill).row
        assert await repo.write(RecordKind.TRADE, row)
        assert not await repo.write(RecordKind.TRADE, row)
    legacy = dict(trade_record(order("td-main-m1-mo-1", None), fill).row)
    legacy.pop("account")
    legacy["trade_id"] = "pt-2"
    await repo.write(RecordKind.TRADE, legacy)
    rows = await pool.fetch("SELECT account, trade_id FROM monitoring.trades ORDER BY id")
    assert [("main", "pt-1"), ("other", "pt-1"), ("main", "pt-2")] == [tuple(r) for r in rows]
