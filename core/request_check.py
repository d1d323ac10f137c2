"""The one check every intake request goes through, whoever wrote it.

A request reaches the daemon as a row, written by the CLI or by anyone with SQL. Both
paths run these functions against the same facts — the symbols the serving daemon trades
(its ``TRADER_SYMBOLS``, published in ``monitoring.daemons``) — so a row inserted by hand
and the same request typed at the CLI are refused with the same words. What is checked
here needs no market data and no await (it also runs set-wise over a flood of rows in
database/intake.py); what needs prices and balances is checked when the request runs.
Every refusal is a :class:`ValidationError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import ValidationError
from core.models import Signal
from core.order_requests import parse_order_request
from core.signals import parse_signal

COMMAND_KINDS = ("place_order", "cancel_order", "close_position")
# Commands that take risk off: claimed before new signals and orders.
URGENT_KINDS = ("close_position", "cancel_order")


def _compact(name: str) -> str:
    """``BTC/USDT:USDT`` -> ``BTCUSDT``: the bare id venues give a linear contract."""
    return name.split(":")[0].replace("/", "").upper()


def among(symbol: str, known: Sequence[str]) -> bool:
    """Whether ``symbol`` names one of ``known`` (each unified or a bare id), any case."""
    wanted = symbol.strip().upper()
    for name in known:
        unified = "/" in name
        if name.upper() == wanted:
            return True
        if unified and "/" not in wanted and _compact(name) == wanted:
            return True
        if not unified and "/" in wanted and name.upper() == _compact(wanted):
            return True
    return False


def check_symbol(symbol: str, symbols: Sequence[str] | None) -> None:
    """``symbol`` must be one of the daemon's ``TRADER_SYMBOLS`` (the markets its feed
    prices, so its stops and triggers can work). ``symbols`` None: not checked."""
    if symbols is not None and not among(symbol, symbols):
        raise ValidationError(
            "symbol",
            f"{symbol.strip()!r} is not among the symbols this daemon trades "
            f"(TRADER_SYMBOLS={','.join(symbols)})",
        )


def check_signal(row: Mapping[str, Any], symbols: Sequence[str] | None) -> Signal:
    """A ``monitoring.signals`` row as a checked :class:`Signal`."""
    signal = parse_signal(row)
    check_symbol(signal.symbol, symbols)
    return signal


def check_command(row: Mapping[str, Any], symbols: Sequence[str] | None) -> None:
    """A ``monitoring.commands`` row: a known kind and a payload that kind can run."""
    kind = row.get("kind")
    payload = row.get("payload")
    if kind not in COMMAND_KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(COMMAND_KINDS)}", kind)
    if not isinstance(payload, Mapping):
        raise ValidationError("payload", "must be a JSON object", payload)
    if kind == "place_order":
        spec = parse_order_request(payload)
        check_symbol(spec.symbol, symbols)
    elif kind == "cancel_order":
        order_ref(payload)
    else:
        close_target(payload)


def order_ref(payload: Mapping[str, Any]) -> str:
    """The order a ``cancel_order`` names: its exchange id or client order id."""
    ref = payload.get("order_id") or payload.get("client_order_id")
    if not isinstance(ref, str) or not ref.strip():
        raise ValidationError("order_id", "give the order's id or client order id", ref)
    return ref.strip()


def close_target(payload: Mapping[str, Any]) -> tuple[int, str]:
    """The position a ``close_position`` closes, and the reason recorded (64 printable
    characters, ``manual`` by default)."""
    position_id = payload.get("position_id")
    if isinstance(position_id, bool) or not isinstance(position_id, int):
        raise ValidationError("position_id", "must be a position id", position_id)
    reason = payload.get("reason", "manual")
    reason = reason if isinstance(reason, str) and reason.isprintable() else "manual"
    return position_id, reason[:64]
