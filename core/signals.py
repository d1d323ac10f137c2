"""Turning a signal request (a ``monitoring.signals`` row, a CLI call) into a checked Signal,
and computing its protective prices from the real fill.

Validation happens in two steps: :func:`parse_signal` checks what needs no market data
(types, signs, exclusive options); :func:`check_against_market` checks what does (the
amount against the market minimum, prices on the right side of the reference price).
Every failure is a :class:`ValidationError` naming the field, so a rejected row tells the
person who wrote it what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from core.errors import ValidationError
from core.models import EntryType, Market, PositionSide, Signal
from core.money import HUNDRED, ONE, floor_to_step, optional_decimal, round_to_step

MAX_SYMBOL_LENGTH = 64


def _percent(row: Mapping[str, Any], field: str) -> Decimal | None:
    value = optional_decimal(row.get(field), field)
    if value is not None and not Decimal(0) < value < HUNDRED:
        raise ValidationError(field, "must be a percentage between 0 and 100", row.get(field))
    return value


def _price(row: Mapping[str, Any], field: str) -> Decimal | None:
    value = optional_decimal(row.get(field), field)
    if value is not None and value <= 0:
        raise ValidationError(field, "must be greater than 0", row.get(field))
    return value


def parse_signal(row: Mapping[str, Any]) -> Signal:
    """Check a raw signal; raise :class:`ValidationError` naming the first bad field."""
    symbol = row.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValidationError("symbol", "is required", symbol)
    if len(symbol) > MAX_SYMBOL_LENGTH or not symbol.isprintable():
        raise ValidationError("symbol", "is not a market symbol", symbol)
    side = PositionSide.parse(row.get("side"))
    amount = _price(row, "amount")
    quote_amount = _price(row, "quote_amount")
    if (amount is None) == (quote_amount is None):
        raise ValidationError("amount", "give exactly one of amount or quote_amount")
    raw_entry = row.get("entry_type") or "market"
    try:
        entry_type = EntryType(str(raw_entry).strip().lower())
    except ValueError:
        raise ValidationError("entry_type", "must be 'market' or 'limit'", raw_entry) from None
    price = _price(row, "price")
    if entry_type is EntryType.LIMIT and price is None:
        raise ValidationError("price", "is required for a limit entry")
    sl_price, sl_pct = _price(row, "stop_loss_price"), _percent(row, "stop_loss_percent")
    if sl_price is not None and sl_pct is not None:
        raise ValidationError("stop_loss", "give a price or a percent, not both")
    tp_price, tp_pct = _price(row, "take_profit_price"), _percent(row, "take_profit_percent")
    if tp_price is not None and tp_pct is not None:
        raise ValidationError("take_profit", "give a price or a percent, not both")
    activation = _percent(row, "trailing_activation_percent")
    callback = _percent(row, "trailing_callback_percent")
    if activation is not None and callback is None:
        raise ValidationError("trailing_callback_percent", "is required with an activation")
    signal_id = row.get("id")
    return Signal(
        symbol=symbol.strip(),
        side=side,
        amount=amount,
        quote_amount=quote_amount,
        entry_type=entry_type,
        price=price if entry_type is EntryType.LIMIT else None,
        stop_loss_price=sl_price,
        stop_loss_percent=sl_pct,
        take_profit_price=tp_price,
        take_profit_percent=tp_pct,
        trailing_activation_percent=activation,
        trailing_callback_percent=callback,
        id=int(signal_id) if isinstance(signal_id, int) else None,
        account=row.get("account") if isinstance(row.get("account"), str) else None,
    )


def entry_amount(signal: Signal, market: Market, reference_price: Decimal) -> Decimal:
    """The base amount to send: given, or quote amount / price; floored to the lot step and
    checked against the market minimums (failure mode 16)."""
    if signal.amount is not None:
        raw = signal.amount
    else:
        assert signal.quote_amount is not None  # parse_signal guarantees one of the two
        raw = signal.quote_amount / reference_price
    amount = floor_to_step(raw, market.amount_step)
    field = "amount" if signal.amount is not None else "quote_amount"
    typed = signal.amount if signal.amount is not None else signal.quote_amount
    if amount <= 0 or amount < market.min_amount:
        raise ValidationError(
            field,
            f"buys {amount} {market.base}, below the market minimum of "
            f"{market.min_amount} {market.base}",
            typed,  # what the user typed, not the base amount derived from it
        )
    notional = amount * reference_price
    if market.min_cost and notional < market.min_cost:
        raise ValidationError(
            field,
            f"notional {notional:.2f} is below the market minimum of {market.min_cost}",
            typed,
        )
    return amount


def check_margin(
    amount: Decimal,
    market: Market,
    reference_price: Decimal,
    *,
    leverage: Decimal,
    free_balance: Decimal,
    field: str = "amount",
    typed: Decimal | None = None,
) -> None:
    """The entry's initial margin (notional / leverage) must fit in the free balance.

    Checked before anything is sent: an entry the venue would refuse for size is a bad
    request, rejected with the numbers, not a failed open with an order on record. The
    refusal quotes ``typed`` (what the user gave: a quote amount is not the base amount
    derived from it) when given.
    """
    margin = amount * reference_price * market.contract_size / leverage
    if margin > free_balance:
        raise ValidationError(
            field,
            f"needs {margin:.2f} {market.quote} of margin at {leverage}x leverage, "
            f"{free_balance:.2f} is free",
            typed if typed is not None else amount,
        )


def check_prices(signal: Signal, reference_price: Decimal) -> None:
    """Absolute stop / take-profit prices must sit on the protective side of the reference:
    a long's stop below it and its take-profit above, a short's the other way round
    (failure mode 3: a stop for a long placed above the entry)."""
    long = signal.side is PositionSide.LONG
    checks = (
        ("stop_loss_price", signal.stop_loss_price, "below" if long else "above"),
        ("take_profit_price", signal.take_profit_price, "above" if long else "below"),
    )
    for field, price, where in checks:
        if price is None:
            continue
        ok = price < reference_price if where == "below" else price > reference_price
        if not ok:
            raise ValidationError(
                field,
                f"must be {where} the entry price {reference_price} for a {signal.side.value}",
                price,
            )


@dataclass(frozen=True, slots=True)
class Protection:
    """Protective prices computed from the real fill, rounded to the tick."""

    stop_loss: Decimal
    take_profit: Decimal | None


def protection_from_fill(
    signal: Signal,
    fill_price: Decimal,
    market: Market,
    default_stop_pct: Decimal | None,
    default_tp_pct: Decimal | None,
) -> Protection:
    """Stop-loss and take-profit from the FILL price (never the signal's: failure mode 2).

    Rounding moves a stop away from the entry by at most one tick rather than towards it
    (down for a long's stop, up for a short's), so rounding never tightens the risk taken.
    """
    long = signal.side is PositionSide.LONG
    tick = market.tick_size
    if signal.stop_loss_price is not None:
        stop = signal.stop_loss_price
    else:
        pct = signal.stop_loss_percent or default_stop_pct
        if pct is None:
            raise ValidationError("stop_loss", "no stop-loss given and no default configured")
        stop = fill_price * (ONE - pct / HUNDRED if long else ONE + pct / HUNDRED)
    stop = round_to_step(stop, tick, ROUND_DOWN if long else ROUND_UP)
    take: Decimal | None = signal.take_profit_price
    if take is None and (signal.take_profit_percent or default_tp_pct):
        pct = signal.take_profit_percent or default_tp_pct
        assert pct is not None
        take = fill_price * (ONE + pct / HUNDRED if long else ONE - pct / HUNDRED)
    if take is not None:
        take = round_to_step(take, tick, ROUND_UP if long else ROUND_DOWN)
    return Protection(stop_loss=stop, take_profit=take)
