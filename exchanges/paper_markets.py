"""Market definitions of the paper venue, and the rules a real venue checks on every order.

The built-in markets copy Bybit's USDT linear perpetuals (tick, lot step, minimum quantity,
minimum order value of 5 USDT), so an order the paper venue accepts is one Bybit would
accept too, and a sizing bug shows up in tests instead of live (failure mode 16).

A JSON file (``TRADER_PAPER_MARKETS_FILE``) may override fields of a built-in market or add
markets. Either an object keyed by unified symbol or a list of objects with ``symbol``::

    {"BTC/USDT:USDT": {"tick_size": "0.5"},
     "DOGE/USDT:USDT": {"tick_size": "0.00001", "amount_step": "1", "min_amount": "1",
                        "min_cost": "5"}}

Only linear perpetuals are listed, so a spot symbol (``BTC/USDT``) never resolves to a
market here (failure mode 13).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.errors import ValidationError
from core.models import Market
from core.money import to_decimal
from core.venue import InvalidOrder


def _perp(base: str, tick: str, step: str, min_amount: str, min_cost: str = "5") -> Market:
    return Market(
        symbol=f"{base}/USDT:USDT",
        id=f"{base}USDT",
        base=base,
        quote="USDT",
        tick_size=Decimal(tick),
        amount_step=Decimal(step),
        min_amount=Decimal(min_amount),
        min_cost=Decimal(min_cost),
    )


BUILTIN_MARKETS: Mapping[str, Market] = {
    m.symbol: m
    for m in (
        _perp("BTC", "0.1", "0.001", "0.001"),
        _perp("ETH", "0.01", "0.01", "0.01"),
        _perp("SOL", "0.01", "0.1", "0.1"),
        _perp("MNT", "0.0001", "1", "1"),
        _perp("XRP", "0.0001", "1", "1"),
        _perp("DOGE", "0.00001", "1", "1"),
    )
}

_DECIMAL_FIELDS = ("tick_size", "amount_step", "min_amount", "min_cost", "contract_size")
_KNOWN_FIELDS = {f.name for f in fields(Market)}


def load_markets_file(
    path: Path, base: Mapping[str, Market] = BUILTIN_MARKETS
) -> dict[str, Market]:
    """``base`` with the definitions of the JSON file at ``path`` merged in.

    Raises :class:`ValidationError` naming the market and field when the file is wrong:
    a bad market file must stop the venue at start, not misprice orders later.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError("paper_markets_file", f"cannot read {path}: {exc}") from None
    if isinstance(raw, Mapping):
        entries: Iterable[tuple[str, Any]] = raw.items()
    elif isinstance(raw, list):
        entries = [(str(item.get("symbol", "")), item) for item in raw if isinstance(item, dict)]
    else:
        raise ValidationError("paper_markets_file", "must be a JSON object or list of markets")
    markets = dict(base)
    for symbol, spec in entries:
        markets[symbol] = _market_from_spec(symbol, spec, markets.get(symbol))
    return markets


def _market_from_spec(symbol: str, spec: Any, current: Market | None) -> Market:
    where = f"paper market {symbol!r}"
    if not isinstance(spec, Mapping):
        raise ValidationError(where, "must be a JSON object")
    unknown = set(spec) - _KNOWN_FIELDS
    if unknown:
        raise ValidationError(where, f"unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {k: v for k, v in spec.items() if k != "symbol"}
    for name in _DECIMAL_FIELDS:
        if name in values:
            values[name] = to_decimal(values[name], f"{where}.{name}")
    if current is not None:
        market = replace(current, **values)
    else:
        base, _, rest = symbol.partition("/")
        quote, _, settle = rest.partition(":")
        if not (base and quote and settle):
            raise ValidationError(where, "a new market needs a symbol like BASE/QUOTE:SETTLE")
        missing = {"tick_size", "amount_step"} - set(values)
        if missing:
            raise ValidationError(where, f"a new market needs {sorted(missing)}")
        values.setdefault("id", f"{base}{quote}")
        values.setdefault("base", base)
        values.setdefault("quote", quote)
        market = Market(symbol=symbol, **values)
    if market.tick_size <= 0 or market.amount_step <= 0:
        raise ValidationError(where, "tick_size and amount_step must be > 0")
    if market.min_amount < 0 or market.min_cost < 0:
        raise ValidationError(where, "min_amount and min_cost must be >= 0")
    return market


class MarketTable:
    """The venue's markets, resolvable by unified symbol or bare id (``BTCUSDT``)."""

    __slots__ = ("_by_id", "_by_symbol")

    def __init__(self, markets: Mapping[str, Market]) -> None:
        self._by_symbol = dict(markets)
        self._by_id = {m.id.upper(): m for m in markets.values()}

    @property
    def markets(self) -> Mapping[str, Market]:
        return self._by_symbol

    def resolve(self, symbol: str) -> Market:
        """The market named by ``symbol``; ``InvalidOrder`` when there is none."""
        # The unified symbol, as every tick and every order carries it: one dict lookup
        # (this runs for every position on every tick). Anything else is normalised.
        market = self._by_symbol.get(symbol)
        if market is not None:
            return market
        text = symbol.strip() if isinstance(symbol, str) else ""
        market = self._by_symbol.get(text) or self._by_id.get(text.upper())
        if market is None:
            hint = ""
            if "/" in text and ":" not in text:
                hint = f" (the paper venue trades linear perpetuals: did you mean {text}:USDT?)"
            raise InvalidOrder(f"paper: unknown market {symbol!r}{hint}")
        return market


def check_price(market: Market, price: Decimal, what: str) -> None:
    """A real venue refuses a price that is not positive or not on the tick."""
    if price <= 0:
        raise InvalidOrder(f"paper: {what} must be > 0 (got {price})")
    if price % market.tick_size != 0:
        raise InvalidOrder(
            f"paper: {what} {price} is not a multiple of the tick size {market.tick_size} "
            f"of {market.symbol}"
        )


def check_amount(market: Market, amount: Decimal) -> None:
    """A real venue refuses a quantity off the lot step or below the minimum quantity."""
    if amount <= 0:
        raise InvalidOrder(f"paper: amount must be > 0 (got {amount})")
    if amount % market.amount_step != 0:
        raise InvalidOrder(
            f"paper: amount {amount} is not a multiple of the amount step {market.amount_step} "
            f"of {market.symbol}"
        )
    if amount < market.min_amount:
        raise InvalidOrder(
            f"paper: amount {amount} is below the minimum {market.min_amount} of {market.symbol}"
        )


def check_cost(market: Market, amount: Decimal, price: Decimal) -> None:
    """A real venue refuses an order worth less than the minimum order value."""
    cost = amount * price * market.contract_size
    if cost < market.min_cost:
        raise InvalidOrder(
            f"paper: order value {cost} {market.quote} is below the minimum {market.min_cost} "
            f"{market.quote} of {market.symbol}"
        )
