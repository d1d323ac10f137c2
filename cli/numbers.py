"""Numbers as a trader reads them: never in exponent form, prices and P&L to the market's
precision.

The precision is the venue's, as the serving daemon published it in
``monitoring.daemons.markets`` (``{"BTC/USDT:USDT": {"tick_size": "0.1", "amount_step":
"0.001"}}``): prices to the tick's decimals, amounts to the lot step's, P&L and fees to the
tick's decimals but at least cents. Without it (no daemon ever published the market)
numbers are shown exactly as stored. Only human output is rounded: ``--json`` keeps every
digit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

PRICE_FIELDS = frozenset(
    {
        "entry_price",
        "exit_price",
        "current_price",
        "stop_loss_price",
        "take_profit_price",
        "price",
        "limit_price",
        "trigger_price",
        "activation_price",
        "average_price",
        "high_water_mark",
        "low_water_mark",
    }
)
AMOUNT_FIELDS = frozenset({"quantity", "amount", "filled", "remaining", "size", "requested"})
MONEY_FIELDS = frozenset({"realized_pnl", "unrealized_pnl", "fees", "fee", "max_drawdown"})
CENTS = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Precision:
    """A market's price tick and lot step."""

    tick_size: Decimal
    amount_step: Decimal

    def quantum(self, field: str) -> Decimal | None:
        """What a value of ``field`` is rounded to, None if it is not a number we round."""
        tick = _unit(self.tick_size)
        if field in PRICE_FIELDS:
            return tick
        if field in AMOUNT_FIELDS:
            return _unit(self.amount_step)
        if field in MONEY_FIELDS:
            return min(tick, CENTS)
        return None


def _unit(step: Decimal) -> Decimal:
    """The decimal place of a step: ``0.5`` -> ``0.1``, ``0.001`` -> ``0.001``, 10 -> 1."""
    exponent = step.normalize().as_tuple().exponent
    places = min(0, exponent) if isinstance(exponent, int) else 0
    return Decimal(1).scaleb(places)


def precisions(markets: Any) -> dict[str, Precision]:
    """The ``monitoring.daemons.markets`` document as precisions by symbol (bad entries
    skipped: the numbers are then shown as stored)."""
    out: dict[str, Precision] = {}
    if not isinstance(markets, Mapping):
        return out
    for symbol, spec in markets.items():
        try:
            out[symbol] = Precision(Decimal(spec["tick_size"]), Decimal(spec["amount_step"]))
        except (KeyError, TypeError, InvalidOperation):
            continue
    return out


def plain(value: Any) -> str:
    """A number without exponent or trailing zeros (``1E+5`` -> ``100000``); anything else
    as ``str``."""
    number = _decimal(value)
    if number is None:
        return str(value)
    if number == 0:
        return "0"
    return format(number.normalize(), "f")


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal | int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def shown(field: str, value: Any, precision: Precision | None) -> str:
    """``value`` of ``field`` for a person: rounded to the market when known, plain."""
    number = _decimal(value)
    if number is None:
        return str(value)
    quantum = precision.quantum(field) if precision is not None else None
    if quantum is not None:
        number = number.quantize(quantum, rounding=ROUND_HALF_EVEN)
        return format(number, "f")
    return plain(number)


def rounded_row(row: Mapping[str, Any], precision: Precision | None) -> dict[str, Any]:
    """``row`` with its prices, amounts and P&L rounded for display (Decimals kept)."""
    if precision is None:
        return dict(row)
    out = dict(row)
    for field, value in row.items():
        quantum = precision.quantum(field)
        if quantum is not None and isinstance(value, Decimal) and value.is_finite():
            out[field] = value.quantize(quantum, rounding=ROUND_HALF_EVEN)
    return out
