"""Value types of the trading domain: sides, price sources, signals, markets, ticks.

Everything here is a frozen dataclass or an enum: an order or a position "changes" by
producing a new value (``order.with_status(...)``, ``order.with_fill(...)``), which makes
every state an auditable snapshot and lets the audit writer hold a reference safely.

Orders live in core/order_model.py and positions in core/position_model.py.

Money and quantities are ``Decimal`` and times are timezone-aware UTC (see core/money.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from core.errors import ValidationError
from core.money import ZERO

_T = TypeVar("_T")


_SLOTS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def evolve(value: _T, changes: Mapping[str, Any]) -> _T:
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
