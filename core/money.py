"""Decimal helpers: money and quantities never touch a float.

Every number that enters the system from outside (ccxt floats, JSON, SQL text, a CLI
argument) passes through :func:`to_decimal`, which builds from ``str`` so ``0.1`` stays
``0.1`` and refuses NaN, infinities and booleans with an error naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation

from core.errors import ValidationError

ZERO = Decimal(0)
MAX_MAGNITUDE = Decimal("1e15")
ONE = Decimal(1)
HUNDRED = Decimal(100)


def to_decimal(value: object, field: str = "value") -> Decimal:
    """Convert ``value`` to a finite Decimal, via ``str`` for floats; raise naming ``field``."""
    if isinstance(value, bool) or value is None:
        raise ValidationError(field, "must be a number", value)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str):
        text = str(value).strip()
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValidationError(field, "must be a number", value) from None
    else:
        raise ValidationError(field, "must be a number", value)
    if not result.is_finite():
        raise ValidationError(field, "must be a finite number", value)
    if abs(result) >= MAX_MAGNITUDE:
        # No price or quantity is this large; beyond it Decimal arithmetic at 28 digits
        # stops being exact, so refuse it here with a reason rather than fail deep inside.
        raise ValidationError(field, f"must be smaller than {MAX_MAGNITUDE:.0e}", value)
    return result


def optional_decimal(value: object, field: str = "value") -> Decimal | None:
    """Like :func:`to_decimal` but ``None`` and ``""`` stay ``None``."""
    if value is None or value == "":
        return None
    return to_decimal(value, field)


def positive(value: object, field: str) -> Decimal:
    """A finite Decimal strictly greater than zero."""
    result = to_decimal(value, field)
    if result <= 0:
        raise ValidationError(field, "must be greater than 0", value)
    return result


def round_to_step(value: Decimal, step: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """Round ``value`` to a multiple of ``step`` (a tick or lot size)."""
    if step <= 0:
        return value
    try:
        units = (value / step).to_integral_value(rounding=rounding)
        return (units * step).quantize(step)
    except InvalidOperation:
        raise ValidationError("value", f"cannot be expressed in steps of {step}", value) from None


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round an amount down to the lot step: never send more than was asked or held."""
    return round_to_step(value, step, ROUND_DOWN)


def percent_of(value: Decimal, percent: Decimal) -> Decimal:
    """``percent`` % of ``value``."""
    return value * percent / HUNDRED


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (naive datetimes are a bug here)."""
    return datetime.now(UTC)


def require_aware(ts: datetime, field: str = "timestamp") -> datetime:
    """Refuse naive datetimes: mixing them with aware ones is failure mode 10."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValidationError(field, "must be timezone-aware", ts)
    return ts.astimezone(UTC)
