"""Normalising ccxt's unified markets, orders, trades and positions into core types.

Pure functions, no I/O: the adapter hands them what ccxt returned and gets back
:class:`~core.models.Market`, :class:`~core.venue.ExchangeOrder`,
:class:`~core.models.Fill` and :class:`~core.venue.ExchangePosition`, and
:func:`execution_price` says where an order really executed. Three rules run through
the module:

- Numbers become ``Decimal`` via ``str`` (never a float). A number the venue did not
  give, or gave as ``0`` / ``""`` where zero means "not known" (an average price, a
  trigger price), becomes ``None``: a caller must never read a missing price as 0
  (failure mode 1 of docs/architecture.md).
- A status is only reported when the venue said something we understand; anything else
  is ``None`` and the caller fetches the order again instead of guessing.
- Quantities are in base-currency units. ccxt counts contract markets in contracts, so
  every amount is multiplied by the market's contract size here (1 on Bybit and Binance
  linear perpetuals); the adapter divides by it when sending. The core therefore never
  sees contracts, and P&L (``(exit - entry) x qty``) stays right on any venue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

from core.errors import ValidationError
from core.models import Fill, Market, OrderStatus, OrderType, PositionSide, Side
from core.money import ONE, ZERO, optional_decimal, to_decimal, utcnow
from core.venue import ExchangeOrder, ExchangePosition

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
_RAW_STATUS_KEYS: Final = ("orderStatus", "algoStatus", "strategyStatus", "status", "state")
# Where venues keep their own order type: Bybit, Binance, Binance algo / portfolio margin.
_RAW_TYPE_KEYS: Final = ("stopOrderType", "orderType", "type", "origType", "strategyType")
_STOP_HINTS: Final = frozenset(
    {"stop", "stopmarket", "stoplimit", "stoploss", "stoplosslimit", "partialstoploss"}
)


def _key(text: object) -> str:
    if not isinstance(text, str):
        return ""
    return text.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


def _dec(value: object) -> Decimal | None:
    """A Decimal, or ``None`` for anything missing or unparseable."""
    try:
        return optional_decimal(value)
    except ValidationError:
        return None


def positive_or_zero(value: object) -> Decimal:
    """A positive Decimal, or 0 for anything missing, unparseable or not positive."""
    number = _dec(value)
    return number if number is not None and number > 0 else ZERO


def known_price(value: object) -> Decimal | None:
    """A price that is actually known: positive. ``0`` / ``""`` / ``None`` are unknown."""
    number = _dec(value)
    return number if number is not None and number > 0 else None


def _scaled(value: object, contract_size: Decimal) -> Decimal | None:
    number = _dec(value)
    return None if number is None else abs(number) * contract_size


def _side(value: object) -> Side | None:
    try:
        return Side.parse(value)
    except ValidationError:
        return None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def parse_timestamp(ms: object) -> datetime | None:
    """ccxt's epoch milliseconds as an aware UTC datetime; ``None`` when missing."""
    number = _dec(ms)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(float(number / 1000), tz=UTC)


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _info(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    info = raw.get("info")
    return info if isinstance(info, Mapping) else {}


def _fee(raw: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
    """ccxt's ``fee`` (one currency) or the sum of ``fees`` in the first currency seen."""
    fee = raw.get("fee")
    if isinstance(fee, Mapping) and _dec(fee.get("cost")) is not None:
        return _dec(fee.get("cost")), _text(fee.get("currency"))
    total: Decimal | None = None
    currency: str | None = None
    for item in raw.get("fees") or ():
        if not isinstance(item, Mapping) or _dec(item.get("cost")) is None:
            continue
        item_currency = _text(item.get("currency"))
        if total is not None and item_currency != currency:
            continue  # a second currency cannot be added to the first
        currency = item_currency
        total = (total or ZERO) + (_dec(item.get("cost")) or ZERO)
    return total, currency


def _step(value: object, precision_mode: int) -> Decimal:
    """A ccxt precision entry as a step. In TICK_SIZE mode it is the step itself, in
    DECIMAL_PLACES mode a digit count (3 -> 0.001). SIGNIFICANT_DIGITS has no fixed step:
    0, meaning unknown (ccxt still rounds what is sent)."""
    number = positive_or_zero(value)
    if number == 0:
        return ZERO
    if precision_mode == TICK_SIZE:
        return number
    if precision_mode == DECIMAL_PLACES:
        return ONE.scaleb(-int(number))
    return ZERO


def _venue_min_notional(info: object) -> Decimal:
    """The notional minimum from the venue's own market record, where ccxt left it out:
    Bybit ``lotSizeFilter.minNotionalValue``, Binance's ``MIN_NOTIONAL`` filter."""
    if not isinstance(info, Mapping):
        return ZERO
    lot = info.get("lotSizeFilter")
    if isinstance(lot, Mapping) and positive_or_zero(lot.get("minNotionalValue")):
        return positive_or_zero(lot.get("minNotionalValue"))
    for item in info.get("filters") or ():
        if isinstance(item, Mapping) and item.get("filterType") in ("MIN_NOTIONAL", "NOTIONAL"):
            return positive_or_zero(item.get("notional") or item.get("minNotional"))
    return ZERO


def parse_market(raw: Mapping[str, Any], precision_mode: int) -> Market:
    """A ccxt market as a core :class:`Market`, steps and minimums in base units.

    ``precision_mode`` is the exchange's ``precisionMode``. The cost minimum is ccxt's
    ``limits.cost.min`` or, where ccxt has none, the venue's own notional filter: reading
    it wrongly gets orders rejected for size (failure mode 16).
    """
    size = positive_or_zero(raw.get("contractSize")) or ONE
    precision = raw.get("precision") or {}
    limits = raw.get("limits") or {}
    min_amount = positive_or_zero((limits.get("amount") or {}).get("min"))
    min_cost = positive_or_zero((limits.get("cost") or {}).get("min"))
    return Market(
        symbol=str(raw["symbol"]),
        id=str(raw["id"]),
        base=str(raw.get("base") or ""),
        quote=str(raw.get("quote") or ""),
        tick_size=_step(precision.get("price"), precision_mode),
        amount_step=_step(precision.get("amount"), precision_mode) * size,
        min_amount=min_amount * size,
        min_cost=min_cost or _venue_min_notional(raw.get("info")),
        contract_size=size,
        type=str(raw.get("type")),
        linear=raw.get("linear") is True,
    )


def parse_status(
    candidates: Iterable[object], filled: Decimal | None, amount: Decimal | None
) -> OrderStatus | None:
    """The first status string we understand, refined by the quantities; else ``None``.

    ``closed`` means FILLED only when everything filled: a closed order with
    ``filled < amount`` was cancelled or expired with a partial (or no) fill.
    """
    for text in candidates:
        kind = _STATUS.get(_key(text))
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
    return _key(_info(raw).get(_ALGO_STATUS_KEY)) in _HANDED_OVER


def handover_order_id(raw: Mapping[str, Any]) -> str | None:
    """The id of the regular order a handed-over algo order became (``actualOrderId``);
    ``None`` when the order has not handed over or the venue left the id empty."""
    if not is_handed_over(raw):
        return None
    text = _text(_info(raw).get("actualOrderId"))
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
    info = _info(raw)
    base = _key(raw.get("type"))
    hints = {base} | {_key(info.get(k)) for k in _RAW_TYPE_KEYS}
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


def parse_fill(
    raw: Mapping[str, Any],
    *,
    symbol: str | None = None,
    client_order_id: str | None = None,
    contract_size: Decimal = ONE,
) -> Fill:
    """One ccxt trade as a :class:`Fill`. Raises ``ValidationError`` when the trade has no
    id, price or amount: such a fill could be neither priced nor de-duplicated."""
    trade_id = _text(raw.get("id"))
    if trade_id is None:
        raise ValidationError("trade.id", "a fill needs the venue's trade id", None)
    price = to_decimal(raw.get("price"), "trade.price")
    amount = to_decimal(raw.get("amount"), "trade.amount") * contract_size
    fee, fee_currency = _fee(raw)
    info = _info(raw)
    ts = parse_timestamp(raw.get("timestamp"))
    return Fill(
        trade_id=trade_id,
        price=price,
        amount=abs(amount),
        fee=fee if fee is not None else ZERO,
        fee_currency=fee_currency,
        is_maker=raw.get("takerOrMaker") == "maker",
        symbol=_text(raw.get("symbol")) or symbol,
        side=_side(raw.get("side")),
        exchange_order_id=_text(raw.get("order")),
        client_order_id=_text(info.get("orderLinkId"))
        or _text(info.get("clientOrderId"))
        or client_order_id,
        ts=ts or utcnow(),
    )


def parse_order(
    raw: Mapping[str, Any],
    *,
    symbol: str | None = None,
    client_order_id: str | None = None,
    contract_size: Decimal = ONE,
) -> ExchangeOrder:
    """A ccxt unified order as an :class:`ExchangeOrder`.

    ``symbol`` and ``client_order_id`` fill in what an acknowledgement may omit (a Bybit
    create reply carries only the two ids). Embedded trades without a trade id are left
    out of ``fills``: they could not be de-duplicated against fetched fills.
    """
    info = _info(raw)
    amount = _scaled(raw.get("amount"), contract_size)
    filled = _scaled(raw.get("filled"), contract_size)
    remaining = _scaled(raw.get("remaining"), contract_size)
    statuses = [info.get(k) for k in _RAW_STATUS_KEYS] + [raw.get("status")]
    if is_handed_over(raw):
        # Only the regular order it became knows (see _HANDED_OVER): unknown, not 0.
        filled = remaining = None
        statuses = []
    order_symbol = _text(raw.get("symbol")) or symbol or ""
    order_id = _text(raw.get("id"))
    cid = _text(raw.get("clientOrderId")) or client_order_id
    order_type = parse_order_type(raw)
    trigger = known_price(raw.get("triggerPrice"))
    if trigger is None and order_type is OrderType.TAKE_PROFIT_MARKET:
        trigger = known_price(raw.get("takeProfitPrice"))
    elif trigger is None and order_type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT):
        trigger = known_price(raw.get("stopLossPrice"))
    fee, fee_currency = _fee(raw)
    fills = tuple(
        parse_fill(
            trade,
            symbol=order_symbol,
            client_order_id=cid,
            contract_size=contract_size,
        )
        for trade in raw.get("trades") or ()
        if isinstance(trade, Mapping)
        and _text(trade.get("id"))
        and known_price(trade.get("price"))
        and _dec(trade.get("amount"))
    )
    return ExchangeOrder(
        symbol=order_symbol,
        exchange_order_id=order_id,
        client_order_id=cid,
        status=parse_status(statuses, filled, amount),
        side=_side(raw.get("side")),
        type=order_type,
        amount=amount,
        filled=filled,
        remaining=remaining,
        average_price=known_price(raw.get("average")),
        price=known_price(raw.get("price")),
        trigger_price=trigger,
        reduce_only=_bool(raw.get("reduceOnly")),
        fee=fee,
        fee_currency=fee_currency,
        fills=fills,
        ts=parse_timestamp(raw.get("timestamp")),
        raw=raw,
    )


def parse_position(
    raw: Mapping[str, Any], *, contract_size: Decimal | None = None
) -> ExchangePosition | None:
    """A ccxt position as an :class:`ExchangePosition`, or ``None`` when it is flat.

    ``quantity`` is ``contracts x contractSize`` (base units, see the module docstring).
    The side is ccxt's ``long`` / ``short``; where a venue leaves it out, the sign of
    ``contracts`` decides (one-way accounts report shorts as negative sizes).
    """
    contracts = _dec(raw.get("contracts"))
    if contracts is None or contracts == 0:
        return None
    size = known_price(raw.get("contractSize")) or contract_size or ONE
    side_text = _key(raw.get("side"))
    if side_text in ("long", "short"):
        side = PositionSide(side_text)
    else:
        side = PositionSide.SHORT if contracts < 0 else PositionSide.LONG
    return ExchangePosition(
        symbol=_text(raw.get("symbol")) or "",
        side=side,
        quantity=abs(contracts) * size,
        entry_price=known_price(raw.get("entryPrice")),
        mark_price=known_price(raw.get("markPrice")),
        unrealized_pnl=_dec(raw.get("unrealizedPnl")),
        leverage=known_price(raw.get("leverage")),
        ts=parse_timestamp(raw.get("timestamp")),
    )


def average_of(fills: Iterable[Fill]) -> Decimal | None:
    """Quantity-weighted average price of ``fills``, each trade id counted once (the same
    fill may come in a reply and in a fetch), positive ones only; else ``None``."""
    unique = {f.trade_id: f for f in fills}
    usable = [f for f in unique.values() if f.amount > 0 and f.price > 0]
    qty = sum((f.amount for f in usable), ZERO)
    if qty == 0:
        return None
    return sum((f.price * f.amount for f in usable), ZERO) / qty


def execution_price(
    order: ExchangeOrder,
    fetched: ExchangeOrder | None = None,
    fills: Sequence[Fill] = (),
    position: ExchangePosition | None = None,
) -> Decimal | None:
    """Where the order actually executed, from the best source that knows.

    The chain: the reply's average price, then the fills (the reply's own and those
    fetched, quantity-weighted), then the re-fetched order's average and fills, then
    the position's entry price. Never a signal or limit price. ``None`` means nothing
    knows yet: the caller keeps looking and never records 0 (failure mode 1).
    """
    candidates = (
        order.average_price,
        average_of((*order.fills, *fills)),
        fetched.average_price if fetched is not None else None,
        average_of(fetched.fills) if fetched is not None else None,
        position.entry_price if position is not None else None,
    )
    return next((p for p in candidates if p is not None and p > 0), None)
