"""What a venue's order status and type strings mean, and the Binance algo hand-over.

A status is only reported when the venue said something we understand; anything else is
``None`` and the caller fetches the order again instead of guessing. Binance conditional
(algo) orders that triggered hand over to a regular order whose outcome is theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any, Final

from core.order_model import OrderStatus, OrderType
from core.venue import ExchangeOrder
from exchanges.ccxt_values import info_of, known_price, norm_key, text_or_none

# Sentinels for statuses whose meaning depends on the quantities.
_LIVE: Final = "live"  # resting or working: NEW, or PARTIALLY_FILLED once something filled
_DONE: Final = "done"  # ccxt's "closed": FILLED only if all filled

# Keys are lower case without "_", "-" or spaces, so "PARTIALLY_FILLED" (Binance),
# "PartiallyFilled" (Bybit) and "partially_filled" (OKX) are one entry.
_STATUS: Final[Mapping[str, OrderStatus | str]] = {
    # ccxt's unified vocabulary
    "open": _LIVE,
    "closed": _DONE,
    "canceled": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    # resting or working on the venue. A triggered conditional order (Bybit "Triggered",
    # Binance algo TRIGGERING) has become, or is becoming, a live order in the book: it is
    # still working, not the in-process TRIGGERED state of an emulated order. (Binance
    # algo TRIGGERED / FINISHED are handed over, see _HANDED_OVER.)
    "new": _LIVE,
    "created": _LIVE,
    "untriggered": _LIVE,
    "triggering": _LIVE,
    "triggered": _LIVE,
    "active": _LIVE,
    "accepted": _LIVE,
    "pendingnew": _LIVE,
    "live": _LIVE,
    "partiallyfilled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "cancelled": OrderStatus.CANCELLED,
    "deactivated": OrderStatus.CANCELLED,
    "partiallyfilledcanceled": OrderStatus.CANCELLED,
    "mmpcanceled": OrderStatus.CANCELLED,
    "pendingcancel": OrderStatus.CANCELLING,
    "canceling": OrderStatus.CANCELLING,
    "cancelling": OrderStatus.CANCELLING,
    "expiredinmatch": OrderStatus.EXPIRED,
}
# Binance algo (conditional) orders in these states have handed over to a regular order of
# the matching engine, ``info.actualOrderId``: TRIGGERED means it was placed there, FINISHED
# that it was filled *or* cancelled there. The algo order itself carries no fill (ccxt
# reports ``filled`` 0 and status "closed"), so only the regular order can say what
# happened; until it is read the status and fill are unknown, never CANCELLED.
_ALGO_STATUS_KEY: Final = "algoStatus"
_HANDED_OVER: Final = frozenset({"triggered", "finished"})
# Where venues keep their own status string inside ccxt's ``info``: Bybit, Binance
# (regular, algo, portfolio-margin conditional), OKX.
RAW_STATUS_KEYS: Final = ("orderStatus", "algoStatus", "strategyStatus", "status", "state")
# Where venues keep their own order type: Bybit, Binance, Binance algo / portfolio margin.
_RAW_TYPE_KEYS: Final = ("stopOrderType", "orderType", "type", "origType", "strategyType")
_STOP_HINTS: Final = frozenset(
    {"stop", "stopmarket", "stoplimit", "stoploss", "stoplosslimit", "partialstoploss"}
)


def parse_status(
    candidates: Iterable[object], filled: Decimal | None, amount: Decimal | None
) -> OrderStatus | None:
    """The first status string we understand, refined by the quantities; else ``None``.

    ``closed`` means FILLED only when everything filled: a closed order with
    ``filled < amount`` was cancelled or expired with a partial (or no) fill.
    """
    for text in candidates:
        kind = _STATUS.get(norm_key(text))
        if kind is None:
            continue
        if kind == _LIVE:
            return OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW
        if kind == _DONE:
            if filled is None:
                return None
            if amount is None or filled >= amount:
                return OrderStatus.FILLED if filled > 0 else None
            return OrderStatus.CANCELLED
        assert isinstance(kind, OrderStatus)
        return kind
    return None


def is_handed_over(raw: Mapping[str, Any]) -> bool:
    """True for a Binance algo order that triggered into a regular order (TRIGGERED or
    FINISHED): its real status, fill and average are that order's."""
    return norm_key(info_of(raw).get(_ALGO_STATUS_KEY)) in _HANDED_OVER


def handover_order_id(raw: Mapping[str, Any]) -> str | None:
    """The id of the regular order a handed-over algo order became (``actualOrderId``);
    ``None`` when the order has not handed over or the venue left the id empty."""
    if not is_handed_over(raw):
        return None
    text = text_or_none(info_of(raw).get("actualOrderId"))
    return text if text and text != "0" else None


def merge_handover(algo: ExchangeOrder, actual: ExchangeOrder) -> ExchangeOrder:
    """The algo order as the core knows it (its ids, type, side, size, trigger), with the
    outcome of the regular order it became: status, fill, average, fee and executions."""
    return replace(
        algo,
        status=actual.status,
        amount=algo.amount if algo.amount is not None else actual.amount,
        filled=actual.filled,
        remaining=actual.remaining,
        average_price=actual.average_price,
        fee=actual.fee,
        fee_currency=actual.fee_currency,
        fills=actual.fills,
        ts=actual.ts or algo.ts,
        raw={**algo.raw, "actualOrder": actual.raw},
    )


def parse_order_type(raw: Mapping[str, Any]) -> OrderType | None:
    """Our order type from ccxt's unified type plus the venue's own hints.

    ccxt reports Binance's STOP_MARKET as ``market`` with a ``triggerPrice``, and Bybit's
    conditional orders as ``market`` / ``limit`` with a ``triggerPrice``: the trigger
    price, not ``stopLossPrice`` / ``takeProfitPrice`` alone, makes an order conditional,
    because Bybit reports a stop-loss *attached* to an entry in ``stopLossPrice`` too.
    Our model has no take-profit-limit; one is reported as STOP_LIMIT (a triggered
    limit order), with both prices kept.
    """
    info = info_of(raw)
    base = norm_key(raw.get("type"))
    hints = {base} | {norm_key(info.get(k)) for k in _RAW_TYPE_KEYS}
    trigger = known_price(raw.get("triggerPrice"))
    trailing = any("trailing" in h for h in hints)
    take_profit = any("takeprofit" in h for h in hints) or (
        trigger is not None and known_price(raw.get("takeProfitPrice")) == trigger
    )
    conditional = trigger is not None or take_profit or bool(hints & _STOP_HINTS)
    # ccxt's own type says market or limit (it maps Binance's STOP / TAKE_PROFIT to
    # "limit"); Bybit's stopOrderType "Stop" says nothing about the price kind.
    is_limit = base.endswith("limit")
    if trailing:
        return OrderType.TRAILING_STOP
    if conditional:
        if is_limit:
            return OrderType.STOP_LIMIT
        return OrderType.TAKE_PROFIT_MARKET if take_profit else OrderType.STOP_MARKET
    if base == "market":
        return OrderType.MARKET
    if base == "limit":
        return OrderType.LIMIT
    return None
