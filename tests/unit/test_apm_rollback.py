"""Rollback and close when the venue misbehaves: flatness decided by our own fills (never by
a positions endpoint that lags), every step retried, every failed attempt a critical event."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from core.models import Side
from core.order_model import OrderType
from core.position_model import PositionStatus
from core.records import RecordKind
from core.venue import ExchangeUnavailable, OrderRejected, OrderRequest
from exchanges.paper import PaperExchange
from tests.trading_harness import BTC, Stack, build_stack, long_signal


class Venue:
    """The paper venue with counters a test sets to make some calls fail like a real one."""

    def __init__(self, venue: PaperExchange) -> None:
        self.v = venue
        self.reject_closes = 0  # reduce-only market orders refused (Binance -2022)
        self.cancel_outage = 0  # cancels answered 503
        self.closes_sent = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.v, name)

    async def create_order(self, request: OrderRequest) -> Any:
        if request.reduce_only and request.type is OrderType.MARKET:
            self.closes_sent += 1
            if self.reject_closes:
                self.reject_closes -= 1
                raise OrderRejected("ReduceOnly Order is rejected (-2022)")
        return await self.v.create_order(request)

    async def cancel_order(self, symbol: str, **kw: Any) -> Any:
        if self.cancel_outage:
            self.cancel_outage -= 1
            raise ExchangeUnavailable("503 Service Unavailable")
        return await self.v.cancel_order(symbol, **kw)


def stack_with(faults: dict[str, str] | None = None, **config: Any) -> tuple[Stack, Venue]:
    holder: dict[str, Venue] = {}
    stack = build_stack(faults, wrap=lambda v: holder.setdefault("w", Venue(v)), **config)
    return stack, holder["w"]


def critical(stack: Stack) -> list[str]:
    return [e["kind"] for e in stack.rows(RecordKind.EVENT) if e["severity"] == "critical"]


def orders_of(stack: Stack, purpose: str) -> list[Any]:
    return [o for o in stack.latest_orders().values() if o["purpose"] == purpose]


async def test_refused_rollback_close_under_a_lagging_endpoint_is_retried_until_flat() -> None:
    """A refused rollback close while the positions endpoint still shows nothing (5 s lag)
    is not taken for flat: our fills say 0.1 is held, so the close is retried (critical
    event) and the position ends rolled_back with the venue really flat."""
    stack, venue = stack_with({"reject_stop": "1", "position_lag_s": "5"})
    venue.reject_closes = 1
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ROLLED_BACK == position.status
    assert await stack.venue_position() is None
    assert ["rollback_failed"] == critical(stack)
    assert [("REJECTED", Decimal(0)), ("FILLED", Decimal("0.1"))] == [
        (o["status"], o["filled"]) for o in orders_of(stack, "rollback")
    ]
    assert Decimal(0) == position.quantity


async def test_rollback_close_refused_three_times_then_done_alerts_each_time() -> None:
    """The rollback loop: three refused closes are three critical events and three more
    attempts; the fourth closes the position, and exactly one close filled."""
    stack, venue = stack_with({"reject_stop": "1"})
    venue.reject_closes = 3
    position = await stack.apm.open_position_atomic(long_signal())
    assert (PositionStatus.ROLLED_BACK, "stop-loss could not be placed") == (
        position.status,
        position.exit_reason,
    )
    assert ["rollback_failed"] * 3 == critical(stack)
    assert 4 == venue.closes_sent
    assert [Decimal("0.1")] == [o["filled"] for o in orders_of(stack, "rollback") if o["filled"]]
    assert await stack.venue_position() is None
    exits = [t for t in stack.rows(RecordKind.TRADE) if t["realized_pnl"] is not None]
    assert [("sell", Decimal("0.1"))] == [(t["side"], t["executed_qty"]) for t in exits]


async def test_confirm_flat_waits_out_a_positions_endpoint_still_showing_the_position() -> None:
    """After the rollback close filled, an endpoint 0.3 s late still shows the position;
    the rollback waits until it agrees instead of raising a false 'not flat' alert."""
    # Stop attempts take ~1 s (back-off), so the open is visible on the lagging endpoint
    # by the time the rollback closes it, and the close shows only 0.3 s later.
    stack, _ = stack_with(
        {"reject_stop": "1", "position_lag_s": "0.3"}, stop_backoff_s=0.15, flat_timeout_s=3.0
    )
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ROLLED_BACK == position.status
    assert [] == critical(stack)
    assert [] == list(await stack.venue.fetch_positions([BTC]))
    assert 1 == len([o for o in orders_of(stack, "rollback") if o["status"] == "FILLED"])


async def test_entry_cancel_failing_in_the_rollback_is_retried_and_the_fill_closed() -> None:
    """A partly filled entry whose stop is refused and whose cancel answers 503: nothing
    escapes the open; what filled is closed at once, the cancel is retried (critical
    events) until the entry is cancelled, and the venue ends flat."""
    stack, venue = stack_with({"reject_stop": "1", "partial_fill": "0.5"})
    venue.cancel_outage = 4  # one rollback attempt's worth (the executor tries 4 times)
    position = await stack.apm.open_position_atomic(long_signal("0.2"))
    assert PositionStatus.ROLLED_BACK == position.status
    assert ["rollback_failed"] == critical(stack)
    assert await stack.venue_position() is None
    (entry,) = orders_of(stack, "entry")
    assert ("CANCELLED", Decimal("0.1")) == (entry["status"], entry["filled"])
    closes = orders_of(stack, "rollback")  # the thin book fills each close in parts
    assert Decimal("0.1") == sum(o["filled"] for o in closes)
    assert [] == [
        o["client_order_id"] for o in closes if o["status"] not in ("FILLED", "CANCELLED")
    ]
    assert [] == list(await stack.venue.fetch_open_orders())
    assert stack.book.on_symbol(BTC) is None


async def test_close_refused_because_the_venue_closed_it_records_that_exit() -> None:
    """A position closed by hand on the venue: our reduce-only close is refused, and the
    close records the venue's closing fill as the exit (with realised P&L) instead of
    trusting an empty positions endpoint."""
    stack, _ = stack_with()
    position = await stack.apm.open_position_atomic(long_signal())
    await stack.venue.create_order(
        OrderRequest(
            "by-hand-1", BTC, Side.SELL, OrderType.MARKET, Decimal("0.1"), reduce_only=True
        )
    )
    closed = await stack.lifecycle.close_position(position.id, "manual")
    assert (PositionStatus.CLOSED, Decimal(0)) == (closed.status, closed.quantity)
    manual = next(f for f in await stack.venue.fetch_fills(BTC) if f.client_order_id == "by-hand-1")
    exits = [t for t in stack.rows(RecordKind.TRADE) if t["realized_pnl"] is not None]
    assert [("by-hand-1", manual.price)] == [(t["client_order_id"], t["price"]) for t in exits]
    assert closed.realized_pnl == exits[0]["realized_pnl"]
    assert [] == list(await stack.venue.fetch_open_orders())


async def test_close_refused_under_a_lagging_endpoint_keeps_the_stop_and_alerts() -> None:
    """A refused close while the endpoint (5 s late) shows nothing: the position is still
    held by our fills, so it is not called closed; its stop stays on the venue, a critical
    event is raised, and reconciliation completes the close."""
    stack, venue = stack_with({"position_lag_s": "5"})
    position = await stack.apm.open_position_atomic(long_signal())
    venue.reject_closes = 1
    with pytest.raises(OrderRejected):
        await stack.lifecycle.close_position(position.id, "manual")
    assert ["close_failed"] == critical(stack)
    assert 1 == len(await stack.venue_stops())
    venue_position = await stack.venue_position()
    assert venue_position is not None and Decimal("0.1") == venue_position.qty
    await stack.reconciler.reconcile()
    final = stack.latest_position(position.id)
    assert ("closed", Decimal(0)) == (final["status"], final["quantity"])
    assert await stack.venue_position() is None
    assert [] == await stack.venue_stops()
