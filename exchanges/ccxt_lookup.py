"""Finding out what became of an order: by client id after a submit whose outcome is
unknown (failure mode 14), and following a Binance conditional (algo) order that
triggered to the regular order it handed over to (``actualOrderId``).

A submit is never retried blindly: found, the order is returned; answered "not found",
a timeout or outage raises its transient error (the caller keeps asking) and an
unclassified venue error becomes the final ``OrderRejected``; a look-up that itself
keeps failing leaves the outcome unknown, so a transient error is raised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from core.models import Market
from core.order_model import OrderType
from core.venue import (
    ExchangeError,
    ExchangeOrder,
    ExchangeUnavailable,
    InvalidOrder,
    OrderNotFound,
    TransientExchangeError,
)
from exchanges.ccxt_errors import (
    is_duplicate_id,
    submit_outcome_unknown,
)
from exchanges.ccxt_markets import CcxtMarkets
from exchanges.response_status import handover_order_id, is_handed_over, merge_handover

if TYPE_CHECKING:
    pass

log = structlog.get_logger(__name__)


_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_MAX_BACKOFF_S = 8.0
_PRICE_FRESH_S = 30.0  # a last price this recent may size a market order's notional


class CcxtLookup(CcxtMarkets):
    """Order look-ups by client id and across the Binance hand-over."""

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
