"""A position's life after the open: closes, venue stop fills, stop moves (failure modes
8, 9, 12), break-even and trailing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from core.models import EntryType
from core.order_model import OrderType
from core.position_model import PositionStatus
from core.records import RecordKind
from exchanges.paper import PaperExchange
from tests.trading_harness import BTC, build_stack, long_signal, short_signal


async def test_manual_close_records_exit_and_leaves_no_orphan_orders() -> None:
    """Failure mode 8: after a close the venue holds no order and no position of ours."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal(take_profit_percent=Decimal("5")))
    stack.tick(BTC, "51000")
    closed = await stack.lifecycle.close_position(position.id, "manual")
    assert PositionStatus.CLOSED == closed.status
    assert "manual" == closed.exit_reason
    assert [] == list(await stack.venue.fetch_open_orders())
    assert await stack.venue_position() is None
    exits = [o for o in stack.latest_orders().values() if o["purpose"] == "exit"]
    assert [("sell", "FILLED", True)] == [(o["side"], o["status"], o["reduce_only"]) for o in exits]
    statuses = {o["purpose"]: o["status"] for o in stack.latest_orders().values()}
    assert "CANCELLED" == statuses["stop_loss"] == statuses["take_profit"]


async def test_close_realises_pnl_with_fees_and_no_leverage() -> None:
    """Failure mode 12: realised P&L = (exit − entry) × qty − both fees, once."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal("0.2"))
    stack.tick(BTC, "51000")
    closed = await stack.lifecycle.close_position(position.id)
    trades = stack.rows(RecordKind.TRADE)
    entry, exit_ = trades
    gross = (exit_["price"] - entry["price"]) * Decimal("0.2")
    assert gross - entry["fee"] - exit_["fee"] == closed.realized_pnl
    assert closed.realized_pnl == exit_["realized_pnl"]
    assert closed.fees == entry["fee"] + exit_["fee"]


async def test_stop_fill_on_the_venue_closes_the_position_once() -> None:
    """A stop that fires on the venue is detected, recorded with its P&L, and a later close
    request does not count the exit twice (failure mode 12)."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    assert position.stop_loss_price is not None
    stack.tick(BTC, str(position.stop_loss_price - 100))  # gap through the stop
    closed = await stack.lifecycle.close_position(position.id, "manual")
    assert PositionStatus.CLOSED == closed.status
    assert "stop_loss" == closed.exit_reason
    pnl_rows = [t for t in stack.rows(RecordKind.TRADE) if t["realized_pnl"] is not None]
    assert 1 == len(pnl_rows)
    assert pnl_rows[0]["price"] < position.stop_loss_price  # filled at the gap, not the stop
    assert await stack.venue_position() is None
    assert [] == list(await stack.venue.fetch_open_orders())


async def test_take_profit_fill_cancels_the_stop() -> None:
    """A take-profit fill closes the position and cancels the stop (no orphan)."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(short_signal(take_profit_percent=Decimal("2")))
    assert position.take_profit_price is not None
    stack.tick(BTC, str(position.take_profit_price - 10))
    await stack.lifecycle.sync(position.id)
    assert stack.book.get(position.id) is None
    final = stack.latest_position(position.id)
    assert ("closed", "take_profit") == (final["status"], final["exit_reason"])
    assert final["realized_pnl"] > 0
    assert [] == list(await stack.venue.fetch_open_orders())


class StopWatch:
    """Wraps the venue and checks, after every call, that the position is never without a
    stop for its full quantity while the venue holds a position."""

    def __init__(self, venue: PaperExchange) -> None:
        self._venue = venue
        self.violations: list[str] = []
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._venue, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def watched(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            await self._check(name)
            return result

        return watched

    async def _check(self, after: str) -> None:
        self.calls += 1
        state = self._venue._book
        held = {p.symbol: abs(p.qty) for p in state.positions.values() if p.qty != 0}
        stops = [
            o for o in await self._venue.fetch_open_orders() if o.type is OrderType.STOP_MARKET
        ]
        for symbol, qty in held.items():
            covered = sum((s.amount or 0) for s in stops if s.symbol == symbol)
            if covered < qty and after not in ("create_order",):
                self.violations.append(f"after {after}: {symbol} {qty} covered {covered}")


async def test_trailing_moves_never_leave_the_position_without_a_stop() -> None:
    """Failure modes 8 and 9: trailing moves place the new stop before cancelling the old,
    so after every venue call a stop covers the position, and one stop remains."""
    watch: list[StopWatch] = []

    def wrap(venue: PaperExchange) -> StopWatch:
        watch.append(StopWatch(venue))
        return watch[0]

    stack = build_stack(wrap=wrap, trailing_callback_pct=Decimal("1"))
    position = await stack.apm.open_position_atomic(long_signal())
    first_stop = position.stop_loss_price
    assert first_stop is not None
    moved = 0
    for price in range(50100, 52000, 100):
        stack.tick(BTC, str(price))
        live = stack.book.get(position.id)
        assert live is not None
        live.last_stop_move = None  # no rate limit in this test: every tick may move
        await asyncio.sleep(0)
        await stack.tasks.drain(5)
        moved += 1
    live = stack.book.get(position.id)
    assert live is not None and live.position.stop_loss_price is not None
    assert live.position.stop_loss_price > first_stop
    assert Decimal("51900") * Decimal("0.99") <= live.position.stop_loss_price
    assert [] == watch[0].violations
    assert 1 == len(await stack.venue_stops())
    assert watch[0].calls > moved


async def test_break_even_moves_the_stop_to_entry_plus_fees() -> None:
    """Once profit reaches the break-even percent, the stop moves to the level where a
    stop-out pays back the entry fee and its own exit fee: a P&L of zero, not below."""
    stack = build_stack(breakeven_pct=Decimal("1"))
    position = await stack.apm.open_position_atomic(long_signal())
    assert position.entry_price is not None
    stack.tick(BTC, str(position.entry_price * Decimal("1.011")))
    await stack.tasks.drain(5)
    live = stack.book.get(position.id)
    assert live is not None and live.position.stop_loss_price is not None
    stop = live.position.stop_loss_price
    rate = position.fees / (position.entry_price * position.quantity)  # taker, both ways
    pnl_at_stop = (stop - position.entry_price) * position.quantity
    pnl_at_stop -= position.fees + stop * position.quantity * rate
    assert Decimal(0) <= pnl_at_stop < Decimal("0.1") * position.quantity
    assert 1 == len(await stack.venue_stops())


async def test_a_stop_already_crossed_becomes_a_market_close() -> None:
    """A stop move whose level the price has passed closes the position at market instead."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    stack.tick(BTC, "50500")
    await stack.lifecycle.move_stop(position.id, Decimal("50600"))
    final = stack.latest_position(position.id)
    assert "closed" == final["status"]
    assert final["exit_reason"].endswith("stop_through")
    assert await stack.venue_position() is None


async def test_a_stop_cancelled_behind_our_back_is_replaced() -> None:
    """A stop that disappears from the venue is replaced at the next sync, with an alert."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    live = stack.book.get(position.id)
    assert live is not None and live.stop is not None
    await stack.venue.cancel_order(BTC, client_order_id=live.stop.client_order_id)
    await stack.lifecycle.sync(position.id)
    assert 1 == len(await stack.venue_stops())
    kinds = [e["kind"] for e in stack.rows(RecordKind.EVENT)]
    assert "stop_missing" in kinds


class CallCounter:
    """The venue, counting calls by method name."""

    def __init__(self, venue: PaperExchange) -> None:
        self._venue = venue
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._venue, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return await attr(*args, **kwargs)

        return counted


async def test_quiet_positions_cost_one_listing_per_sync_pass() -> None:
    """sync_all asks the venue once when nothing moved, and still finds a stop that fired."""
    counter: list[CallCounter] = []
    stack = build_stack(wrap=lambda venue: counter.append(CallCounter(venue)) or counter[0])
    first = await stack.apm.open_position_atomic(long_signal())
    await stack.apm.open_position_atomic(short_signal(symbol="ETH/USDT:USDT", amount="1"))
    counter[0].calls.clear()
    await stack.lifecycle.sync_all()
    assert {"fetch_open_orders": 1} == counter[0].calls
    assert first.stop_loss_price is not None
    stack.tick(BTC, str(first.stop_loss_price - 10))
    await stack.lifecycle.sync_all()
    assert stack.book.get(first.id) is None
    assert 1 == len(stack.book)


def fill_part(venue: PaperExchange, client_order_id: str, qty: str, price: str) -> None:
    """The paper venue's matching engine executes part of a resting limit (a thin book),
    at ``price`` (at or better than the limit), as a maker."""
    book = venue._book
    order = book.by_client[client_order_id]
    book._execute(order, Decimal(qty), Decimal(price), maker=True)
    venue._commit()


async def test_limit_entry_filling_in_parts_is_protected_at_the_averaged_fill() -> None:
    """A limit entry filling in parts: after the first part a stop (and take-profit) for
    what filled, from that fill; after the second, both cover the whole quantity at
    prices computed from the averaged fill, and the old ones are gone from the venue."""
    stack = build_stack()
    signal = long_signal(
        entry_type=EntryType.LIMIT,
        price=Decimal("49900"),
        stop_loss_percent=Decimal("2"),
        take_profit_percent=Decimal("4"),
    )
    position = await stack.apm.open_position_atomic(signal)
    assert PositionStatus.ENTRY_PLACED == position.status
    live = stack.book.get(position.id)
    assert live is not None and live.entry is not None
    cid = live.entry.client_order_id
    fill_part(stack.venue, cid, "0.04", "49900")
    await stack.lifecycle.sync_all()
    assert (PositionStatus.ACTIVE, Decimal("0.04")) == (
        live.position.status,
        live.position.quantity,
    )
    assert [(Decimal("0.04"), Decimal("48902.0"))] == [
        (s.amount, s.trigger_price) for s in await stack.venue_stops()
    ]
    fill_part(stack.venue, cid, "0.06", "49800")
    await stack.lifecycle.sync_all()
    average = Decimal("49840")  # (0.04 × 49900 + 0.06 × 49800) / 0.1
    assert (Decimal("0.1"), average) == (live.position.quantity, live.position.entry_price)
    stop = (average * Decimal("0.98")).quantize(Decimal("0.1"), ROUND_DOWN)
    take = (average * Decimal("1.04")).quantize(Decimal("0.1"), ROUND_UP)
    assert [(Decimal("0.1"), stop)] == [
        (s.amount, s.trigger_price) for s in await stack.venue_stops()
    ]
    tps = [
        o
        for o in await stack.venue.fetch_open_orders(BTC)
        if o.type is OrderType.TAKE_PROFIT_MARKET
    ]
    assert [(Decimal("0.1"), take)] == [(o.amount, o.trigger_price) for o in tps]
    assert (stop, take) == (live.position.stop_loss_price, live.position.take_profit_price)


async def test_a_stop_moved_by_a_rule_keeps_its_level_when_the_entry_grows() -> None:
    """A stop break-even or trailing has moved is resized when the entry grows, never
    moved back to the level computed from the fill."""
    stack = build_stack()
    signal = long_signal(entry_type=EntryType.LIMIT, price=Decimal("49900"))
    position = await stack.apm.open_position_atomic(signal)
    live = stack.book.get(position.id)
    assert live is not None and live.entry is not None
    cid = live.entry.client_order_id
    fill_part(stack.venue, cid, "0.04", "49900")
    await stack.lifecycle.sync_all()
    await stack.lifecycle.move_stop(position.id, Decimal("49500"), "trailing")
    fill_part(stack.venue, cid, "0.06", "49800")
    await stack.lifecycle.sync_all()
    assert [(Decimal("0.1"), Decimal("49500"))] == [
        (s.amount, s.trigger_price) for s in await stack.venue_stops()
    ]


async def test_the_position_row_follows_the_price_while_open() -> None:
    """A sample also brings the position's own row up to date: after a tick the row
    (the newest snapshot) shows the current price, the unrealised P&L and the marks."""
    stack = build_stack()
    opened = await stack.apm.open_position_atomic(long_signal("0.1"))
    stack.lifecycle._sample_interval = timedelta(0)
    stack.tick(BTC, "50500")
    row = stack.latest_position(opened.id)
    assert (Decimal("50500"), Decimal("50500")) == (row["current_price"], row["high_water_mark"])
    assert row["unrealized_pnl"] is not None and row["unrealized_pnl"] > 0
