"""Folding what a venue says about an order into our Order, without trusting gaps.

Venues answer with anything from a full order with fills to an id-only acknowledgement.
:func:`apply_snapshot` takes what is there and leaves the rest as it was: a missing status
is not "cancelled", a missing average price is not 0 (failure mode 1), and fills are
applied once each by trade id. When the venue reports an executed quantity it gave no
fills for, the difference becomes one aggregate fill whose id names the order and the
cumulative quantity, so replaying the same snapshot is still a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.money import ZERO, utcnow
from core.order_model import Fill, Order, OrderStatus, can_transition
from core.restore import RECORDED
from core.venue import ExchangeOrder


def apply_snapshot(
    order: Order, snapshot: ExchangeOrder, fills: Sequence[Fill] = ()
) -> tuple[Order, list[Fill]]:
    """Return the updated order and the fills that were new to it."""
    updated = order
    if updated.status in (OrderStatus.PENDING, OrderStatus.TRIGGERED):
        # The venue knows the order, so it was sent, whatever we had recorded.
        updated = updated.with_status(OrderStatus.SUBMITTED)
    if snapshot.exchange_order_id and snapshot.exchange_order_id != order.exchange_order_id:
        updated = updated.with_exchange_id(snapshot.exchange_order_id)
    new_fills: list[Fill] = []
    real = [f for f in (*snapshot.fills, *fills) if f.amount > 0]
    real, updated = _swap_placeholder(updated, real)
    for fill in real:
        if not updated.has_fill(fill.trade_id):
            updated = updated.with_fill(fill)
            new_fills.append(fill)
    aggregate = _aggregate_fill(updated, snapshot)
    if aggregate is not None:
        updated = updated.with_fill(aggregate)
        new_fills.append(aggregate)
    updated = _apply_status(updated, snapshot.status)
    return updated, new_fills


def _swap_placeholder(order: Order, real: list[Fill]) -> tuple[list[Fill], Order]:
    """Replace a restored placeholder fill (core/restore.py) by the venue's real fills.

    The placeholder stands for executions already recorded before a restart, so the real
    fills it covers (oldest first) are put in place silently and only the rest are
    returned as new. Without enough real fills to cover it, the placeholder stays.
    """
    holder = next((f for f in order.fills if f.trade_id.endswith(RECORDED)), None)
    if holder is None or not real:
        return real, order
    ordered = sorted(real, key=lambda f: f.ts)
    if sum((f.amount for f in ordered), ZERO) < holder.amount:
        return [], order
    covered, rest, total = [], [], ZERO
    for fill in ordered:
        if total < holder.amount:
            covered.append(fill)
            total += fill.amount
        else:
            rest.append(fill)
    kept = tuple(f for f in order.fills if f is not holder) + tuple(covered)
    return rest, order.with_fills_replaced(kept)


def _aggregate_fill(order: Order, snapshot: ExchangeOrder) -> Fill | None:
    """A fill for executed quantity the venue reported without the executions."""
    reported = snapshot.filled
    if reported is None and snapshot.status is OrderStatus.FILLED and snapshot.amount:
        reported = snapshot.amount
    if reported is None or reported <= order.filled or snapshot.average_price is None:
        return None
    if snapshot.average_price <= 0:
        return None
    delta = reported - order.filled
    # Price of the unseen part: total cost reported minus the cost of fills we hold.
    known_cost = sum((f.price * f.amount for f in order.fills), ZERO)
    price = (snapshot.average_price * reported - known_cost) / delta
    fee = ZERO
    if snapshot.fee is not None and snapshot.fee > order.fee:
        fee = snapshot.fee - order.fee
    return Fill(
        trade_id=f"{snapshot.exchange_order_id or order.client_order_id}:cum:{reported}",
        price=price,
        amount=delta,
        fee=fee,
        fee_currency=snapshot.fee_currency,
        ts=snapshot.ts or utcnow(),
    )


def _apply_status(order: Order, status: OrderStatus | None) -> Order:
    """Move to the venue's status where the machine allows it; ignore what adds nothing."""
    if status is None or status is order.status or order.status.is_terminal:
        return order
    if status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED):
        # Fill-driven statuses come from the fills themselves, never from a bare word.
        return order
    if status is OrderStatus.NEW and order.status is not OrderStatus.SUBMITTED:
        return order
    if can_transition(order.status, status):
        return order.with_status(status)
    return order


def unknown_reply(snapshot: ExchangeOrder) -> bool:
    """True when a reply leaves the execution unknown (no status, or no price for a fill)."""
    if snapshot.status is None:
        return True
    executed = snapshot.filled or ZERO
    has_price = bool(snapshot.fills) or (snapshot.average_price or ZERO) > 0
    claims_execution = snapshot.status is OrderStatus.FILLED or executed > 0
    return claims_execution and not has_price
