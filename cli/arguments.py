"""Argument values of the command line: parsing them, and the one-line input error.

Each ``argparse`` ``type=`` callable here turns one piece of text into a typed value or
raises :class:`argparse.ArgumentTypeError`; argparse then prints
``main.py signal: argument --amount: <why>`` and exits 2 (see ``_Parser`` in cli/app.py).
Rules that involve several arguments (``--entry limit`` needs ``--price``) raise
:class:`InputError`, which the dispatcher reports the same way. Nothing here touches the
database: what can be checked locally is checked before a row is written, and the daemon
checks everything again.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

# Bounds that no real order reaches, so a typo (an extra exponent) is caught here rather
# than by a numeric overflow in PostgreSQL.
MAX_VALUE = Decimal("1e18")
MIN_EXPONENT = -18
MAX_SYMBOL_LENGTH = 64
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME = r"[A-Za-z0-9][A-Za-z0-9._]*"
_UNIFIED = re.compile(rf"{_NAME}/{_NAME}:{_NAME}(-[A-Za-z0-9._]+)?")
_SPOT = re.compile(rf"{_NAME}/{_NAME}")
_BARE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# ``report --plot``: the file's extension names the format (cli/plot.py writes both).
PLOT_FORMATS = {".png": "png", ".svg": "svg"}


class InputError(ValueError):
    """A bad command-line value. ``argument`` is the option as typed (``--price``)."""

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        self.message = message
        super().__init__(f"argument {argument}: {message}")


@dataclass(frozen=True, slots=True)
class PriceOrPercent:
    """``--stop-loss 2%`` (a percent of the fill price) or ``--stop-loss 61000`` (a price)."""

    value: Decimal
    is_percent: bool


def _number(text: str) -> Decimal:
    """A finite Decimal from text (never via float), within sane bounds."""
    raw = text.strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if abs(value) >= MAX_VALUE:
        raise argparse.ArgumentTypeError(f"is too large, got {text!r}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < MIN_EXPONENT and value != 0:
        raise argparse.ArgumentTypeError(f"has too many decimal places, got {text!r}")
    return value


def positive_decimal(text: str) -> Decimal:
    """A number greater than 0: amounts and prices."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def percent(text: str) -> Decimal:
    """A percentage strictly between 0 and 100; a trailing ``%`` is optional."""
    raw = text.strip()
    try:
        value = _number(raw[:-1] if raw.endswith("%") else raw)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a percentage, got {text!r}") from None
    if not Decimal(0) < value < Decimal(100):
        raise argparse.ArgumentTypeError(f"must be a percentage between 0 and 100, got {text!r}")
    return value


def price_or_percent(text: str) -> PriceOrPercent:
    """``2%`` is a percent of the fill price, ``61000`` an absolute price."""
    raw = text.strip()
    if raw.endswith("%"):
        return PriceOrPercent(percent(raw), is_percent=True)
    return PriceOrPercent(positive_decimal(raw), is_percent=False)


def seconds(text: str) -> float:
    """A wait in seconds: a finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return float(value)


def duration(text: str) -> timedelta:
    """``45s``, ``30m``, ``24h``, ``7d``, ``2w``: a positive length of time."""
    raw = text.strip().lower()
    if len(raw) < 2 or raw[-1] not in _DURATION_UNITS or not raw[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"must look like 30m, 24h or 7d, got {text!r}")
    count = int(raw[:-1])
    if count <= 0 or count > 100_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100000 units, got {text!r}")
    return timedelta(seconds=count * _DURATION_UNITS[raw[-1]])


def expiry(text: str) -> str:
    """``--expires-in``: checked like :func:`duration` (s/m/h/d), sent as typed."""
    raw = text.strip().lower()
    if raw.endswith("w"):
        raise argparse.ArgumentTypeError(f"must look like 45s, 30m, 2h or 1d, got {text!r}")
    duration(raw)
    return raw


def positive_int(text: str) -> int:
    """An id: a whole number greater than 0 that fits a PostgreSQL bigint."""
    raw = text.strip()
    if not raw.isdigit() or int(raw) <= 0 or int(raw) >= 2**63:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return int(raw)


def symbol(text: str) -> str:
    """A market symbol shaped like one: unified ``BASE/QUOTE:SETTLE`` (``BTC/USDT:USDT``,
    a dated contract ``BTC/USDT:USDT-250627``) or a bare exchange id (``BTCUSDT``).

    ``BTC/USDT`` is refused with a hint: that is the spot market, and the daemon trades
    contracts (docs/architecture.md, failure mode 13). Whether the market exists is checked once the
    settings are loaded (:func:`cli.requests.check_symbol`).
    """
    raw = text.strip()
    if not raw or len(raw) > MAX_SYMBOL_LENGTH or not raw.isprintable() or " " in raw:
        raise argparse.ArgumentTypeError(f"must be a market symbol, got {text!r}")
    if _SPOT.fullmatch(raw):
        base, quote = raw.split("/")
        raise argparse.ArgumentTypeError(
            f"{raw!r} is a spot symbol; the daemon trades contracts: did you mean "
            f"{base}/{quote}:{quote}?"
        )
    if not (_UNIFIED.fullmatch(raw) or _BARE_ID.fullmatch(raw)):
        raise argparse.ArgumentTypeError(f"must look like BTC/USDT:USDT or BTCUSDT, got {text!r}")
    return raw


def order_ref(text: str) -> str:
    """An order's exchange id or client order id."""
    raw = text.strip()
    if not raw or len(raw) > 128 or not raw.isprintable() or " " in raw:
        raise argparse.ArgumentTypeError(f"must be an order id or client order id, got {text!r}")
    return raw


def plot_file(text: str) -> Path:
    """``--plot``: a file whose extension says the format, ``.png`` or ``.svg``."""
    path = Path(text.strip())
    if path.suffix.lower() not in PLOT_FORMATS:
        raise argparse.ArgumentTypeError(f"must end in .png or .svg, got {text!r}")
    return path


def lower(text: str) -> str:
    """Case-insensitive choices: ``--side LONG`` is ``long``."""
    return text.strip().lower()
