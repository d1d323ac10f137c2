"""The order manager: validation before anything is armed or sent, execution of fired
emulated orders through the paper venue, and a loop that never stalls or dies."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.errors import ValidationError
from core.money import utcnow
from core.order_model import OrderStatus, OrderType
from core.order_requests import parse_order_request
from core.records import RecordKind
from exchanges.paper import PaperExchange
from tests.trading_harness import BTC, ETH, build_stack, long_signal

BASE = {"symbol": BTC, "side": "sell", "amount": "0.01"}


def spec(**fields: Any) -> Any:
    return parse_order_request({**BASE, **fields})


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "limit", "amount": "-1", "price": "1"}, "amount"),
        ({"type": "limit", "amount": "NaN", "price": "1"}, "amount"),
        ({"type": "limit"}, "price"),
        ({"type": "limit", "price": "0"}, "price"),
        ({"type": "stop_market"}, "trigger_price"),
        ({"type": "take_profit_market", "trigger_price": "-5"}, "trigger_price"),
        ({"type": "stop_limit", "trigger_price": "49000", "price": "49500"}, "price"),
        (
            {"type": "stop_limit", "side": "buy", "trigger_price": "51000", "price": "50500"},
            "price",
        ),
        ({"type": "trailing_stop"}, "trail_percent"),
        ({"type": "trailing_stop", "trail_percent": "100"}, "trail_percent"),
        ({"type": "trailing_stop", "trail_percent": "1", "trail_amount": "5"}, "trail_percent"),
        ({"type": "trailing_stop", "trail_amount": "0"}, "trail_amount"),
        ({"type": "limit", "price": "1", "trail_percent": "1"}, "trail_percent"),
        ({"type": "market"}, "type"),
        ({"type": "iceberg"}, "type"),
        ({"type": "limit", "price": "1", "side": "up"}, "side"),
        ({"type": "limit", "price": "1", "expires_in": "soon"}, "expires_in"),
        ({"type": "limit", "price": "1", "expires_at": "2000-01-01T00:00:00+00:00"}, "expires_at"),
        ({"type": "limit", "price": "1", "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"type": "trailing_stop", "trail_percent": "1", "native": True}, "native"),
        ({"type": "limit", "price": "1", "reduce_only": "yes"}, "reduce_only"),
        (
            {"type": "limit", "price": "1", "symbol": "'; DROP TABLE monitoring.orders; --" * 3},
            "symbol",
        ),
    ],
)
def test_field_rules_reject_naming_the_field(fields: dict[str, Any], field: str) -> None:
    """Each per-field rule rejects the request with an error naming the field."""
    with pytest.raises(ValidationError) as err:
        spec(**fields)
    assert field == err.value.field


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"type": "limit", "price": "50000", "amount": "0.0001"}, "amount", "minimum"),
        ({"type": "limit", "price": "1", "amount": "0.001"}, "amount", "notional"),
        ({"type": "stop_market", "trigger_price": "50500"}, "trigger_price", "below"),
        (
            {"type": "stop_market", "side": "buy", "trigger_price": "49000"},
            "trigger_price",
            "above",
        ),
        ({"type": "take_profit_market", "trigger_price": "49000"}, "trigger_price", "above"),
        (
            {"type": "trailing_stop", "trail_percent": "1", "activation_price": "49000"},
            "activation_price",
            "above",
        ),
        (
            {"type": "limit", "price": "50000", "reduce_only": True},
            "reduce_only",
            "no open position",
        ),
        ({"type": "limit", "side": "buy", "price": "50000", "amount": "50"}, "amount", "margin"),
        ({"type": "limit", "price": "50000", "symbol": "NOPE/USDT:USDT"}, "symbol", "not a market"),
    ],
)
async def test_market_rules_reject_and_nothing_is_armed_or_sent(
    fields: dict[str, Any], field: str, needle: str
) -> None:
    """Rules needing market data reject naming the field; the book and venue stay empty."""
    stack = build_stack()
    with pytest.raises(ValidationError) as err:
        await stack.orders.place_order(spec(**fields))
    assert field == err.value.field
    assert needle in err.value.rule
    assert 0 == len(stack.triggers)
    assert [] == list(await stack.venue.fetch_open_orders())
    assert [] == stack.rows(RecordKind.ORDER)


async def test_reduce_only_is_accepted_against_an_open_position() -> None:
    """A reduce-only sell is armed when a long is open on the market."""
    stack = build_stack()
    await stack.apm.open_position_atomic(long_signal())
    order = await stack.orders.place_order(
        spec(type="take_profit_market", trigger_price="55000", reduce_only=True)
    )
    assert OrderStatus.PENDING == order.status
    assert order.client_order_id in stack.triggers


async def test_fired_stop_executes_to_filled_with_audit_rows() -> None:
    """An emulated sell stop fires on the tick through it and ends FILLED, with the order
    history PENDING → TRIGGERED → SUBMITTED → FILLED and one trade recorded."""
    stack = build_stack()
    order = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    stack.tick(BTC, "49850")
    await stack.tasks.drain(5)
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FILLED == final.status
    events = [
        (e["previous_status"], e["new_status"])
        for e in stack.rows(RecordKind.ORDER_EVENT)
        if e["client_order_id"] == order.client_order_id and e["kind"] != "fill"
    ]
    assert [
        (None, "PENDING"),
        ("PENDING", "TRIGGERED"),
        ("TRIGGERED", "SUBMITTED"),
        ("SUBMITTED", "FILLED"),
    ] == events
    trades = [
        t for t in stack.rows(RecordKind.TRADE) if t["client_order_id"] == order.client_order_id
    ]
    assert 1 == len(trades)
    assert trades[0]["price"] < Decimal("49850")  # a market sell at the tick, with slippage
    assert len(stack.orders.latencies_us) == 1


async def test_fired_limit_is_sent_as_a_limit_at_its_price() -> None:
    """An emulated buy limit fires at p <= limit and fills no worse than the limit."""
    stack = build_stack()
    order = await stack.orders.place_order(spec(type="limit", side="buy", price="49000"))
    stack.tick(BTC, "48990")
    await stack.tasks.drain(5)
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FILLED == final.status
    assert final.average_price is not None and final.average_price <= Decimal("49000")


async def test_exchange_rejection_ends_rejected_and_the_loop_keeps_evaluating() -> None:
    """A venue rejection marks the fired order REJECTED with the reason; a later order on
    the next tick still fires and fills."""
    stack = build_stack({"reject_entry": 1})
    first = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    stack.tick(BTC, "49800")
    await stack.tasks.drain(5)
    failed = stack.orders.get_order(first.client_order_id)
    assert failed is not None and OrderStatus.REJECTED == failed.status
    assert failed.error_message
    stack.venue.faults = {}
    second = await stack.orders.place_order(spec(type="stop_market", trigger_price="49700"))
    stack.tick(BTC, "49600")
    await stack.tasks.drain(5)
    done = stack.orders.get_order(second.client_order_id)
    assert done is not None and OrderStatus.FILLED == done.status


async def test_expired_order_is_recorded_expired_and_never_fires() -> None:
    """An order past expires_at is EXPIRED on the next tick, even one crossing its price."""
    stack = build_stack()
    order = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    live = stack.orders.get_order(order.client_order_id)
    assert live is not None
    stack.triggers.remove(order.client_order_id)
    soon = dataclasses.replace(live, expires_at=utcnow() + timedelta(milliseconds=1))
    stack.orders.rearm([soon])
    await asyncio.sleep(0.01)
    stack.tick(BTC, "49000")
    await stack.tasks.drain(5)
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.EXPIRED == final.status
    assert [] == list(await stack.venue.fetch_fills(BTC))


async def test_native_limit_rests_on_the_venue_and_is_tracked() -> None:
    """A native limit is placed on the venue (not armed) and its fill is picked up by sync."""
    stack = build_stack()
    order = await stack.orders.place_order(
        spec(type="limit", side="buy", price="49500", native=True)
    )
    assert OrderStatus.NEW == order.status
    assert 0 == len(stack.triggers)
    stack.tick(BTC, "49400")
    await stack.orders.sync_native()
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FILLED == final.status


async def test_cancel_removes_an_armed_order() -> None:
    """Cancelling an armed order disarms it; the price crossing later fires nothing."""
    stack = build_stack()
    order = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    cancelled = await stack.orders.cancel_order(order.client_order_id)
    assert OrderStatus.CANCELLED == cancelled.status
    stack.tick(BTC, "49000")
    await stack.tasks.drain(5)
    assert [] == list(await stack.venue.fetch_fills(BTC))
    assert [] == stack.orders.active_orders()
    assert [cancelled] == stack.orders.order_history()


class SlowOn:
    """The paper venue with create_order on one symbol made slow."""

    def __init__(self, venue: PaperExchange, symbol: str, delay_s: float) -> None:
        self._venue, self._symbol, self._delay = venue, symbol, delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venue, name)

    async def create_order(self, request: Any) -> Any:
        if request.symbol == self._symbol:
            await asyncio.sleep(self._delay)
        return await self._venue.create_order(request)


async def test_a_slow_venue_call_does_not_delay_other_symbols() -> None:
    """While an execution on BTC waits 1 s on the venue, an ETH order fires and fills."""
    stack = build_stack(wrap=lambda venue: SlowOn(venue, BTC, 1.0))
    btc = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    eth = await stack.orders.place_order(
        spec(symbol=ETH, amount="0.1", type="stop_market", trigger_price="2990")
    )
    stack.tick(BTC, "49800")
    stack.tick(ETH, "2980")
    await asyncio.sleep(0.1)
    eth_now = stack.orders.get_order(eth.client_order_id)
    btc_now = stack.orders.get_order(btc.client_order_id)
    assert eth_now is not None and OrderStatus.FILLED == eth_now.status
    assert btc_now is not None and OrderStatus.SUBMITTED == btc_now.status
    await stack.tasks.drain(5)


def test_active_orders_filter_by_symbol_and_type() -> None:
    """active_orders filters by symbol and by type."""

    async def scenario() -> None:
        stack = build_stack()
        await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
        await stack.orders.place_order(spec(type="limit", price="51000"))
        await stack.orders.place_order(spec(symbol=ETH, amount="0.1", type="limit", price="3100"))
        assert 2 == len(stack.orders.active_orders(symbol=BTC))
        assert 1 == len(stack.orders.active_orders(type=OrderType.STOP_MARKET))

    asyncio.run(scenario())


async def test_a_failing_venue_hook_does_not_stop_the_tick_loop() -> None:
    """A venue that cannot take a price (its store failed) does not stop triggers firing."""
    from core.venue import ExchangeUnavailable

    stack = build_stack()
    order = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))

    def broken(_tick: Any) -> None:
        raise ExchangeUnavailable("paper: journal write failed")

    stack.loop._hooks = (broken, *stack.loop._hooks)
    stack.tick(BTC, "49800")
    await stack.tasks.drain(5)
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FILLED == final.status
