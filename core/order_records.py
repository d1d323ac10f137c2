"""What the order manager knows of its orders: the live ones, the recent history, their
fills, and what a restart re-arms. The lowest of its three layers (core/order_manager.py
places, cancels and executes; core/native_orders.py follows orders resting on the venue).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from decimal import Decimal

from core.audit_gate import TrailHealth
from core.execution import Executor, Update
from core.journal import Journal
from core.order_model import Order, OrderStatus, OrderType
from core.position_book import PositionBook
from core.prices import PriceBoard
from core.triggers import TrailingState, TriggerBook
from core.venue import (
    ExchangeAdapter,
)

HISTORY_SIZE = 10_000
LATENCY_WINDOW = 10_000
# How long a sent order may stay invisible on the venue before we call it never placed.
UNSEEN_GRACE = timedelta(seconds=60)


class OrderRecords:
    """The live orders of one account, their history and fills, their re-arming."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        executor: Executor,
        triggers: TriggerBook,
        prices: PriceBoard,
        *,
        account: str,
        positions: PositionBook | None = None,
        linked_fills: Callable[[Update], Awaitable[bool]] | None = None,
        leverage: Decimal = Decimal(1),
        settle_timeout_s: float = 5.0,
        trail: TrailHealth | None = None,
    ) -> None:
        self._adapter = adapter
        self._exec = executor
        self._journal: Journal = executor.journal
        self._triggers = triggers
        self._prices = prices
        self._account = account
        self._positions = positions
        self._linked_fills = linked_fills
        self._leverage = leverage
        self._settle_timeout_s = settle_timeout_s
        self._trail = trail  # no new order while the audit trail cannot be kept
        self._live: dict[str, Order] = {}
        # Orders with a venue call in progress (execute, native send, cancel). The periodic
        # sync leaves them alone: it would fold a fetched snapshot into the same fills the
        # call is about to apply, and count them twice.
        self._in_flight: set[str] = set()
        # Orders whose position ended while a venue call of theirs was in flight: ended
        # (with this note) as soon as the call returns, if they still rest.
        self._ending: dict[str, str] = {}
        self._history: deque[Order] = deque(maxlen=HISTORY_SIZE)
        self._seq = 0
        self.latencies_us: deque[float] = deque(maxlen=LATENCY_WINDOW)
        # Told of every tick-to-submit latency, in seconds: the metrics' histogram.
        self.on_latency: Callable[[float], None] | None = None

    # -- queries -----------------------------------------------------------------------
    def get_order(self, ref: str) -> Order | None:
        return self._find(ref) or next(
            (o for o in reversed(self._history) if ref in (o.client_order_id, o.exchange_order_id)),
            None,
        )

    def active_orders(
        self, symbol: str | None = None, type: OrderType | None = None
    ) -> list[Order]:
        return [
            o
            for o in self._live.values()
            if (symbol is None or o.symbol == symbol) and (type is None or o.type is type)
        ]

    def order_history(self, offset: int = 0, limit: int = 100) -> list[Order]:
        """Finished orders, newest first (older ones are in ``monitoring.orders``)."""
        newest_first = list(reversed(self._history))
        return newest_first[offset : offset + limit]

    def trailing_states(self) -> list[TrailingState]:
        return self._triggers.trailing_states()

    def rearm(self, orders: Iterable[Order], states: Iterable[TrailingState] = ()) -> int:
        """After a restart: arm the emulated orders that were PENDING, then restore the
        trailing extremes so they resume where they were, not from today's price."""
        count = 0
        for order in orders:
            if order.emulated and order.status is OrderStatus.PENDING:
                if not self._bound_open(order):
                    self._disarmed(order, f"position {order.position_id} is no longer open")
                    continue
                self._triggers.arm(order)
                self._remember(order)
                count += 1
        self._triggers.restore_trailing(states)
        return count

    def track(self, order: Order) -> None:
        """Follow an order restored after a restart (native, or emulated and in flight)."""
        self._remember(order)

    def _bound_open(self, order: Order) -> bool:
        pid = order.position_id
        return pid is None or self._positions is None or self._positions.get(pid) is not None

    def _disarmed(self, order: Order, reason: str) -> Order:
        """An emulated order taken out of the book before it trades, with the reason."""
        self._triggers.remove(order.client_order_id)
        cancelled = order.with_status(OrderStatus.CANCELLED, error=reason[:500])
        self._journal.order(cancelled, "cancelled", order.status, {"reason": reason})
        self._remember(cancelled)
        return cancelled

    # -- bookkeeping -------------------------------------------------------------------
    def _find(self, ref: str) -> Order | None:
        order = self._live.get(ref)
        if order is None:
            order = next((o for o in self._live.values() if o.exchange_order_id == ref), None)
        return order

    def _remember(self, order: Order) -> None:
        if order.status.is_terminal:
            self._live.pop(order.client_order_id, None)
            self._history.append(order)
        else:
            self._live[order.client_order_id] = order

    async def _record_fills(self, update: Update) -> None:
        """Journal executions; those of an order placed for a position go through the
        position's lifecycle, so its quantity, P&L and stop follow."""
        if not update.fills:
            return
        hook = self._linked_fills
        if update.order.position_id is not None and hook is not None and await hook(update):
            return
        for fill in update.fills:
            self._journal.fill(update.order, fill)
