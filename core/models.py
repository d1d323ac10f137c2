"""Value types of the trading domain.

Everything here is a frozen dataclass or an enum: an order or a position "changes" by
producing a new value (``order.with_status(...)``, ``order.with_fill(...)``), which makes
every state an auditable snapshot and lets the audit writer hold a reference safely.

Money and quantities are ``Decimal`` and times are timezone-aware UTC (see core/money.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from core.errors import InvalidTransition, ValidationError
from core.money import ZERO, require_aware, utcnow

_T = TypeVar("_T")


_SLOTS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _evolve(value: _T, changes: Mapping[str, Any]) -> _T:
    """``dataclasses.replace`` for the frozen, slotted values below, without re-running
    ``__init__``: a copy of the slots with ``changes`` applied. An order changes many
    times per second under load, and ``replace`` costs ~30 µs on a 30-field class."""
    cls = type(value)
    slots = _SLOTS.get(cls)
    if slots is None:
        names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
        slots = _SLOTS[cls] = (names, frozenset(names))
    if not slots[1].issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field(s) {set(changes) - slots[1]}")
    new = object.__new__(cls)
    setter = object.__setattr__
    for name in slots[0]:
        setter(new, name, changes[name] if name in changes else getattr(value, name))
    return new


class Side(StrEnum):
    """The side of an order."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @classmethod
    def parse(cls, value: object, field: str = "side") -> Side:
        """Accept ``buy``/``BUY``/``Buy``; anything else is a ValidationError."""
        text = str(value).strip().lower() if isinstance(value, str) else None
        if text not in {"buy", "sell"}:
            raise ValidationError(field, "must be 'buy' or 'sell'", value)
        return cls(text)


class PositionSide(StrEnum):
    """The side of a position. The closing order side derives from this, never from an echo."""

    LONG = "long"
    SHORT = "short"

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self is PositionSide.LONG else Side.SELL

    @property
    def exit_side(self) -> Side:
        return Side.SELL if self is PositionSide.LONG else Side.BUY

    @property
    def sign(self) -> int:
        """+1 for long, -1 for short: P&L per unit is ``sign * (exit - entry)``."""
        return 1 if self is PositionSide.LONG else -1

    @classmethod
    def parse(cls, value: object, field: str = "side") -> PositionSide:
        text = value.strip().lower() if isinstance(value, str) else None
        if text not in {"long", "short"}:
            raise ValidationError(field, "must be 'long' or 'short'", value)
        return cls(text)


class PriceSource(StrEnum):
    """Which price an emulated order's trigger watches (docs/architecture.md, 'Trigger semantics').

    ``last`` (the default) is the last trade; ``mark`` the venue's mark price, which a
    single off-market trade cannot move; ``quote`` the side of the book the order would
    trade against: the ask for a buy, the bid for a sell.
    """

    LAST = "last"
    MARK = "mark"
    QUOTE = "quote"


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
        return _evolve(self, changes)

    def with_fill(self, fill: Fill) -> Order:
        """Apply an execution once (by ``trade_id``) and move the status accordingly.

        A fill for an order already believed terminal (a late fill after a cancel) is
        still applied: the money moved. Its status is left as it was.
        """
        if self.has_fill(fill.trade_id):
            return self
        updated = _evolve(
            self, {"fills": (*self.fills, fill), "updated_at": fill.ts, "version": self.version + 1}
        )
        if self.status.is_terminal:
            return updated
        target = OrderStatus.FILLED if updated.remaining == 0 else OrderStatus.PARTIALLY_FILLED
        moved = updated.with_status(target, at=fill.ts)
        return moved if target is not OrderStatus.FILLED else _evolve(moved, {"filled_at": fill.ts})

    def with_fills_replaced(self, fills: tuple[Fill, ...]) -> Order:
        """The same order with its executions restated (a restored placeholder swapped for
        the venue's real fills); status untouched."""
        return _evolve(self, {"fills": fills, "version": self.version + 1})

    def with_exchange_id(self, exchange_order_id: str) -> Order:
        if exchange_order_id == self.exchange_order_id:
            return self
        return _evolve(
            self,
            {
                "exchange_order_id": exchange_order_id,
                "updated_at": utcnow(),
                "version": self.version + 1,
            },
        )


class PositionStatus(StrEnum):
    """Position lifecycle (docs/architecture.md, 'Positions'), each recorded before the step
    it names."""

    PENDING_ENTRY = "pending_entry"
    ENTRY_PLACED = "entry_placed"
    PENDING_SL = "pending_sl"
    ACTIVE = "active"
    CLOSING = "closing"
    CLOSED = "closed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (PositionStatus.CLOSED, PositionStatus.ROLLED_BACK, PositionStatus.FAILED)


def position_end_note(position_id: int, status: PositionStatus, reason: str) -> str:
    """Why an order bound to a position was cancelled: the position's exit, in words
    (``position 7 closed (take_profit)``), kept on the order and in its history."""
    return f"position {position_id} {status.value} ({reason})"


def gross_pnl(side: PositionSide, entry: Decimal, exit_price: Decimal, qty: Decimal) -> Decimal:
    """Long ``(exit - entry) * qty``, short ``(entry - exit) * qty``. No leverage factor, ever."""
    return (exit_price - entry) * qty * side.sign


@dataclass(frozen=True, slots=True)
class Position:
    """A position on one market. ``quantity`` is what is still open; ``traded_quantity``
    the largest quantity it ever held, so a closed position (quantity 0) keeps its size."""

    id: int
    account: str
    exchange: str
    symbol: str
    side: PositionSide
    status: PositionStatus = PositionStatus.PENDING_ENTRY
    quantity: Decimal = ZERO
    entry_price: Decimal | None = None
    current_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    signal_id: int | None = None
    exchange_order_id: str | None = None
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    open_entry_fees: Decimal = ZERO
    high_water_mark: Decimal | None = None
    low_water_mark: Decimal | None = None
    max_drawdown: Decimal = ZERO
    exit_price: Decimal | None = None
    exit_reason: str | None = None
    opened_at: datetime = field(default_factory=utcnow)
    closed_at: datetime | None = None
    updated_at: datetime = field(default_factory=utcnow)
    version: int = 1
    traded_quantity: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.quantity > self.traded_quantity:
            object.__setattr__(self, "traded_quantity", self.quantity)

    def evolve(self, **changes: Any) -> Position:
        """A new snapshot with ``changes`` applied and the version bumped; the traded
        quantity follows the largest quantity held."""
        changes.setdefault("updated_at", utcnow())
        changes["version"] = self.version + 1
        quantity = changes.get("quantity")
        if quantity is not None and quantity > self.traded_quantity:
            changes["traded_quantity"] = quantity
        return _evolve(self, changes)

    @property
    def unrealized_pnl(self) -> Decimal:
        """Gross P&L of the open quantity at ``current_price`` (fees not yet paid excluded)."""
        if self.entry_price is None or self.current_price is None:
            return ZERO
        return gross_pnl(self.side, self.entry_price, self.current_price, self.quantity)

    def with_entry_fill(self, price: Decimal, qty: Decimal, fee: Decimal) -> Position:
        """Add an entry execution: the entry price becomes the quantity-weighted average."""
        new_qty = self.quantity + qty
        old_cost = (self.entry_price or ZERO) * self.quantity
        entry = (old_cost + price * qty) / new_qty
        return self.evolve(
            quantity=new_qty,
            entry_price=entry,
            fees=self.fees + fee,
            open_entry_fees=self.open_entry_fees + fee,
        )

    def with_exit_fill(
        self, price: Decimal, qty: Decimal, fee: Decimal
    ) -> tuple[Position, Decimal]:
        """Close ``qty`` at ``price``; return the new position and the P&L realised now.

        The realised part carries the exit fee and the closed share of the entry fees, so
        a position closed in pieces realises exactly what it would closed at once.
        """
        if self.entry_price is None or qty <= 0 or qty > self.quantity:
            raise ValidationError("quantity", "exit must be > 0 and <= the open quantity", qty)
        entry_fee_share = self.open_entry_fees * qty / self.quantity
        realized = gross_pnl(self.side, self.entry_price, price, qty) - fee - entry_fee_share
        remaining = self.quantity - qty
        return (
            self.evolve(
                quantity=remaining,
                realized_pnl=self.realized_pnl + realized,
                fees=self.fees + fee,
                open_entry_fees=self.open_entry_fees - entry_fee_share,
                exit_price=price,
            ),
            realized,
        )


class EntryType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


@dataclass(frozen=True, slots=True)
class Signal:
    """A validated request to open a position (``monitoring.signals``)."""

    symbol: str
    side: PositionSide
    amount: Decimal | None = None
    quote_amount: Decimal | None = None
    entry_type: EntryType = EntryType.MARKET
    price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    stop_loss_percent: Decimal | None = None
    take_profit_price: Decimal | None = None
    take_profit_percent: Decimal | None = None
    trailing_activation_percent: Decimal | None = None
    trailing_callback_percent: Decimal | None = None
    id: int | None = None
    account: str | None = None


@dataclass(frozen=True, slots=True)
class Market:
    """What the venue says about one market: identity, precision and minimums."""

    symbol: str
    id: str
    base: str
    quote: str
    tick_size: Decimal
    amount_step: Decimal
    min_amount: Decimal = ZERO
    min_cost: Decimal = ZERO
    # Amounts in the core are always in base units; adapters convert to contracts
    # (amount / contract_size) at their boundary, so the core never multiplies by this.
    contract_size: Decimal = Decimal(1)
    type: str = "swap"
    linear: bool = True


@dataclass(frozen=True, slots=True)
class Tick:
    """One price observation. ``price`` is the last trade; bid / ask / mark when known."""

    symbol: str
    price: Decimal
    ts: datetime
    bid: Decimal | None = None
    ask: Decimal | None = None
    mark: Decimal | None = None
