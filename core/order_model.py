"""Orders as values: their types, purposes and status machine, and their fills.

An order "changes" by producing a new value (``order.with_status(...)``,
``order.with_fill(...)``); ``ORDER_TRANSITIONS`` is the whole status machine and
``Order.with_status`` raises InvalidTransition for any move it does not allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from core.errors import InvalidTransition, ValidationError
from core.models import PriceSource, Side, evolve
from core.money import ZERO, require_aware, utcnow


class OrderType(StrEnum):
    """Order types. Values are upper case, as stored in ``monitoring.orders.type``."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    STOP_LIMIT = "STOP_LIMIT"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"
    TRAILING_STOP = "TRAILING_STOP"

    @classmethod
    def parse(cls, value: object, field: str = "type") -> OrderType:
        text = value.strip().upper() if isinstance(value, str) else ""
        try:
            return cls(text)
        except ValueError:
            allowed = ", ".join(t.value.lower() for t in cls)
            raise ValidationError(field, f"must be one of {allowed}", value) from None


class OrderPurpose(StrEnum):
    """Why an order exists (``monitoring.orders.purpose``)."""

    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    EXIT = "exit"
    ROLLBACK = "rollback"
    MANUAL = "manual"


class OrderStatus(StrEnum):
    """Order statuses; the only allowed moves are in :data:`ORDER_TRANSITIONS`."""

    PENDING = "PENDING"
    TRIGGERED = "TRIGGERED"
    SUBMITTED = "SUBMITTED"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    CANCELLING = "CANCELLING"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_live(self) -> bool:
        """Resting or in flight: something may still fill."""
        return not self.is_terminal


S = OrderStatus
TERMINAL_STATUSES = frozenset({S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED, S.FAILED})

# docs/architecture.md ('Orders') draws this table. Beyond the plain lifecycle, facts of
# real venues are allowed: an exchange may answer a submit with the order already
# (partially) filled, cancelled (IOC) or expired, so SUBMITTED may skip NEW; and a fill
# may arrive while a cancel is in flight, or the cancel may fail, so CANCELLING may go
# back to a live status. And a resting conditional order can be refused when it triggers
# (Bybit: "triggered but failed upon being placed"), so NEW may end REJECTED.
ORDER_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.SUBMITTED, S.TRIGGERED, S.CANCELLED, S.EXPIRED, S.FAILED}),
    S.TRIGGERED: frozenset({S.SUBMITTED, S.FAILED, S.CANCELLED}),
    S.SUBMITTED: frozenset(
        {S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED, S.REJECTED, S.FAILED}
    ),
    S.NEW: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.CANCELLING, S.CANCELLED, S.EXPIRED, S.REJECTED}
    ),
    S.PARTIALLY_FILLED: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.CANCELLING, S.CANCELLED, S.EXPIRED}
    ),
    S.CANCELLING: frozenset({S.CANCELLED, S.NEW, S.PARTIALLY_FILLED, S.FILLED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
    S.FAILED: frozenset(),
}
del S


def can_transition(old: OrderStatus, new: OrderStatus) -> bool:
    """True when ``old -> new`` is an allowed move."""
    return new in ORDER_TRANSITIONS[old]


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``trade_id`` is unique per venue; a fill seen twice is applied once."""

    trade_id: str
    price: Decimal
    amount: Decimal
    fee: Decimal = ZERO
    fee_currency: str | None = None
    ts: datetime = field(default_factory=utcnow)
    is_maker: bool = False
    # Where the venue said whose fill this is (fetched fills, not those applied in place).
    symbol: str | None = None
    side: Side | None = None
    exchange_order_id: str | None = None
    client_order_id: str | None = None

    def __post_init__(self) -> None:
        # A float or a naive time here would fail much later, inside a P&L sum or a
        # comparison, far from the venue reply that carried it (failure mode 10).
        for name in ("price", "amount", "fee"):
            if not isinstance(getattr(self, name), Decimal):
                raise ValidationError(name, "must be a Decimal", getattr(self, name))
        if not (self.price.is_finite() and self.price > 0):
            raise ValidationError("price", "must be a finite number > 0", self.price)
        if not (self.amount.is_finite() and self.amount > 0):
            raise ValidationError("amount", "must be a finite number > 0", self.amount)
        if not self.fee.is_finite():  # negative is fine: a maker rebate
            raise ValidationError("fee", "must be finite", self.fee)
        if self.ts.tzinfo is None:
            raise ValidationError("ts", "must be timezone-aware", self.ts)


@dataclass(frozen=True, slots=True)
class Order:
    """An order and everything known about it. ``version`` rises with every change so the
    audit trail can keep the newest snapshot even when writes arrive out of order."""

    client_order_id: str
    account: str
    exchange: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    purpose: OrderPurpose = OrderPurpose.MANUAL
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    limit_price: Decimal | None = None
    trail_percent: Decimal | None = None
    trail_amount: Decimal | None = None
    activation_price: Decimal | None = None
    reduce_only: bool = False
    emulated: bool = False
    expires_at: datetime | None = None
    position_id: int | None = None
    exchange_order_id: str | None = None
    price_source: PriceSource = PriceSource.LAST
    status: OrderStatus = OrderStatus.PENDING
    fills: tuple[Fill, ...] = ()
    error_message: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    triggered_at: datetime | None = None
    filled_at: datetime | None = None
    cancelled_at: datetime | None = None
    version: int = 1

    # -- derived from the fills ------------------------------------------------------
    @property
    def filled(self) -> Decimal:
        return sum((f.amount for f in self.fills), ZERO)

    @property
    def remaining(self) -> Decimal:
        return max(self.amount - self.filled, ZERO)

    @property
    def average_price(self) -> Decimal | None:
        """Quantity-weighted average of the fills; ``None`` before the first fill."""
        qty = self.filled
        if qty == 0:
            return None
        return sum((f.price * f.amount for f in self.fills), ZERO) / qty

    @property
    def fee(self) -> Decimal:
        return sum((f.fee for f in self.fills), ZERO)

    @property
    def fee_currency(self) -> str | None:
        return next((f.fee_currency for f in self.fills if f.fee_currency), None)

    def has_fill(self, trade_id: str) -> bool:
        return any(f.trade_id == trade_id for f in self.fills)

    # -- changes ---------------------------------------------------------------------
    def with_status(
        self, status: OrderStatus, *, at: datetime | None = None, error: str | None = None
    ) -> Order:
        """Move to ``status``; raise :class:`InvalidTransition` if the machine forbids it."""
        if status is self.status and status is not OrderStatus.PARTIALLY_FILLED:
            return self
        if not can_transition(self.status, status):
            raise InvalidTransition(self.client_order_id, self.status, status)
        now = utcnow() if at is None else require_aware(at, "at")
        changes: dict[str, Any] = {"status": status, "updated_at": now, "version": self.version + 1}
        if status is OrderStatus.TRIGGERED:
            changes["triggered_at"] = now
        elif status is OrderStatus.FILLED:
            changes["filled_at"] = self.filled_at or now
        elif status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
            changes["cancelled_at"] = now
        if error is not None:
            changes["error_message"] = error
        return evolve(self, changes)

    def with_fill(self, fill: Fill) -> Order:
        """Apply an execution once (by ``trade_id``) and move the status accordingly.

        A fill for an order already believed terminal (a late fill after a cancel) is
        still applied: the money moved. Its status is left as it was.
        """
        if self.has_fill(fill.trade_id):
            return self
        updated = evolve(
            self, {"fills": (*self.fills, fill), "updated_at": fill.ts, "version": self.version + 1}
        )
        if self.status.is_terminal:
            return updated
        target = OrderStatus.FILLED if updated.remaining == 0 else OrderStatus.PARTIALLY_FILLED
        moved = updated.with_status(target, at=fill.ts)
        return moved if target is not OrderStatus.FILLED else evolve(moved, {"filled_at": fill.ts})

    def with_fills_replaced(self, fills: tuple[Fill, ...]) -> Order:
        """The same order with its executions restated (a restored placeholder swapped for
        the venue's real fills); status untouched."""
        return evolve(self, {"fills": fills, "version": self.version + 1})

    def with_exchange_id(self, exchange_order_id: str) -> Order:
        if exchange_order_id == self.exchange_order_id:
            return self
        return evolve(
            self,
            {
                "exchange_order_id": exchange_order_id,
                "updated_at": utcnow(),
                "version": self.version + 1,
            },
        )
