"""Reconciliation after a restart: the venue (paper) outlives the daemon; a new stack
rebuilt from the audit trail must protect, close, fail or cancel what it finds."""

from __future__ import annotations

import contextlib
from decimal import Decimal

from core.models import EntryType, Side
from core.order_model import OrderStatus, OrderType
from core.order_requests import OrderSpec
from core.position_model import PositionStatus
from core.records import RecordKind
from core.venue import OrderRequest
from tests.trading_harness import BTC, Stack, build_stack, long_signal


def restart(old: Stack, *, lose_audit: bool = False) -> Stack:
    """A new daemon on the same venue, restored from what the audit trail holds."""
    new = build_stack(venue=old.venue, prices={})
    positions, orders = ([], []) if lose_audit else old.snapshot()
    new.reconciler.restore(positions, orders)
    return new


async def crash_before_stop(stack: Stack) -> None:
    """Open a position but die after the entry filled, before the stop was placed."""
    stack.venue.faults = {"reject_stop": 1}
    live_before = stack.apm.place_stop

    async def die(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed between entry and stop")

    stack.apm.place_stop = die  # type: ignore[method-assign]
    with contextlib.suppress(SystemExit):
        await stack.apm.open_position_atomic(long_signal())
    stack.apm.place_stop = live_before  # type: ignore[method-assign]
    stack.venue.faults = {}


async def test_position_left_without_stop_is_protected() -> None:
    """Killed between entry and stop: the restarted daemon places the stop; one position,
    one stop, no duplicate entry."""
    old = build_stack()
    await crash_before_stop(old)
    assert [] == await old.venue_stops()
    new = restart(old)
    await new.reconciler.reconcile()
    stops = await new.venue_stops()
    assert [Decimal("0.1")] == [s.amount for s in stops]
    (live,) = list(new.book)
    assert PositionStatus.ACTIVE == live.position.status
    assert 1 == len([f for f in await new.venue.fetch_fills(BTC) if f.side is Side.BUY])


async def test_unrecorded_position_filled_by_our_entry_is_adopted() -> None:
    """The audit trail lost everything, but the venue's fills carry our client id: the
    position is adopted under its own id and protected."""
    old = build_stack()
    await crash_before_stop(old)
    new = restart(old, lose_audit=True)
    await new.reconciler.reconcile()
    (live,) = list(new.book)
    assert 1 == live.id  # from td-main-p1-en-1
    assert 1 == len(await new.venue_stops())
    assert "adopted" in [e["kind"] for e in new.rows(RecordKind.EVENT)]


async def test_stop_filled_while_down_closes_with_the_real_exit() -> None:
    """The stop fired while the daemon was down: reconciliation records the exit trade
    with its realised P&L and closes the position as stop_loss."""
    old = build_stack()
    position = await old.apm.open_position_atomic(long_signal())
    assert position.stop_loss_price is not None
    old.venue.set_price(BTC, position.stop_loss_price - 50)
    new = restart(old)
    await new.reconciler.reconcile()
    assert 0 == len(new.book)
    final = new.latest_position(position.id)
    assert ("closed", "stop_loss") == (final["status"], final["exit_reason"])
    exits = [t for t in new.rows(RecordKind.TRADE) if t["realized_pnl"] is not None]
    assert 1 == len(exits)
    assert exits[0]["realized_pnl"] < 0


async def test_cancelled_entry_is_not_treated_as_filled() -> None:
    """Failure mode 15: a limit entry cancelled while down fails the position; no stop is
    placed for a position that does not exist."""
    old = build_stack()
    signal = long_signal(entry_type=EntryType.LIMIT, price=Decimal("49000"))
    position = await old.apm.open_position_atomic(signal)
    assert PositionStatus.ENTRY_PLACED == position.status
    live = old.book.get(position.id)
    assert live is not None and live.entry is not None
    await old.venue.cancel_order(BTC, client_order_id=live.entry.client_order_id)
    new = restart(old)
    await new.reconciler.reconcile()
    assert [] == await new.venue_stops()
    final = new.latest_position(position.id)
    assert ("failed", "entry never filled") == (final["status"], final["exit_reason"])


async def test_orphan_stop_of_ours_is_cancelled_and_unknown_order_reported() -> None:
    """A stop of ours for a position that no longer exists is cancelled; an order that is
    not ours is reported and left resting."""
    stack = build_stack()
    await stack.venue.create_order(
        OrderRequest(
            "td-main-p99-sl-1",
            BTC,
            Side.SELL,
            OrderType.STOP_MARKET,
            Decimal("0.01"),
            trigger_price=Decimal("40000"),
            reduce_only=False,
        )
    )
    await stack.venue.create_order(
        OrderRequest(
            "someone-else-1",
            BTC,
            Side.BUY,
            OrderType.LIMIT,
            Decimal("0.01"),
            price=Decimal("40000"),
        )
    )
    await stack.reconciler.reconcile()
    remaining = [o.client_order_id for o in await stack.venue.fetch_open_orders()]
    assert ["someone-else-1"] == remaining
    kinds = [e["kind"] for e in stack.rows(RecordKind.EVENT)]
    assert ("orphan_cancelled" in kinds, "unknown_order" in kinds) == (True, True)


async def test_emulated_orders_are_rearmed_after_restart() -> None:
    """A pending emulated stop survives a restart and still fires on its price."""
    from core.order_requests import parse_order_request

    old = build_stack()
    order = await old.orders.place_order(
        parse_order_request(
            {
                "symbol": BTC,
                "side": "sell",
                "type": "stop_market",
                "amount": "0.01",
                "trigger_price": "49900",
            }
        )
    )
    new = restart(old)
    assert order.client_order_id in new.triggers
    new.tick(BTC, "49800")
    await new.tasks.drain(5)
    done = new.orders.get_order(order.client_order_id)
    assert done is not None and OrderStatus.FILLED == done.status


async def test_healthy_position_is_left_alone() -> None:
    """A protected position reconciles to no action: same stop, no event but 'restored'."""
    old = build_stack()
    await old.apm.open_position_atomic(long_signal())
    stops_before = [s.client_order_id for s in await old.venue_stops()]
    new = restart(old)
    await new.reconciler.reconcile()
    assert stops_before == [s.client_order_id for s in await new.venue_stops()]
    kinds = {e["kind"] for e in new.rows(RecordKind.EVENT)}
    assert {"restored"} == kinds


async def close_by_hand(stack: Stack, client_order_id: str = "by-hand-1") -> None:
    """Someone closes the position on the venue's own interface (not through us)."""
    await stack.venue.create_order(
        OrderRequest(
            client_order_id,
            BTC,
            Side.SELL,
            OrderType.MARKET,
            Decimal("0.1"),
            reduce_only=True,
        )
    )


async def test_position_closed_on_the_venue_is_closed_with_the_real_exit_fill() -> None:
    """A position closed by hand on the venue is closed at the first pass with the venue's
    closing execution as its exit trade, realised P&L = (exit − entry) × qty − both fees,
    and its stop cancelled; the event is a warning, not a blind critical note."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    assert position.entry_price is not None
    await close_by_hand(stack)
    await stack.reconciler.reconcile()
    final = stack.latest_position(position.id)
    assert ("closed", "closed_on_venue", Decimal(0)) == (
        final["status"],
        final["exit_reason"],
        final["quantity"],
    )
    fill = next(f for f in await stack.venue.fetch_fills(BTC) if f.client_order_id == "by-hand-1")
    entry_fee = stack.rows(RecordKind.TRADE)[0]["fee"]
    expected = (fill.price - position.entry_price) * Decimal("0.1") - entry_fee - fill.fee
    exits = [t for t in stack.rows(RecordKind.TRADE) if t["realized_pnl"] is not None]
    assert [("by-hand-1", "sell", fill.price, expected)] == [
        (t["client_order_id"], t["side"], t["price"], t["realized_pnl"]) for t in exits
    ]
    assert (expected, fill.price) == (final["realized_pnl"], final["exit_price"])
    assert [] == await stack.venue_stops()
    severities = {e["kind"]: e["severity"] for e in stack.rows(RecordKind.EVENT)}
    assert "warning" == severities["closed_elsewhere"]


async def test_a_lagging_positions_endpoint_never_closes_a_fresh_position() -> None:
    """An endpoint 5 s late shows a fresh position flat on back-to-back passes: our fills
    say it is held and no execution closed it, so it stays active with its stop."""
    stack = build_stack({"position_lag_s": "5"})
    position = await stack.apm.open_position_atomic(long_signal())
    await stack.reconciler.reconcile()
    await stack.reconciler.reconcile()
    live = stack.book.get(position.id)
    assert live is not None and PositionStatus.ACTIVE == live.position.status
    assert [Decimal("0.1")] == [s.amount for s in await stack.venue_stops()]
    kinds = [e["kind"] for e in stack.rows(RecordKind.EVENT)]
    assert "closed_elsewhere" not in kinds


async def _partly_closed_by_a_linked_order(stack: Stack) -> int:
    """A 1 BTC long reduced to 0.9 by a manual reduce-only limit placed for it."""
    position = await stack.apm.open_position_atomic(long_signal("1"))
    spec = OrderSpec(
        BTC,
        Side.SELL,
        OrderType.LIMIT,
        Decimal("0.1"),
        price=Decimal("50100"),
        reduce_only=True,
        position_id=position.id,
    )
    await stack.orders.place_order(spec)
    stack.tick(BTC, "50100")
    await stack.tasks.drain(5)
    return position.id


async def test_a_partial_close_by_a_linked_manual_order_is_not_undone() -> None:
    """A reconcile after a manual order for the position sold 0.1 of 1: the position
    stays 0.9 with a 0.9 stop, as the venue holds; nothing is 'protected' back to 1."""
    stack = build_stack()
    pid = await _partly_closed_by_a_linked_order(stack)
    await stack.reconciler.reconcile()
    live = stack.book.get(pid)
    held = await stack.venue_position()
    assert live is not None and live.stop is not None and held is not None
    assert (Decimal("0.900"),) * 3 == (live.position.quantity, live.stop.amount, held.qty)
    assert [] == [e for e in stack.rows(RecordKind.EVENT) if e["kind"] == "protecting"]


async def test_a_partial_close_by_a_linked_manual_order_survives_a_restart() -> None:
    """The same after a restart rebuilt from the audit trail: the linked order's fills
    are counted, so the restarted daemon keeps 0.9 and its 0.9 stop."""
    old = build_stack()
    pid = await _partly_closed_by_a_linked_order(old)
    new = restart(old)
    await new.reconciler.reconcile()
    live = new.book.get(pid)
    assert live is not None and live.stop is not None
    assert (Decimal("0.900"), Decimal("0.900")) == (live.position.quantity, live.stop.amount)
    assert [] == [e for e in new.rows(RecordKind.EVENT) if e["kind"] == "protecting"]
