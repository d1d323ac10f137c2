"""No new risk while the audit trail cannot be kept: new entries and new orders are
rejected with "audit trail unavailable", nothing reaches the venue; closing, cancelling,
reduce-only orders and protection still work; new risk is accepted again once it is back."""

from __future__ import annotations

from dataclasses import dataclass

from core.intake import DONE, REJECTED, IntakeHandler
from tests.trading_harness import BTC, ETH, build_stack


@dataclass
class Trail:
    degraded: bool = False


def limit_buy(symbol: str = ETH, **extra: object) -> dict[str, object]:
    payload = {"symbol": symbol, "side": "buy", "type": "limit", "amount": "0.01", "price": "2000"}
    return {"kind": "place_order", "payload": {**payload, **extra}}


async def test_degraded_trail_rejects_new_risk_and_keeps_closing() -> None:
    """While degraded: a signal and a new order are rejected (venue untouched); a
    reduce-only order, a cancel and a close are done; afterwards a signal opens again."""
    trail = Trail()
    stack = build_stack(trail=trail)
    h = IntakeHandler("main", stack.apm, stack.lifecycle, stack.orders)
    opened = await h.signal({"symbol": BTC, "side": "long", "amount": "0.01"})
    resting = await h.command(limit_buy())
    assert (opened.status, resting.status) == (DONE, DONE)
    live = {o.client_order_id for o in stack.orders.active_orders()}

    trail.degraded = True
    refused = await h.signal({"symbol": ETH, "side": "short", "amount": "0.01"})
    assert (refused.status, refused.reason) == (REJECTED, "audit trail unavailable")
    order = await h.command(limit_buy())
    assert (order.status, order.reason) == (REJECTED, "audit trail unavailable")
    assert {o.client_order_id for o in stack.orders.active_orders()} == live  # nothing new
    assert len(stack.book) == 1  # no second position
    reduce = await h.command(
        {
            "kind": "place_order",
            "payload": {
                "symbol": BTC,
                "side": "sell",
                "type": "take_profit_market",
                "amount": "0.01",
                "trigger_price": "70000",
                "reduce_only": True,
                "position_id": opened.position_id,
            },
        }
    )
    assert reduce.status == DONE, reduce.reason
    cancelled = await h.command(
        {"kind": "cancel_order", "payload": {"order_id": resting.result["client_order_id"]}}
    )
    assert cancelled.status == DONE
    closed = await h.command(
        {"kind": "close_position", "payload": {"position_id": opened.position_id}}
    )
    assert (closed.status, closed.result["status"]) == (DONE, "closed")

    trail.degraded = False
    again = await h.signal({"symbol": ETH, "side": "short", "amount": "0.01"})
    assert (again.status, again.result["status"]) == (DONE, "active")
