"""Checking a manual order request before anything is armed or sent.

:func:`parse_order_request` checks what needs no market data (types, signs, what each
order type requires); :func:`check_order` checks what does (minimums, prices against the
current price, balance, the position a reduce-only order reduces). Each rejection is a
:class:`ValidationError` naming the field and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from core.errors import ValidationError
from core.models import Market, PriceSource, Side
from core.money import (
    HUNDRED,
    floor_to_step,
    optional_decimal,
    require_aware,
    round_to_step,
    utcnow,
)
from core.order_model import OrderType

NATIVE_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET})
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A manual order request whose fields have been checked one by one."""

    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    trail_percent: Decimal | None = None
    trail_amount: Decimal | None = None
    activation_price: Decimal | None = None
    expires_at: datetime | None = None
    reduce_only: bool = False
    native: bool = False
    position_id: int | None = None
    request_id: int | None = None
    price_source: PriceSource = PriceSource.LAST


def parse_duration(text: str, field: str = "expires_in") -> timedelta:
    """``30m``, ``2h``, ``45s``, ``1d`` → timedelta."""
    raw = text.strip().lower()
    if len(raw) < 2 or raw[-1] not in _UNITS or not raw[:-1].isdigit():
        raise ValidationError(field, "must look like 30s, 30m, 2h or 1d", text)
    seconds = int(raw[:-1]) * _UNITS[raw[-1]]
    if seconds <= 0:
        raise ValidationError(field, "must be longer than 0", text)
    return timedelta(seconds=seconds)


def _positive(payload: Mapping[str, Any], field: str) -> Decimal | None:
    value = optional_decimal(payload.get(field), field)
    if value is not None and value <= 0:
        raise ValidationError(field, "must be greater than 0", payload.get(field))
    return value


def _bool(payload: Mapping[str, Any], field: str) -> bool:
    value = payload.get(field, False)
    if not isinstance(value, bool):
        raise ValidationError(field, "must be true or false", value)
    return value


def parse_order_request(payload: Mapping[str, Any], now: datetime | None = None) -> OrderSpec:
    """Check a ``place_order`` payload; raise naming the first bad field."""
    symbol = payload.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip() or len(symbol) > 64:
        raise ValidationError("symbol", "is required and must be a market symbol", symbol)
    side = Side.parse(payload.get("side"))
    kind = OrderType.parse(payload.get("type"))
    if kind is OrderType.MARKET:
        raise ValidationError("type", "market orders are sent by signals or closes, not held")
    amount = _positive(payload, "amount")
    if amount is None:
        raise ValidationError("amount", "is required")
    price = _positive(payload, "price")
    trigger = _positive(payload, "trigger_price")
    trail_pct = _positive(payload, "trail_percent")
    trail_amt = _positive(payload, "trail_amount")
    activation = _positive(payload, "activation_price")
    _check_type_fields(kind, side, price, trigger, trail_pct, trail_amt, activation)
    expires_at = _expiry(payload, now or utcnow())
    native = _bool(payload, "native")
    if native and kind not in NATIVE_TYPES:
        raise ValidationError("native", f"{kind.value.lower()} orders are emulated only")
    source = _price_source(payload.get("price_source"))
    if native and source is not PriceSource.LAST:
        raise ValidationError(
            "price_source", "applies to emulated orders; a native order uses the venue's"
        )
    position_id = _position_id(payload)
    return OrderSpec(
        symbol=symbol.strip(),
        side=side,
        type=kind,
        amount=amount,
        price=price,
        trigger_price=trigger,
        trail_percent=trail_pct,
        trail_amount=trail_amt,
        activation_price=activation,
        expires_at=expires_at,
        reduce_only=_bool(payload, "reduce_only"),
        native=native,
        position_id=position_id,
        price_source=source,
    )


def _check_type_fields(
    kind: OrderType,
    side: Side,
    price: Decimal | None,
    trigger: Decimal | None,
    trail_pct: Decimal | None,
    trail_amt: Decimal | None,
    activation: Decimal | None,
) -> None:
    """The prices each order type needs, and only those; raise naming the first bad one."""
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and price is None:
        raise ValidationError("price", f"is required for a {kind.value.lower()} order")
    triggered = (OrderType.STOP_MARKET, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_MARKET)
    if kind in triggered and trigger is None:
        raise ValidationError("trigger_price", f"is required for a {kind.value.lower()} order")
    if kind is OrderType.STOP_LIMIT:
        assert price is not None and trigger is not None
        # A buy stop-limit arms above the market and must be allowed to pay the stop.
        if side is Side.BUY and price < trigger:
            raise ValidationError("price", "a buy stop-limit's limit must be >= its trigger", price)
        if side is Side.SELL and price > trigger:
            raise ValidationError(
                "price", "a sell stop-limit's limit must be <= its trigger", price
            )
    if kind is OrderType.TRAILING_STOP:
        if (trail_pct is None) == (trail_amt is None):
            raise ValidationError(
                "trail_percent", "give exactly one of trail_percent or trail_amount"
            )
        if trail_pct is not None and trail_pct >= HUNDRED:
            raise ValidationError("trail_percent", "must be between 0 and 100", trail_pct)
    elif trail_pct is not None or trail_amt is not None or activation is not None:
        raise ValidationError("trail_percent", "trailing fields are only for trailing_stop orders")


def _position_id(payload: Mapping[str, Any]) -> int | None:
    position_id = payload.get("position_id")
    if position_id is not None and (
        isinstance(position_id, bool)
        or not isinstance(position_id, int)
        or not 0 < position_id < 2**63
    ):
        raise ValidationError("position_id", "must be a position id", position_id)
    return position_id


def _price_source(value: Any) -> PriceSource:
    if value is None:
        return PriceSource.LAST
    try:
        return PriceSource(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(s.value for s in PriceSource)
        raise ValidationError("price_source", f"must be one of {choices}", value) from None


def _expiry(payload: Mapping[str, Any], now: datetime) -> datetime | None:
    if payload.get("expires_in"):
        return now + parse_duration(str(payload["expires_in"]))
    raw = payload.get("expires_at")
    if raw is None:
        return None
    try:
        when = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    except ValueError:
        raise ValidationError("expires_at", "must be an ISO-8601 time", raw) from None
    when = require_aware(when, "expires_at")
    if when <= now:
        raise ValidationError("expires_at", "must be in the future", raw)
    return when


def check_order(
    spec: OrderSpec,
    market: Market,
    current_price: Decimal | None,
    *,
    free_balance: Decimal | None,
    leverage: Decimal,
    position_side: Side | None,
) -> OrderSpec:
    """Check ``spec`` against the market; return it on the market's grid: the amount
    floored to the lot step, prices rounded to the tick (see :func:`on_grid`).

    ``position_side`` is the entry side of the open position on the market (None if
    flat): a reduce-only order must be on the other side.
    """
    requested = spec.amount
    spec = on_grid(spec, market)
    amount = spec.amount
    if amount <= 0 or amount < market.min_amount:
        raise ValidationError(
            "amount", f"is below the market minimum of {market.min_amount}", requested
        )
    level = spec.price or spec.trigger_price or spec.activation_price or current_price
    if level is not None and not spec.reduce_only and market.min_cost:
        notional = amount * level
        if notional < market.min_cost:
            raise ValidationError(
                "amount",
                f"notional {notional:.2f} is below the minimum of {market.min_cost}",
                spec.amount,
            )
    if current_price is not None:
        _check_levels(spec, current_price)
    if spec.reduce_only:
        if position_side is None or position_side is spec.side:
            raise ValidationError(
                "reduce_only",
                f"no open position on {market.symbol} that a {spec.side.value} would reduce",
            )
    elif free_balance is not None and level is not None:
        margin = amount * level / leverage
        if margin > free_balance:
            raise ValidationError(
                "amount", f"needs {margin:.2f} {market.quote} of margin, {free_balance:.2f} is free"
            )
    return spec


def on_grid(spec: OrderSpec, market: Market) -> OrderSpec:
    """``spec`` with its amount floored to the lot step and its prices on the tick grid.

    An off-grid price would be accepted and armed here, then refused by the venue at the
    moment the order fires, which is the worst time to learn it. A limit price is rounded
    in the trader's favour (a buy down, a sell up: never a worse fill than asked); trigger,
    activation and trail distances go to the nearest tick.
    """
    tick = market.tick_size
    buy = spec.side is Side.BUY
    price = spec.price
    if price is not None:
        price = round_to_step(price, tick, ROUND_FLOOR if buy else ROUND_CEILING)
        if price <= 0:
            raise ValidationError("price", f"rounds to 0 on the tick of {tick}", spec.price)
    nearest = {
        name: None if value is None else round_to_step(value, tick)
        for name, value in (
            ("trigger_price", spec.trigger_price),
            ("activation_price", spec.activation_price),
            ("trail_amount", spec.trail_amount),
        )
    }
    for name, value in nearest.items():
        if value is not None and value <= 0:
            raise ValidationError(name, f"rounds to 0 on the tick of {tick}", getattr(spec, name))
    return replace(
        spec,
        amount=floor_to_step(spec.amount, market.amount_step),
        price=price,
        trigger_price=nearest["trigger_price"],
        activation_price=nearest["activation_price"],
        trail_amount=nearest["trail_amount"],
    )


def _check_levels(spec: OrderSpec, price: Decimal) -> None:
    """Triggers that would fire at once are refused: almost always a sign mix-up."""
    buy = spec.side is Side.BUY
    level: Decimal | None
    if spec.type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT):
        field, level, want = "trigger_price", spec.trigger_price, "above" if buy else "below"
        what = "stop"
    elif spec.type is OrderType.TAKE_PROFIT_MARKET:
        field, level, want = "trigger_price", spec.trigger_price, "below" if buy else "above"
        what = "take-profit"
    elif spec.type is OrderType.TRAILING_STOP:
        field, level, want = "activation_price", spec.activation_price, "below" if buy else "above"
        what = "trailing stop's activation"
    else:
        return
    if level is None:
        return
    if (level <= price) if want == "above" else (level >= price):
        raise ValidationError(
            field, f"a {spec.side.value} {what} must be {want} the current price {price}", level
        )
