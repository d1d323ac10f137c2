"""The lower layer of the ccxt adapter: calling ccxt, and the markets.

Every ccxt call goes through ``_read`` (retried with back-off on rate limits and outages,
bounded) or ``_write`` (never retried); every ccxt exception through
:func:`~exchanges.ccxt_errors.translate_ccxt_error`. Markets are filtered to the
account's type (linear perpetual swaps by default) and a symbol resolves only among them
(failure mode 13); amounts and prices are rounded with ccxt's own precision helpers and
refused before sending when under the minimums (failure mode 16).

The order path builds on this in core order: exchanges/ccxt_lookup.py (finding an order
by client id, the Binance hand-over), then exchanges/ccxt_adapter.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ccxt.async_support as ccxt_async
import structlog

from config.logging import register_secrets
from core.models import Market, Tick
from core.money import optional_decimal, utcnow
from core.order_model import OrderType
from core.resource import AsyncResource
from core.venue import (
    ExchangeError,
    ExchangeOrder,
    ExchangeUnavailable,
    InvalidOrder,
)
from exchanges.ccxt_client import _enable_sandbox, ccxt_client
from exchanges.ccxt_errors import (
    is_translatable,
    rounds_to_zero,
    translate_ccxt_error,
)
from exchanges.ccxt_params import (
    VenueProfile,
    profile_for,
)
from exchanges.ccxt_values import known_price, parse_timestamp
from exchanges.response import parse_market, parse_order

if TYPE_CHECKING:
    pass

log = structlog.get_logger(__name__)


_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_MAX_BACKOFF_S = 8.0
_PRICE_FRESH_S = 30.0  # a last price this recent may size a market order's notional


def _plain(value: Decimal) -> str:
    """Decimal as positional text (ccxt's precision code does not read ``1E-7``)."""
    return format(value, "f")


class CcxtMarkets(AsyncResource):
    """ccxt calls, the markets and their rounding rules, for one exchange instance."""

    def __init__(
        self,
        exchange_id: str,
        *,
        api_key: str = "",
        secret: str = "",
        password: str = "",
        testnet: bool = False,
        exchange: Any = None,
        market_type: str = "swap",
        read_attempts: int = 3,
        lookup_attempts: int = 4,
        backoff_s: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._id = exchange_id
        self._profile: VenueProfile = profile_for(exchange_id)
        self._secrets = tuple(s for s in (api_key, secret, password) if s)
        register_secrets(self._secrets)  # the log renderer masks them, should one slip
        self._market_type = market_type
        self._read_attempts = max(1, read_attempts)
        self._lookup_attempts = max(1, lookup_attempts)
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._exchange: Any = exchange or ccxt_client(
            ccxt_async, exchange_id, api_key=api_key, secret=secret, password=password
        )
        self._exchange.options.update(self._profile.options)
        if testnet:
            _enable_sandbox(self._exchange, exchange_id, self._secrets)
        self._markets: dict[str, Market] | None = None
        self._by_key: dict[str, list[Market]] = {}
        self._markets_lock = asyncio.Lock()
        self._last_price: dict[str, tuple[Decimal, float]] = {}  # price, monotonic time
        # Binance algo id -> the regular order it handed over to (its fills carry that id).
        self._handover: dict[str, str] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._id!r}, market_type={self._market_type!r})"

    @property
    def name(self) -> str:
        return self._id

    # -- resource ----------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._exchange.close()
        except Exception as exc:
            if not is_translatable(exc):
                raise
            log.warning("exchange_close_failed", exchange=self._id, error=self._error(exc))

    # -- calling ccxt ------------------------------------------------------------------
    def _error(self, exc: BaseException, *, submitting: bool = False) -> ExchangeError:
        return translate_ccxt_error(exc, secrets=self._secrets, submitting=submitting)

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_s * 2**attempt, _MAX_BACKOFF_S))

    async def _read(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """A read, retried with back-off on transient errors, a bounded number of times."""
        attempt = 0
        while True:
            try:
                return await method(*args)
            except Exception as exc:
                if not is_translatable(exc):
                    raise
                error = self._error(exc)
            attempt += 1
            if not error.retryable or attempt >= self._read_attempts:
                raise error from None
            await self._sleep(self._backoff(attempt - 1))

    async def _write(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """A write: one attempt (repeating a cancel or an amend is the caller's choice)."""
        try:
            return await method(*args)
        except Exception as exc:
            if not is_translatable(exc):
                raise
            raise self._error(exc) from None

    # -- markets -----------------------------------------------------------------------
    async def load_markets(self) -> Mapping[str, Market]:
        if self._markets is None:
            async with self._markets_lock:
                if self._markets is None:
                    raw = await self._read(self._exchange.load_markets)
                    self._index(raw)
        assert self._markets is not None
        return self._markets

    def _tradable(self, raw: Mapping[str, Any]) -> bool:
        if raw.get("type") != self._market_type or raw.get("active") is False:
            return False
        return self._market_type not in ("swap", "future") or raw.get("linear") is True

    def _index(self, raw_markets: Mapping[str, Any]) -> None:
        markets: dict[str, Market] = {}
        by_key: dict[str, list[Market]] = {}
        for raw in raw_markets.values():
            if isinstance(raw, Mapping) and self._tradable(raw):
                market = parse_market(raw, self._exchange.precisionMode)
                markets[market.symbol] = market
                for key in {market.symbol.upper(), market.id.upper()}:
                    by_key.setdefault(key, []).append(market)
        self._markets, self._by_key = markets, by_key

    def market(self, symbol: str) -> Market:
        markets = self._markets
        text = symbol.strip() if isinstance(symbol, str) else ""
        if markets is None:
            raise InvalidOrder(f"symbol {text!r}: markets of {self._id} are not loaded yet")
        if text in markets:
            return markets[text]
        found = self._by_key.get(text.upper(), [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(sorted(m.symbol for m in found))
            raise InvalidOrder(f"symbol {text!r} is ambiguous on {self._id}: {names}")
        hint = ""
        if "/" in text and ":" not in text:
            guess = f"{text.upper()}:{text.split('/')[-1].upper()}"
            if guess in markets:
                hint = f"; did you mean {guess!r}?"
        raise InvalidOrder(
            f"symbol {text!r} is not a {self._market_type} market on {self._id}{hint}"
        )

    async def _market(self, symbol: str) -> Market:
        await self.load_markets()
        return self.market(symbol)

    def _contract_size(self, symbol: object) -> Decimal | None:
        """The contract size of one of our markets, ``None`` for any other market."""
        market = (self._markets or {}).get(symbol) if isinstance(symbol, str) else None
        return market.contract_size if market is not None else None

    def _order(self, raw: Any, market: Market, client_order_id: str | None = None) -> ExchangeOrder:
        if not isinstance(raw, Mapping):
            raise ExchangeError(f"{self._id} answered with no order structure")
        return parse_order(
            raw,
            symbol=market.symbol,
            client_order_id=client_order_id,
            contract_size=market.contract_size,
        )

    # -- rounding and minimums --------------------------------------------------------
    def _amount_text(self, market: Market, amount: Decimal) -> str:
        """The amount in contracts, rounded down to the step, as ccxt will send it."""
        contracts = amount / market.contract_size
        try:
            text = self._exchange.amount_to_precision(market.symbol, _plain(contracts))
        except Exception as exc:
            if not is_translatable(exc):
                raise
            if not rounds_to_zero(exc):
                raise self._error(exc) from None
            text = "0"  # ccxt refuses an amount that truncates to zero: say so below
        if optional_decimal(text) is None or Decimal(text) * market.contract_size <= 0:
            raise InvalidOrder(
                f"amount: {amount} rounds down to 0 at the step {market.amount_step} of "
                f"{market.symbol} (minimum {market.min_amount})"
            )
        return str(text)

    def _price_text(self, market: Market, price: Decimal, field: str) -> str:
        if price <= 0:
            raise InvalidOrder(f"{field}: must be greater than 0 (got {price})")
        try:
            return str(self._exchange.price_to_precision(market.symbol, _plain(price)))
        except Exception as exc:
            if not is_translatable(exc):
                raise
            raise self._error(exc) from None

    async def _check_minimums(
        self, market: Market, amount: Decimal, price: Decimal | None, reduce_only: bool
    ) -> None:
        if market.min_amount > 0 and amount < market.min_amount:
            raise InvalidOrder(
                f"amount: {amount} is below the minimum amount {market.min_amount} "
                f"of {market.symbol}"
            )
        # Binance and Bybit exempt reduce-only orders from the notional minimum; a
        # protective stop or a rollback for a small position must never be refused here.
        if reduce_only or market.min_cost <= 0:
            return
        if price is None:
            cached, at = self._last_price.get(market.symbol, (None, 0.0))
            fresh = cached is not None and time.monotonic() - at < _PRICE_FRESH_S
            price = cached if fresh and cached else (await self.fetch_price(market.symbol)).price
        notional = amount * price
        if notional < market.min_cost:
            raise InvalidOrder(
                f"notional: {amount} x {price} = {notional} {market.quote} is below the "
                f"minimum cost {market.min_cost} {market.quote} of {market.symbol}"
            )

    async def fetch_price(self, symbol: str) -> Tick:
        market = await self._market(symbol)
        raw = await self._read(self._exchange.fetch_ticker, market.symbol)
        raw = raw if isinstance(raw, Mapping) else {}
        price = known_price(raw.get("last")) or known_price(raw.get("close"))
        if price is None:
            raise ExchangeUnavailable(f"{self._id} gave no last price for {market.symbol}")
        self._last_price[market.symbol] = (price, time.monotonic())
        return Tick(
            symbol=market.symbol,
            price=price,
            ts=parse_timestamp(raw.get("timestamp")) or utcnow(),
            bid=known_price(raw.get("bid")),
            ask=known_price(raw.get("ask")),
            mark=known_price(raw.get("markPrice")),
        )
