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
from decimal import Decimal
from typing import Any

from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

from core.errors import ValidationError
from core.models import Market, PositionSide
from core.money import ONE, ZERO, to_decimal, utcnow
from core.order_model import Fill, OrderType
from core.venue import ExchangeOrder, ExchangePosition
from exchanges.ccxt_values import (
    fee_of,
    flag_or_none,
    info_of,
    known_price,
    norm_key,
    number_or_none,
    parse_timestamp,
    positive_or_zero,
    scaled,
    side_or_none,
    text_or_none,
)
from exchanges.response_status import (
    RAW_STATUS_KEYS,
    is_handed_over,
    parse_order_type,
    parse_status,
)


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


def parse_fill(
    raw: Mapping[str, Any],
    *,
    symbol: str | None = None,
    client_order_id: str | None = None,
    contract_size: Decimal = ONE,
) -> Fill:
    """One ccxt trade as a :class:`Fill`. Raises ``ValidationError`` when the trade has no
    id, price or amount: such a fill could be neither priced nor de-duplicated."""
    trade_id = text_or_none(raw.get("id"))
    if trade_id is None:
        raise ValidationError("trade.id", "a fill needs the venue's trade id", None)
    price = to_decimal(raw.get("price"), "trade.price")
    amount = to_decimal(raw.get("amount"), "trade.amount") * contract_size
    fee, fee_currency = fee_of(raw)
    info = info_of(raw)
    ts = parse_timestamp(raw.get("timestamp"))
    return Fill(
        trade_id=trade_id,
        price=price,
        amount=abs(amount),
        fee=fee if fee is not None else ZERO,
        fee_currency=fee_currency,
        is_maker=raw.get("takerOrMaker") == "maker",
        symbol=text_or_none(raw.get("symbol")) or symbol,
        side=side_or_none(raw.get("side")),
        exchange_order_id=text_or_none(raw.get("order")),
        client_order_id=text_or_none(info.get("orderLinkId"))
        or text_or_none(info.get("clientOrderId"))
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
    info = info_of(raw)
    amount = scaled(raw.get("amount"), contract_size)
    filled = scaled(raw.get("filled"), contract_size)
    remaining = scaled(raw.get("remaining"), contract_size)
    statuses = [info.get(k) for k in RAW_STATUS_KEYS] + [raw.get("status")]
    if is_handed_over(raw):
        # Only the regular order it became knows (see _HANDED_OVER): unknown, not 0.
        filled = remaining = None
        statuses = []
    order_symbol = text_or_none(raw.get("symbol")) or symbol or ""
    order_id = text_or_none(raw.get("id"))
    cid = text_or_none(raw.get("clientOrderId")) or client_order_id
    order_type = parse_order_type(raw)
    trigger = _trigger_of(raw, order_type)
    fee, fee_currency = fee_of(raw)
    fills = _embedded_fills(raw, order_symbol, cid, contract_size)
    return ExchangeOrder(
        symbol=order_symbol,
        exchange_order_id=order_id,
        client_order_id=cid,
        status=parse_status(statuses, filled, amount),
        side=side_or_none(raw.get("side")),
        type=order_type,
        amount=amount,
        filled=filled,
        remaining=remaining,
        average_price=known_price(raw.get("average")),
        price=known_price(raw.get("price")),
        trigger_price=trigger,
        reduce_only=flag_or_none(raw.get("reduceOnly")),
        fee=fee,
        fee_currency=fee_currency,
        fills=fills,
        ts=parse_timestamp(raw.get("timestamp")),
        raw=raw,
    )


def _trigger_of(raw: Mapping[str, Any], order_type: OrderType | None) -> Decimal | None:
    """The trigger price; venues that report a conditional order's level only as its
    take-profit or stop-loss price are read there."""
    trigger = known_price(raw.get("triggerPrice"))
    if trigger is None and order_type is OrderType.TAKE_PROFIT_MARKET:
        trigger = known_price(raw.get("takeProfitPrice"))
    elif trigger is None and order_type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT):
        trigger = known_price(raw.get("stopLossPrice"))
    return trigger


def _embedded_fills(
    raw: Mapping[str, Any], symbol: str, cid: str | None, contract_size: Decimal
) -> tuple[Fill, ...]:
    """The trades a reply carries, those with an id, a price and an amount only."""
    return tuple(
        parse_fill(
            trade,
            symbol=symbol,
            client_order_id=cid,
            contract_size=contract_size,
        )
        for trade in raw.get("trades") or ()
        if isinstance(trade, Mapping)
        and text_or_none(trade.get("id"))
        and known_price(trade.get("price"))
        and number_or_none(trade.get("amount"))
    )


def parse_position(
    raw: Mapping[str, Any], *, contract_size: Decimal | None = None
) -> ExchangePosition | None:
    """A ccxt position as an :class:`ExchangePosition`, or ``None`` when it is flat.

    ``quantity`` is ``contracts x contractSize`` (base units, see the module docstring).
    The side is ccxt's ``long`` / ``short``; where a venue leaves it out, the sign of
    ``contracts`` decides (one-way accounts report shorts as negative sizes).
    """
    contracts = number_or_none(raw.get("contracts"))
    if contracts is None or contracts == 0:
        return None
    size = known_price(raw.get("contractSize")) or contract_size or ONE
    side_text = norm_key(raw.get("side"))
    if side_text in ("long", "short"):
        side = PositionSide(side_text)
    else:
        side = PositionSide.SHORT if contracts < 0 else PositionSide.LONG
    return ExchangePosition(
        symbol=text_or_none(raw.get("symbol")) or "",
        side=side,
        quantity=abs(contracts) * size,
        entry_price=known_price(raw.get("entryPrice")),
        mark_price=known_price(raw.get("markPrice")),
        unrealized_pnl=number_or_none(raw.get("unrealizedPnl")),
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
