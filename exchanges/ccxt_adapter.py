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

Venue specifics live in ``exchanges/ccxt_params.py``. The layers below this module:
``exchanges/ccxt_markets.py`` (calls, markets, rounding), ``exchanges/ccxt_lookup.py``
(finding orders by client id, the hand-over); clients are built in
``exchanges/ccxt_client.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from core.errors import ValidationError
from core.models import Market
from core.money import require_aware
from core.order_model import Fill, OrderStatus, OrderType
from core.venue import (
    ExchangeError,
    ExchangeOrder,
    ExchangePosition,
    InvalidOrder,
    OrderNotFound,
    OrderRequest,
)
from exchanges.ccxt_client import credentials
from exchanges.ccxt_errors import (
    is_translatable,
)
from exchanges.ccxt_lookup import CcxtLookup
from exchanges.ccxt_params import (
    ccxt_order_type,
    is_conditional,
    order_params,
)
from exchanges.ccxt_values import positive_or_zero
from exchanges.response import parse_fill, parse_position

if TYPE_CHECKING:
    from config.settings import Settings

log = structlog.get_logger(__name__)


_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_MAX_BACKOFF_S = 8.0
_PRICE_FRESH_S = 30.0  # a last price this recent may size a market order's notional


class CcxtAdapter(CcxtLookup):
    """An exchange reached through ``ccxt.async_support.<exchange_id>``.

    ``exchange`` takes a pre-built ccxt instance (tests build one with markets given and
    ``fetch`` replaced). Credentials are plain strings taken out of ``SecretStr`` by the
    caller; the adapter hands them to ccxt and to the error scrubber, nowhere else.
    """

    @classmethod
    def from_settings(cls, settings: Settings) -> CcxtAdapter:
        """The adapter for ``TRADER_EXCHANGE`` with the configured credentials."""
        return cls(settings.exchange, **credentials(settings))

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
