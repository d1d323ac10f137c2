"""One :class:`~core.venue.ExchangeAdapter` over ccxt's async exchanges.

The adapter owns the boundary rules so the core never meets ccxt:

- Markets are filtered to the account's type (linear perpetual swaps by default) and a
  symbol resolves only among them: a bare ``BTCUSDT`` is the perpetual, never spot
  (failure mode 13).
- Orders are rounded with ccxt's own ``amount_to_precision`` (down to the step) and
  ``price_to_precision`` (to the tick) and refused *before* sending when under the
  minimum amount or notional (failure mode 16). Every order carries its client id.
- A submit is never retried blindly. When its outcome is unknown (timeout, network, bad
  reply, or a venue error nobody classified, such as Bybit's 10016 "Server error") or it
  is refused as a duplicate client id, the order is looked up by client id with a short,
  bounded back-off: found, it is returned. Answered "not found", a timeout or outage
  raises its transient error (the caller keeps asking) and an unclassified venue error
  becomes the final ``OrderRejected``; a look-up that itself keeps failing leaves the
  outcome unknown, so a transient error is raised, never a final one (failure mode 14).
- A Binance conditional (algo) order that triggered hands over to a regular order
  (``actualOrderId``); its status, fill and average are read from that order, never
  guessed from the algo order's ``FINISHED`` (which ccxt reports as closed, filled 0).
- Reads are retried with back-off on rate limits and outages (bounded); writes are not.
- Every ccxt exception passes through :func:`~exchanges.ccxt_errors.translate_ccxt_error`.
- Quantities are base units in and out (see ``exchanges/response.py``).

Venue specifics live in ``exchanges/ccxt_params.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ccxt.async_support as ccxt_async
import structlog

from config.logging import register_secrets
from core.errors import ValidationError
from core.models import Fill, Market, OrderStatus, OrderType, Tick
from core.money import optional_decimal, require_aware, utcnow
from core.resource import AsyncResource
from core.venue import (
    ExchangeError,
    ExchangeOrder,
    ExchangePosition,
    ExchangeUnavailable,
    InvalidOrder,
    OrderNotFound,
    OrderRequest,
    TransientExchangeError,
)
from exchanges.ccxt_errors import (
    is_duplicate_id,
    is_translatable,
    is_unsupported,
    rounds_to_zero,
    submit_outcome_unknown,
    translate_ccxt_error,
)
from exchanges.ccxt_params import (
    VenueProfile,
    ccxt_order_type,
    is_conditional,
    order_params,
    profile_for,
)
from exchanges.response import (
    handover_order_id,
    is_handed_over,
    known_price,
    merge_handover,
    parse_fill,
    parse_market,
    parse_order,
    parse_position,
    parse_timestamp,
    positive_or_zero,
)

if TYPE_CHECKING:
    from config.settings import Settings

log = structlog.get_logger(__name__)

_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_MAX_BACKOFF_S = 8.0
_PRICE_FRESH_S = 30.0  # a last price this recent may size a market order's notional


def _plain(value: Decimal) -> str:
    """Decimal as positional text (ccxt's precision code does not read ``1E-7``)."""
    return format(value, "f")


def ccxt_client(
    module: Any, exchange_id: str, *, api_key: str = "", secret: str = "", password: str = ""
) -> Any:
    """A rate-limited instance of ``exchange_id`` from ``module`` (``ccxt.async_support``
    for the adapter, ``ccxt.pro`` for a price watcher) with the venue's options."""
    klass = getattr(module, exchange_id, None)
    if klass is None or exchange_id not in module.exchanges:
        raise ValidationError("TRADER_EXCHANGE", "is not a ccxt exchange id", exchange_id)
    options = dict(profile_for(exchange_id).options)
    config: dict[str, Any] = {"enableRateLimit": True, "options": options}
    for key, value in (("apiKey", api_key), ("secret", secret), ("password", password)):
        if value:
            config[key] = value
    return klass(config)


def _enable_sandbox(exchange: Any, exchange_id: str, secrets: Sequence[str]) -> None:
    """Point ``exchange`` at the venue's testnet; a venue without one is a settings error."""
    urls = getattr(exchange, "urls", None)
    if isinstance(urls, Mapping) and not urls.get("test"):
        # ccxt 4.5 describes most venues with ``"test": None``, on which set_sandbox_mode
        # fails with a TypeError rather than NotSupported.
        raise ValidationError("TRADER_TESTNET", f"{exchange_id} has no testnet")
    try:
        exchange.set_sandbox_mode(True)
    except Exception as exc:
        if not is_translatable(exc):
            raise
        if is_unsupported(exc):
            raise ValidationError("TRADER_TESTNET", f"{exchange_id} has no testnet") from None
        raise translate_ccxt_error(exc, secrets=secrets) from None


def price_watcher(
    exchange_id: str,
    *,
    api_key: str = "",
    secret: str = "",
    password: str = "",
    testnet: bool = False,
) -> Any | None:
    """A ccxt pro instance of ``exchange_id`` for ``watch_ticker`` (same credentials,
    options and testnet as the adapter), or ``None`` when ccxt pro has no such exchange.

    The caller owns it and must ``await close()`` it (the exchange feed does).
    """
    import ccxt.pro as ccxt_pro  # websockets only where an exchange feed is built

    if exchange_id not in ccxt_pro.exchanges:
        return None
    client = ccxt_client(ccxt_pro, exchange_id, api_key=api_key, secret=secret, password=password)
    if testnet:
        _enable_sandbox(client, exchange_id, tuple(s for s in (api_key, secret, password) if s))
    return client


def price_watcher_from_settings(settings: Settings) -> Any | None:
    """:func:`price_watcher` for ``TRADER_EXCHANGE`` (``None`` for the paper venue)."""
    if settings.is_paper:
        return None
    return price_watcher(
        settings.exchange,
        api_key=settings.api_key.get_secret_value(),
        secret=settings.api_secret.get_secret_value(),
        password=settings.api_password.get_secret_value(),
        testnet=settings.testnet,
    )


class CcxtAdapter(AsyncResource):
    """An exchange reached through ``ccxt.async_support.<exchange_id>``.

    ``exchange`` takes a pre-built ccxt instance (tests build one with markets given and
    ``fetch`` replaced). Credentials are plain strings taken out of ``SecretStr`` by the
    caller; the adapter hands them to ccxt and to the error scrubber, nowhere else.
    """

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

    @classmethod
    def from_settings(cls, settings: Settings) -> CcxtAdapter:
        """The adapter for ``TRADER_EXCHANGE`` with the configured credentials."""
        return cls(
            settings.exchange,
            api_key=settings.api_key.get_secret_value(),
            secret=settings.api_secret.get_secret_value(),
            password=settings.api_password.get_secret_value(),
            testnet=settings.testnet,
        )

    def __repr__(self) -> str:
        return f"CcxtAdapter({self._id!r}, market_type={self._market_type!r})"

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

    # -- orders ------------------------------------------------------------------------
    async def create_order(self, request: OrderRequest) -> ExchangeOrder:
        market = await self._market(request.symbol)
        if request.type is OrderType.TRAILING_STOP:
            raise InvalidOrder("type: TRAILING_STOP is emulated in-process, not sent natively")
        amount_text = self._amount_text(market, request.amount)
        amount = Decimal(amount_text) * market.contract_size
        price_text = trigger_text = None
        if request.type in _PRICED:
            if request.price is None:
                raise InvalidOrder(f"price: a {request.type} order needs a price")
            price_text = self._price_text(market, request.price, "price")
        conditional = is_conditional(request.type)
        if conditional:
            if request.trigger_price is None:
                raise InvalidOrder(f"trigger_price: a {request.type} order needs one")
            trigger_text = self._price_text(market, request.trigger_price, "trigger_price")
        reference = price_text or trigger_text
        await self._check_minimums(
            market,
            amount,
            Decimal(reference) if reference else None,
            request.reduce_only,
        )
        params = order_params(
            self._profile,
            order_type=request.type,
            side=request.side,
            client_order_id=request.client_order_id,
            trigger_price=trigger_text,
            reduce_only=request.reduce_only,
            time_in_force=request.time_in_force,
        )
        args = (market.symbol, ccxt_order_type(request.type), request.side.value, amount_text)
        failure: BaseException
        try:
            raw = await self._exchange.create_order(*args, price_text, params)
        except Exception as exc:
            if not is_translatable(exc):
                raise
            failure = exc
        else:
            return self._order(raw, market, request.client_order_id)
        outcome = await self._resolve_submit(failure, market, request.client_order_id, conditional)
        if isinstance(outcome, ExchangeOrder):
            return outcome
        raise outcome from None

    async def _resolve_submit(
        self, exc: BaseException, market: Market, client_order_id: str, conditional: bool
    ) -> ExchangeOrder | ExchangeError:
        """The order a failed submit placed after all (found by client id), or the error
        it ends in. Only a look-up that answered "not found" may turn an unknown outcome
        into a final error (failure mode 14)."""
        error = self._error(exc, submitting=True)
        if not (submit_outcome_unknown(exc) or self._is_duplicate_id(exc)):
            return error
        found, absent = await self._find_submitted(market, client_order_id, conditional)
        if found is not None:
            return found
        tries = self._lookup_attempts
        if absent:
            # The venue says it has no such order: a timeout stays transient (the caller
            # keeps asking), an unclassified error or a duplicate id is final.
            note = f"order {client_order_id} not found by client id after {tries} look-ups"
            return type(error)(f"{error} ({note})")
        note = f"order {client_order_id} could not be looked up in {tries} tries; outcome unknown"
        klass = type(error) if isinstance(error, TransientExchangeError) else ExchangeUnavailable
        return klass(f"{error} ({note})")

    def _is_duplicate_id(self, exc: BaseException) -> bool:
        """The venue refused the client id as already used: the order may be ours, placed
        by an earlier attempt, so it is looked up rather than failed."""
        return is_duplicate_id(exc, self._profile.duplicate_id_codes)

    async def _find_submitted(
        self, market: Market, client_order_id: str, conditional: bool
    ) -> tuple[ExchangeOrder | None, bool]:
        """Look a submit whose outcome is unknown up by client id, a bounded few times.

        Returns the order when found, else ``(None, absent)``: ``absent`` is True when the
        last look-up answered "not found", False when it failed (the outcome is unknown).
        """
        log.warning("order_submit_unconfirmed", exchange=self._id, client_order_id=client_order_id)
        absent = False
        for attempt in range(self._lookup_attempts):
            await self._sleep(self._backoff(attempt))
            try:
                order = await self._fetch_one(
                    market, None, client_order_id, conditional, retry=False
                )
            except ExchangeError as exc:
                # Whatever the look-up hit, only "not found" is an answer; anything else
                # leaves the submit's outcome unknown (failure mode 14).
                absent = isinstance(exc, OrderNotFound)
                log.info(
                    "order_lookup_failed",
                    exchange=self._id,
                    client_order_id=client_order_id,
                    attempt=attempt + 1,
                    error=str(exc),
                )
                continue
            log.info("order_submit_confirmed", exchange=self._id, client_order_id=client_order_id)
            return order, True
        return None, absent

    async def _fetch_one(
        self,
        market: Market,
        exchange_order_id: str | None,
        client_order_id: str | None,
        conditional: bool,
        *,
        retry: bool = True,
    ) -> ExchangeOrder:
        if not exchange_order_id and not client_order_id:
            raise InvalidOrder("order: give an exchange order id or a client order id")
        call = self._read if retry else self._write
        if self._profile.family == "bybit":
            # Asked by id, /v5/order/realtime answers for recent orders in any status;
            # older ones are only in /v5/order/history.
            key, value = (
                ("orderId", exchange_order_id)
                if exchange_order_id
                else (self._profile.client_id_param, client_order_id)
            )
            rows = await call(
                self._exchange.fetch_open_orders, market.symbol, None, None, {key: value}
            )
            if not rows:
                rows = await call(
                    self._exchange.fetch_canceled_and_closed_orders,
                    market.symbol,
                    None,
                    None,
                    {key: value},
                )
            if not rows:
                raise OrderNotFound(f"{self._id} has no order {value!r} on {market.symbol}")
            raw = rows[0]
        else:
            params: dict[str, Any] = dict(self._profile.conditional_flag) if conditional else {}
            if client_order_id and not exchange_order_id:
                params[self._profile.client_id_param] = client_order_id
            raw = await call(self._exchange.fetch_order, exchange_order_id, market.symbol, params)
        order = self._order(raw, market, client_order_id)
        if order.exchange_order_id is None and exchange_order_id:
            order = dataclasses.replace(order, exchange_order_id=exchange_order_id)
        if is_handed_over(raw):
            order = await self._follow_handover(market, order, raw, call)
        return order

    async def _follow_handover(
        self,
        market: Market,
        algo: ExchangeOrder,
        raw: Mapping[str, Any],
        call: Callable[..., Awaitable[Any]],
    ) -> ExchangeOrder:
        """A Binance algo order that triggered, completed by the regular order it became
        (``GET /fapi/v1/order`` by ``actualOrderId``). Where that order cannot be read, the
        status stays unknown (``None``): a FINISHED algo order may have filled."""
        actual_id = handover_order_id(raw)
        if actual_id is None:
            log.warning(
                "algo_order_without_actual_order",
                exchange=self._id,
                order_id=algo.exchange_order_id,
                client_order_id=algo.client_order_id,
            )
            return algo
        try:
            actual_raw = await call(self._exchange.fetch_order, actual_id, market.symbol, {})
        except OrderNotFound as exc:
            log.warning(
                "algo_actual_order_not_found",
                exchange=self._id,
                order_id=algo.exchange_order_id,
                actual_order_id=actual_id,
                error=str(exc),
            )
            return algo
        if algo.exchange_order_id:
            self._handover[algo.exchange_order_id] = actual_id
        return merge_handover(algo, self._order(actual_raw, market))

    async def fetch_order(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
        conditional: bool = False,
    ) -> ExchangeOrder:
        market = await self._market(symbol)
        return await self._fetch_one(market, exchange_order_id, client_order_id, conditional)

    async def cancel_order(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
        conditional: bool = False,
    ) -> ExchangeOrder:
        market = await self._market(symbol)
        if not exchange_order_id and not client_order_id:
            raise InvalidOrder("order: give an exchange order id or a client order id")
        params: dict[str, Any] = dict(self._profile.conditional_flag) if conditional else {}
        if client_order_id and not exchange_order_id:
            params[self._profile.client_id_param] = client_order_id
        raw = await self._write(
            self._exchange.cancel_order, exchange_order_id, market.symbol, params
        )
        order = self._order(raw, market, client_order_id)
        # A cancel that returned without an error cancelled the order, even when the
        # venue only echoed the ids (Bybit) or "success" (Binance algo orders).
        return dataclasses.replace(
            order,
            exchange_order_id=order.exchange_order_id or exchange_order_id,
            status=order.status or OrderStatus.CANCELLED,
        )

    async def edit_order(
        self,
        symbol: str,
        exchange_order_id: str,
        *,
        amount: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        conditional: bool | None = None,
    ) -> ExchangeOrder:
        """Amend in place. ``conditional`` says where the venue keeps the order (Binance
        lists stops apart); left ``None``, a new ``trigger_price`` marks a conditional
        order, and an order the regular list does not know is looked for among the
        conditional ones."""
        market = await self._market(symbol)
        current = await self._current(market, exchange_order_id, conditional, trigger_price)
        if current.type is None or current.side is None or current.amount is None:
            raise InvalidOrder(f"order {exchange_order_id}: {self._id} did not say what it is")
        if is_conditional(current.type) and not self._profile.amendable_conditional:
            raise InvalidOrder(
                f"order {exchange_order_id}: {self._id} cannot amend a conditional order; "
                "place the new one, then cancel the old"
            )
        amount_text = self._amount_text(market, amount if amount is not None else current.amount)
        if amount is not None:
            new_amount = Decimal(amount_text) * market.contract_size
            await self._check_minimums(
                market, new_amount, price or current.price, bool(current.reduce_only)
            )
        new_price = price if price is not None else current.price
        price_text = None
        if current.type in _PRICED and new_price is not None:
            price_text = self._price_text(market, new_price, "price")
        params: dict[str, Any] = {}
        if trigger_price is not None:
            params["triggerPrice"] = self._price_text(market, trigger_price, "trigger_price")
        raw = await self._write(
            self._exchange.edit_order,
            exchange_order_id,
            market.symbol,
            ccxt_order_type(current.type),
            current.side.value,
            amount_text,
            price_text,
            params,
        )
        order = self._order(raw, market, current.client_order_id)
        return dataclasses.replace(
            order, exchange_order_id=order.exchange_order_id or exchange_order_id
        )

    async def _current(
        self,
        market: Market,
        exchange_order_id: str,
        conditional: bool | None,
        trigger_price: Decimal | None,
    ) -> ExchangeOrder:
        """The order an amend starts from, fetched where the venue keeps it."""
        if conditional is not None:
            return await self._fetch_one(market, exchange_order_id, None, conditional)
        if trigger_price is not None:
            return await self._fetch_one(market, exchange_order_id, None, True)
        try:
            return await self._fetch_one(market, exchange_order_id, None, False)
        except OrderNotFound:
            if not self._profile.conditional_listed_apart:
                raise
            return await self._fetch_one(market, exchange_order_id, None, True)

    async def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]:
        await self.load_markets()
        ccxt_symbol = self.market(symbol).symbol if symbol else None
        rows = list(await self._read(self._exchange.fetch_open_orders, ccxt_symbol, None, None, {}))
        if self._profile.conditional_listed_apart:
            flag = dict(self._profile.conditional_flag)
            rows += await self._read(
                self._exchange.fetch_open_orders, ccxt_symbol, None, None, flag
            )
        orders: dict[str, ExchangeOrder] = {}
        for raw in rows:
            symbol_of = raw.get("symbol") if isinstance(raw, Mapping) else None
            if self._contract_size(symbol_of) is None:
                continue  # another market type: not ours to manage
            order = self._order(raw, self.market(str(symbol_of)))
            orders[order.exchange_order_id or order.client_order_id or str(id(raw))] = order
        return list(orders.values())

    # -- positions, fills, prices -----------------------------------------------------
    async def fetch_positions(
        self, symbols: Sequence[str] | None = None
    ) -> Sequence[ExchangePosition]:
        await self.load_markets()
        wanted = [self.market(s).symbol for s in symbols] if symbols else None
        rows = await self._read(self._exchange.fetch_positions, wanted, {})
        positions = []
        for raw in rows or ():
            if not isinstance(raw, Mapping):
                continue
            size = self._contract_size(raw.get("symbol"))
            if size is None or (wanted and raw.get("symbol") not in wanted):
                continue
            position = parse_position(raw, contract_size=size)
            if position is not None:
                positions.append(position)
        return positions

    async def fetch_fills(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        since: datetime | None = None,
    ) -> Sequence[Fill]:
        market = await self._market(symbol)
        if exchange_order_id:
            # A triggered Binance algo order executed as the regular order it became.
            exchange_order_id = self._handover.get(exchange_order_id, exchange_order_id)
        params: dict[str, Any] = {}
        if exchange_order_id and self._profile.trades_order_param:
            params[self._profile.trades_order_param] = exchange_order_id
        since_ms = int(require_aware(since, "since").timestamp() * 1000) if since else None
        rows = await self._read(
            self._exchange.fetch_my_trades, market.symbol, since_ms, None, params
        )
        fills = []
        for raw in rows or ():
            if exchange_order_id and str(raw.get("order")) != exchange_order_id:
                continue
            try:
                fills.append(
                    parse_fill(raw, symbol=market.symbol, contract_size=market.contract_size)
                )
            except ValidationError as exc:
                # Dropping a fill would lose money silently: refuse the whole answer.
                raise ExchangeError(f"{self._id} reported an unusable fill: {exc}") from None
        return fills

    async def fetch_free_balance(self, currency: str) -> Decimal:
        """Free balance of ``currency`` in the account trading our markets (0 if none)."""
        raw = await self._read(self._exchange.fetch_balance, {})
        free = raw.get("free") if isinstance(raw, Mapping) else None
        value = free.get(currency.upper()) if isinstance(free, Mapping) else None
        return positive_or_zero(value)

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
