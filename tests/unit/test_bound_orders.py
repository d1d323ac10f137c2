"""Orders bound to a position end with it: one-cancels-other, no re-arm after a restart,
no unbound order trading against a position, no reduce-only order with nothing to reduce."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from core.errors import ValidationError
from core.order_model import OrderStatus
from core.order_requests import parse_order_request
from core.records import RecordKind
from tests.trading_harness import BTC, Stack, build_stack, long_signal, short_signal


def spec(**fields: Any) -> Any:
    return parse_order_request({"symbol": BTC, "amount": "0.1", **fields})


def cancel_reasons(stack: Stack, cid: str) -> list[str]:
    """The reasons in the order's history rows that ended it CANCELLED."""
    return [
        e["detail"]["reason"]
        for e in stack.rows(RecordKind.ORDER_EVENT)
        if e["client_order_id"] == cid
        and e["new_status"] == "CANCELLED"
        and "reason" in (e["detail"] or {})
    ]


async def bound_take_profit(stack: Stack, position_id: int, trigger: str = "60000") -> Any:
    return await stack.orders.place_order(
        spec(
            side="sell",
            type="take_profit_market",
            trigger_price=trigger,
            reduce_only=True,
            position_id=position_id,
        )
    )


async def test_close_disarms_a_take_profit_placed_with_position() -> None:
    """close ends an emulated take-profit placed with --position: CANCELLED, out of the
    trigger book, the reason naming the position's exit in the order and its history."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    tp = await bound_take_profit(stack, position.id)
    await stack.lifecycle.close_position(position.id)
    ended = stack.latest_orders()[tp.client_order_id]
    note = f"position {position.id} closed (manual)"
    assert ("CANCELLED", note) == (ended["status"], ended["error_message"])
    assert [note] == cancel_reasons(stack, tp.client_order_id)
    assert tp.client_order_id not in stack.triggers
    stack.tick(BTC, "61000")
    await stack.tasks.drain(5)
    assert await stack.venue_position() is None  # nothing fired against the flat account


async def test_stop_out_ends_the_take_profit_and_the_bound_orders() -> None:
    """A stop fill closes the position; its take-profit is cancelled on the venue and a
    bound emulated order disarmed, each saying 'position N closed (stop_loss)'."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal(take_profit_percent=Decimal("5")))
    tp = await bound_take_profit(stack, position.id, "58000")
    live = stack.book.get(position.id)
    assert live is not None and live.take_profit is not None
    native_tp = live.take_profit.client_order_id
    stack.tick(BTC, str(position.stop_loss_price - 50))
    await stack.lifecycle.sync(position.id)
    note = f"position {position.id} closed (stop_loss)"
    latest = stack.latest_orders()
    assert ("CANCELLED", note) == (latest[native_tp]["status"], latest[native_tp]["error_message"])
    assert ("CANCELLED", note) == (
        latest[tp.client_order_id]["status"],
        latest[tp.client_order_id]["error_message"],
    )
    assert [] == list(await stack.venue.fetch_open_orders())


async def test_rollback_ends_the_bound_orders() -> None:
    """A position rolled back ends its bound orders with 'position N rolled_back (...)'."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    tp = await bound_take_profit(stack, position.id)
    live = stack.book.get(position.id)
    assert live is not None
    async with stack.book.lock(BTC):
        await stack.apm.rollback(live, "test rollback")
    ended = stack.latest_orders()[tp.client_order_id]
    assert ended["status"] == "CANCELLED"
    assert ended["error_message"] == f"position {position.id} rolled_back (test rollback)"


async def test_a_native_order_bound_to_the_position_is_cancelled_on_the_venue() -> None:
    """A resting venue limit placed with --position is cancelled on the venue at the close."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    limit = await stack.orders.place_order(
        spec(side="sell", type="limit", price="70000", position_id=position.id, native=True)
    )
    assert limit.status is OrderStatus.NEW
    await stack.lifecycle.close_position(position.id)
    ended = stack.orders.get_order(limit.client_order_id)
    assert ended is not None and ended.status is OrderStatus.CANCELLED
    assert [] == list(await stack.venue.fetch_open_orders())


async def test_restart_does_not_rearm_an_order_of_a_closed_position() -> None:
    """Restored after a restart while its position is closed, a pending emulated order is
    cancelled with the reason, never re-armed."""
    old = build_stack()
    position = await old.apm.open_position_atomic(long_signal())
    tp = await bound_take_profit(old, position.id)
    _, orders_before_close = old.snapshot()
    await old.lifecycle.close_position(position.id)
    positions_after_close, _ = old.snapshot()
    new = build_stack(venue=old.venue, prices={})
    new.reconciler.restore(positions_after_close, orders_before_close)
    assert tp.client_order_id not in new.triggers
    ended = new.latest_orders()[tp.client_order_id]
    assert ended["status"] == "CANCELLED"
    assert ended["error_message"] == f"position {position.id} is no longer open"


async def test_reconciliation_cancels_a_resting_order_of_a_closed_position() -> None:
    """A venue order bound to a position that is no longer open, found after a restart, is
    cancelled on the venue by the first reconciliation pass."""
    old = build_stack()
    position = await old.apm.open_position_atomic(long_signal())
    limit = await old.orders.place_order(
        spec(side="sell", type="limit", price="70000", position_id=position.id, native=True)
    )
    _, orders_before_close = old.snapshot()
    old.apm.on_position_end(_nothing)  # the old daemon dies before ending its orders
    await old.lifecycle.close_position(position.id)
    assert [limit.client_order_id] == [
        o.client_order_id for o in await old.venue.fetch_open_orders()
    ]
    positions_after_close, _ = old.snapshot()
    new = build_stack(venue=old.venue, prices={})
    new.reconciler.restore(positions_after_close, orders_before_close)
    await new.reconciler.reconcile()
    assert [] == list(await new.venue.fetch_open_orders())
    ended = new.orders.get_order(limit.client_order_id)
    assert ended is not None and ended.status is OrderStatus.CANCELLED


async def _nothing(position_id: int, note: str) -> None:
    return None


async def test_an_unbound_order_against_a_position_is_refused() -> None:
    """Without --position, an order on the closing side of an open position is refused
    naming the position (it would net against it behind its stop)."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    with pytest.raises(ValidationError, match=f"--position {position.id}"):
        await stack.orders.place_order(spec(side="sell", type="limit", price="70000"))


async def test_an_unbound_reduce_only_order_is_bound_to_the_position() -> None:
    """A reduce-only order on the closing side can only reduce the position: it is bound
    to it, and ends with it."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    tp = await stack.orders.place_order(
        spec(side="sell", type="take_profit_market", trigger_price="60000", reduce_only=True)
    )
    assert tp.position_id == position.id
    await stack.lifecycle.close_position(position.id)
    assert stack.latest_orders()[tp.client_order_id]["status"] == "CANCELLED"


async def test_an_order_that_would_net_against_a_later_position_is_cancelled_on_fire() -> None:
    """A buy limit placed while flat does not fire into a short opened since: it is
    cancelled with the reason, and the short keeps its stop."""
    stack = build_stack()
    limit = await stack.orders.place_order(spec(side="buy", type="limit", price="45000"))
    position = await stack.apm.open_position_atomic(short_signal())
    stack.tick(BTC, "44900")
    await stack.tasks.drain(5)
    ended = stack.orders.get_order(limit.client_order_id)
    assert ended is not None and ended.status is OrderStatus.CANCELLED
    assert f"open position {position.id}" in (ended.error_message or "")
    live = stack.book.get(position.id)
    assert live is not None and live.stop is not None and not live.stop.status.is_terminal
    venue = await stack.venue_position()
    assert venue is not None and venue.qty == Decimal("-0.1")


async def test_a_reduce_only_order_with_nothing_to_reduce_is_cancelled_on_fire() -> None:
    """A reduce-only stop whose venue position is gone when it fires never executes: it
    ends CANCELLED with the reason."""
    stack = build_stack()
    await stack.orders.place_order(spec(side="buy", type="limit", price="51000", native=True))
    stop = await stack.orders.place_order(
        spec(side="sell", type="stop_market", trigger_price="49000", reduce_only=True)
    )
    await stack.orders.place_order(spec(side="sell", type="limit", price="49900", native=True))
    assert await stack.venue_position() is None
    stack.tick(BTC, "48900")
    await stack.tasks.drain(5)
    ended = stack.orders.get_order(stop.client_order_id)
    assert ended is not None and ended.status is OrderStatus.CANCELLED
    assert "no open position" in (ended.error_message or "")
    assert await stack.venue_position() is None


async def test_a_partial_exit_resizes_the_stop_and_take_profit() -> None:
    """A partial exit by a bound order leaves the stop and the take-profit fitted to what
    is held, the new stop placed before the old one is cancelled."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal(take_profit_percent=Decimal("5")))
    await stack.orders.place_order(
        spec(side="sell", type="limit", price="51000", amount="0.04", position_id=position.id)
    )
    stack.tick(BTC, "51000")
    await stack.tasks.drain(5)
    live = stack.book.get(position.id)
    assert live is not None and live.position.quantity == Decimal("0.06")
    assert live.stop is not None and live.stop.remaining == Decimal("0.06")
    assert live.take_profit is not None and live.take_profit.remaining == Decimal("0.06")
    resting = await stack.venue.fetch_open_orders()
    assert sorted(o.amount for o in resting) == [Decimal("0.06"), Decimal("0.06")]
    # Create-then-cancel: the replacement stop rests (NEW) before the old one is cancelled.
    stop_events = [
        (e["client_order_id"], e["new_status"])
        for e in stack.rows(RecordKind.ORDER_EVENT)
        if "-sl-" in e["client_order_id"] and e["new_status"] in ("NEW", "CANCELLED")
    ]
    old, new = stop_events[0][0], live.stop.client_order_id
    assert old != new
    assert stop_events.index((new, "NEW")) < stop_events.index((old, "CANCELLED"))
