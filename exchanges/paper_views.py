"""What the paper venue shows of itself: frozen copies of its orders, the replies a real
venue gives, and a positions endpoint that can lag like a real one.

The book (exchanges/paper_book.py) mutates its entities in place; nothing mutable ever
leaves the venue. The ``position_lag_s`` fault makes ``fetch_positions`` show each
position as it was that many seconds ago, as Bybit's and Binance's endpoints do after a
fill; the history kept here is what makes that possible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.models import PositionSide
from core.money import ZERO
from core.order_model import Fill, OrderStatus
from core.venue import ExchangeOrder, ExchangePosition
from exchanges.paper_ledger import Delta, PaperOrder, PaperPosition

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A position as fetch_positions shows it: (quantity signed, entry price), None when flat.
PositionView = tuple[Decimal, Decimal] | None


@dataclass(frozen=True, slots=True)
class PaperBalance:
    """The paper account's quote balance: total, margin in use, and what is free."""

    currency: str
    total: Decimal
    used: Decimal
    free: Decimal


class PositionHistory:
    """Per symbol, the position's states with the time each began (oldest first)."""

    def __init__(self, positions: Mapping[str, PaperPosition]) -> None:
        self._history: dict[str, list[tuple[datetime, PositionView]]] = {
            s: [(_EPOCH, (p.qty, p.entry_price))] for s, p in positions.items()
        }

    def symbols(self) -> list[str]:
        return sorted(self._history)

    def visible(self, symbol: str, cutoff: datetime) -> PositionView:
        """The newest recorded position state at or before ``cutoff`` (flat before any)."""
        view: PositionView = None
        for changed_at, state in self._history.get(symbol, ()):
            if changed_at > cutoff:
                break
            view = state
        return view

    def remember(self, delta: Delta, clock: Callable[[], datetime], lag: Decimal) -> None:
        """Record the positions ``delta`` changed; keep only what a ``lag`` can still show."""
        if not delta.positions:
            return
        now = clock()
        cutoff = now - timedelta(seconds=float(lag))
        for symbol, position in delta.positions.items():
            view = None if position is None else (position.qty, position.entry_price)
            if not lag:
                self._history[symbol] = [(now, view)]
                continue
            history = self._history.setdefault(symbol, [])
            history.append((now, view))
            # Keep the newest entry at or before the cutoff and everything after it.
            keep_from = 0
            for index, (changed_at, _) in enumerate(history):
                if changed_at <= cutoff:
                    keep_from = index
            if keep_from:
                del history[:keep_from]


def order_view(order: PaperOrder, fills: Iterable[Fill], fee_currency: str) -> ExchangeOrder:
    """A frozen copy of ``order`` as a venue reply, with its fills."""
    return ExchangeOrder(
        symbol=order.symbol,
        exchange_order_id=order.id,
        client_order_id=order.client_order_id,
        status=order.status,
        side=order.side,
        type=order.type,
        amount=order.amount,
        filled=order.filled,
        remaining=order.remaining,
        average_price=order.average_price,
        price=order.price,
        trigger_price=order.trigger_price,
        reduce_only=order.reduce_only,
        fee=order.fee,
        fee_currency=fee_currency,
        fills=tuple(fills),
        ts=order.updated_at,
        raw={
            "venue": "paper",
            "time_in_force": order.time_in_force,
            "triggered": order.triggered,
            "reason": order.reason,
            "created_at": order.created_at,
        },
    )


def acknowledgement(reply: ExchangeOrder) -> ExchangeOrder:
    """What Binance USD-M answers a market order with: NEW, nothing filled, no average."""
    return ExchangeOrder(
        symbol=reply.symbol,
        exchange_order_id=reply.exchange_order_id,
        client_order_id=reply.client_order_id,
        status=OrderStatus.NEW,
        side=reply.side,
        type=reply.type,
        amount=reply.amount,
        filled=ZERO,
        remaining=reply.amount,
        average_price=None,
        price=reply.price,
        trigger_price=reply.trigger_price,
        reduce_only=reply.reduce_only,
        fee=None,
        fee_currency=None,
        fills=(),
        ts=reply.ts,
        raw={**reply.raw, "ack": True},
    )


def position_view(
    symbol: str,
    view: tuple[Decimal, Decimal],
    mark: Decimal | None,
    contract_size: Decimal,
    leverage: Decimal,
    ts: datetime,
) -> ExchangePosition:
    """A position as ``fetch_positions`` shows it, marked at ``mark`` when known."""
    qty, entry = view
    return ExchangePosition(
        symbol=symbol,
        side=PositionSide.LONG if qty > 0 else PositionSide.SHORT,
        quantity=abs(qty),
        entry_price=entry,
        mark_price=mark,
        unrealized_pnl=None if mark is None else (mark - entry) * qty * contract_size,
        leverage=leverage,
        ts=ts,
    )
