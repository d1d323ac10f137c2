"""Reading ccxt's loose values: numbers as ``Decimal`` via text, anything missing or
unparseable as ``None``, never a float and never a 0 that means "unknown".

The lowest layer of the response parsing (exchanges/response_status.py and
exchanges/response.py build on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.errors import ValidationError
from core.models import Side
from core.money import ZERO, optional_decimal


def norm_key(text: object) -> str:
    """A venue word in one spelling: lower case without "_", "-" or spaces."""
    if not isinstance(text, str):
        return ""
    return text.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


def number_or_none(value: object) -> Decimal | None:
    """A Decimal, or ``None`` for anything missing or unparseable."""
    try:
        return optional_decimal(value)
    except ValidationError:
        return None


def positive_or_zero(value: object) -> Decimal:
    """A positive Decimal, or 0 for anything missing, unparseable or not positive."""
    number = number_or_none(value)
    return number if number is not None and number > 0 else ZERO


def known_price(value: object) -> Decimal | None:
    """A price that is actually known: positive. ``0`` / ``""`` / ``None`` are unknown."""
    number = number_or_none(value)
    return number if number is not None and number > 0 else None


def scaled(value: object, contract_size: Decimal) -> Decimal | None:
    """A ccxt quantity in contracts as base units (absolute value)."""
    number = number_or_none(value)
    return None if number is None else abs(number) * contract_size


def side_or_none(value: object) -> Side | None:
    """A side we understand, else ``None``."""
    try:
        return Side.parse(value)
    except ValidationError:
        return None


def flag_or_none(value: object) -> bool | None:
    """A boolean given as a bool or as the text true / false, else ``None``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def parse_timestamp(ms: object) -> datetime | None:
    """ccxt's epoch milliseconds as an aware UTC datetime; ``None`` when missing."""
    number = number_or_none(ms)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(float(number / 1000), tz=UTC)


def text_or_none(value: object) -> str | None:
    """Stripped text, ``None`` when missing or empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def info_of(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The venue's own reply inside ccxt's (``info``), empty when absent."""
    info = raw.get("info")
    return info if isinstance(info, Mapping) else {}


def fee_of(raw: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
    """ccxt's ``fee`` (one currency) or the sum of ``fees`` in the first currency seen."""
    fee = raw.get("fee")
    if isinstance(fee, Mapping) and number_or_none(fee.get("cost")) is not None:
        return number_or_none(fee.get("cost")), text_or_none(fee.get("currency"))
    total: Decimal | None = None
    currency: str | None = None
    for item in raw.get("fees") or ():
        if not isinstance(item, Mapping) or number_or_none(item.get("cost")) is None:
            continue
        item_currency = text_or_none(item.get("currency"))
        if total is not None and item_currency != currency:
            continue  # a second currency cannot be added to the first
        currency = item_currency
        total = (total or ZERO) + (number_or_none(item.get("cost")) or ZERO)
    return total, currency
