"""A naive trigger evaluator written straight from the table of docs/architecture.md
('Trigger semantics').

It scans every armed order on every tick, with no cleverness, so that it is obviously
right; property tests check that core.triggers.TriggerBook gives exactly its answers, and
the benchmark measures how much faster the book is. Inputs are assumed valid (the book
validates); the rules for the corner cases are those documented in core/triggers.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core.models import Side
from core.order_model import Order, OrderType
from core.triggers import Fired, TickResult, TrailingState


@dataclass
class _Trail:
    active: bool
    extreme: Decimal | None


class ReferenceBook:
    """Same interface as TriggerBook, O(orders) per tick."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.trails: dict[str, _Trail] = {}

    def __len__(self) -> int:
        return len(self.orders)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self.orders

    def arm(self, order: Order, *, initial_price: Decimal | None = None) -> None:
        self.orders[order.client_order_id] = order
        if order.type == OrderType.TRAILING_STOP:
            self.trails[order.client_order_id] = _Trail(initial_price is not None, initial_price)

    def remove(self, client_order_id: str) -> bool:
        self.trails.pop(client_order_id, None)
        return self.orders.pop(client_order_id, None) is not None

    def on_tick(self, symbol: str, price: Decimal, ts: datetime) -> TickResult:
        fired: list[tuple[Decimal, Order]] = []
        expired: list[Order] = []
        for order in list(self.orders.values()):
            if order.symbol != symbol:
                continue
            if order.expires_at is not None and ts >= order.expires_at:
                expired.append(order)
                self.remove(order.client_order_id)
                continue
            level = self._crossed(order, price)
            if level is not None:
                fired.append((level, order))
                self.remove(order.client_order_id)
        fired.sort(key=lambda f: (f[0], f[1].created_at, f[1].client_order_id))
        expired.sort(key=lambda o: (o.expires_at, o.created_at, o.client_order_id))
        return TickResult(
            tuple(Fired(o.client_order_id, symbol, price, level, ts) for level, o in fired),
            tuple(o.client_order_id for o in expired),
        )

    def _crossed(self, order: Order, p: Decimal) -> Decimal | None:
        """The level ``p`` crossed, or None. Updates a trailing order's state."""
        buy = order.side == Side.BUY
        if order.type == OrderType.LIMIT:
            assert order.price is not None
            hit = p <= order.price if buy else p >= order.price
            return order.price if hit else None
        if order.type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT):
            assert order.trigger_price is not None
            hit = p >= order.trigger_price if buy else p <= order.trigger_price
            return order.trigger_price if hit else None
        if order.type == OrderType.TAKE_PROFIT_MARKET:
            assert order.trigger_price is not None
            hit = p <= order.trigger_price if buy else p >= order.trigger_price
            return order.trigger_price if hit else None
        assert order.type == OrderType.TRAILING_STOP
        trail = self.trails[order.client_order_id]
        if not trail.active:
            act = order.activation_price
            if act is None or (p <= act if buy else p >= act):
                trail.active = True
                trail.extreme = p
            else:
                return None
        assert trail.extreme is not None
        if buy:
            trail.extreme = min(trail.extreme, p)
            if order.trail_percent is not None:
                stop = trail.extreme * (1 + order.trail_percent / 100)
            else:
                assert order.trail_amount is not None
                stop = trail.extreme + order.trail_amount
            return stop if p >= stop else None
        trail.extreme = max(trail.extreme, p)
        if order.trail_percent is not None:
            stop = trail.extreme * (1 - order.trail_percent / 100)
        else:
            assert order.trail_amount is not None
            stop = trail.extreme - order.trail_amount
        return stop if p <= stop else None

    def trailing_states(self) -> list[TrailingState]:
        return sorted(
            (TrailingState(cid, t.active, t.extreme) for cid, t in self.trails.items()),
            key=lambda s: s.client_order_id,
        )

    def restore_trailing(self, states: Iterable[TrailingState]) -> None:
        for state in states:
            if state.client_order_id in self.trails:
                self.trails[state.client_order_id] = _Trail(state.activated, state.extreme)
