"""Positions as values: their status, the P&L arithmetic of entry and exit fills, and
the note an ended position leaves on the orders bound to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from core.errors import ValidationError
from core.models import PositionSide, evolve
from core.money import ZERO, utcnow


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
        return evolve(self, changes)

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
