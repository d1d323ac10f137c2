"""The atomic open recorded through the real audit writer: the SQL a user runs answers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import asyncpg

from core.atomic_position_manager import ApmConfig, AtomicPositionManager
from core.execution import Executor
from core.journal import Journal
from core.models import Tick
from core.money import utcnow
from core.position_book import PositionBook
from core.position_lifecycle import PositionLifecycle
from core.position_model import Position
from core.prices import PriceBoard
from core.retry import Backoff
from database.audit import AuditWriter
from exchanges.paper import PaperExchange
from tests.trading_harness import BTC, CountingIds, long_signal


async def open_and_flush(
    pool: asyncpg.Pool, tmp_path: Path, faults: dict[str, str] | None = None
) -> tuple[Position, PositionLifecycle]:
    venue = PaperExchange(None, faults=faults)
    venue.set_price(BTC, "50000")
    prices = PriceBoard()
    async with AuditWriter(pool, tmp_path / "spool") as audit:
        journal = Journal(audit, "main")
        executor = Executor(venue, journal, read_backoff=Backoff(tries=3, base_s=0.001))
        book = PositionBook()
        apm = AtomicPositionManager(
            venue,
            executor,
            book,
            CountingIds(55),
            ApmConfig(account="main", fill_timeout_s=0.3, flat_timeout_s=0.3, stop_backoff_s=0.001),
            last_price=prices.price,
        )
        lifecycle = PositionLifecycle(venue, executor, book, apm, prices)
        position = await apm.open_position_atomic(long_signal())
        await audit.flush(10)
    return position, lifecycle


async def test_happy_path_answers_the_users_queries(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Position 55: its MARKET order FILLED, its STOP order NEW, the entry trade, and the
    position active with the stop computed from the fill — all from plain SQL."""
    position, _ = await open_and_flush(pool, tmp_path)
    assert 55 == position.id
    market = await pool.fetch(
        "SELECT status, side, purpose FROM monitoring.orders"
        " WHERE position_id = 55 AND type = 'MARKET'"
    )
    assert [("FILLED", "buy", "entry")] == [tuple(r) for r in market]
    stops = await pool.fetch(
        "SELECT status, side, reduce_only, trigger_price FROM monitoring.orders"
        " WHERE position_id = 55 AND type LIKE 'STOP%'"
    )
    row = await pool.fetchrow(
        "SELECT status, entry_price, stop_loss_price, quantity"
        " FROM monitoring.positions WHERE id = 55"
    )
    assert row is not None
    expected_stop = (row["entry_price"] * Decimal("0.98")).quantize(Decimal("0.1"), ROUND_DOWN)
    assert [("NEW", "sell", True, expected_stop)] == [tuple(r) for r in stops]
    assert ("active", expected_stop, Decimal("0.1")) == (
        row["status"],
        row["stop_loss_price"],
        row["quantity"],
    )
    trades = await pool.fetch(
        "SELECT side, executed_qty, price FROM monitoring.trades WHERE order_type = 'MARKET'"
    )
    assert [("buy", Decimal("0.1"), row["entry_price"])] == [tuple(r) for r in trades]
    assert 2 == await pool.fetchval("SELECT count(*) FROM monitoring.orders")
    assert 1 == await pool.fetchval("SELECT count(*) FROM monitoring.trades")
    assert 0 == await pool.fetchval("SELECT count(*) FROM monitoring.positions_without_stop")


async def test_rollback_is_recorded_with_the_exit_on_the_opposite_side(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """reject_stop=1: position rolled_back with the reason; the rollback trade is a sell
    with realised P&L; no position is left without a stop."""
    position, _ = await open_and_flush(pool, tmp_path, {"reject_stop": "1"})
    row = await pool.fetchrow(
        "SELECT status, exit_reason FROM monitoring.positions WHERE id = $1", position.id
    )
    assert ("rolled_back", "stop-loss could not be placed") == tuple(row)  # type: ignore[arg-type]
    exits = await pool.fetch(
        "SELECT t.side, t.realized_pnl IS NOT NULL AS has_pnl FROM monitoring.trades t"
        " JOIN monitoring.orders o USING (client_order_id) WHERE o.purpose = 'rollback'"
    )
    assert [("sell", True)] == [tuple(r) for r in exits]
    assert 0 == await pool.fetchval("SELECT count(*) FROM monitoring.positions_without_stop")


async def test_position_samples_carry_pnl_percent_time_held_and_risk(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A price sample of an open position lands in monitoring.position_updates with its
    unrealised P&L in percent, seconds held and distance to the stop in percent."""
    venue = PaperExchange(None)
    venue.set_price(BTC, "50000")
    prices = PriceBoard()
    async with AuditWriter(pool, tmp_path / "spool") as audit:
        journal = Journal(audit, "main")
        executor = Executor(venue, journal, read_backoff=Backoff(tries=3, base_s=0.001))
        book = PositionBook()
        apm = AtomicPositionManager(
            venue,
            executor,
            book,
            CountingIds(7),
            ApmConfig(account="main"),
            last_price=prices.price,
        )
        lifecycle = PositionLifecycle(venue, executor, book, apm, prices)
        position = await apm.open_position_atomic(long_signal())
        assert position.entry_price is not None and position.stop_loss_price is not None
        await asyncio.sleep(0.05)  # held for a moment
        lifecycle.on_tick(Tick(BTC, Decimal("50500"), utcnow()))
        await audit.flush(10)
    row = await pool.fetchrow(
        "SELECT ts, price, unrealized_pnl_pct, held_s, risk_pct FROM monitoring.position_updates"
        " WHERE position_id = 7"
    )
    assert row is not None
    pnl_pct = (Decimal(50500) - position.entry_price) * 100 / position.entry_price
    risk = (Decimal(50500) - position.stop_loss_price) * 100 / Decimal(50500)
    held = Decimal((row["ts"] - position.opened_at) // timedelta(microseconds=1)) / 1_000_000
    assert (Decimal(50500), pnl_pct.quantize(Decimal("0.000001")), held) == (
        row["price"],
        row["unrealized_pnl_pct"],
        row["held_s"],
    )
    assert Decimal("0.05") <= held < Decimal(5)
    assert risk.quantize(Decimal("0.000001")) == row["risk_pct"]
