"""The order manager against the venue over time: the periodic sync racing an execution,
orders that never reached the venue, good-till-date without ticks, prices on the tick
grid, and the execution of each emulated type as the right venue order."""

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
from core.venue import ExchangeError
from exchanges.paper import PaperExchange
from tests.trading_harness import BTC, build_stack, long_signal

BASE = {"symbol": BTC, "side": "sell", "amount": "0.01"}


def spec(**fields: Any) -> Any:
    return parse_order_request({**BASE, **fields})


class Recording:
    """The paper venue, remembering every create request and failing on demand."""

    def __init__(self, venue: PaperExchange) -> None:
        self._venue = venue
        self.requests: list[Any] = []
        self.fail_with: ExchangeError | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venue, name)

    async def create_order(self, request: Any) -> Any:
        self.requests.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        return await self._venue.create_order(request)


async def test_sync_during_an_execution_does_not_apply_its_fill_twice() -> None:
    """A sync pass while a fired reduce-only stop is being sent (id-only replies, 20 ms
    latency) leaves the position, the venue and the trail in agreement: half closed once,
    one trade row, the protective stop resized to what is still held."""
    stack = build_stack()
    await stack.apm.open_position_atomic(long_signal("0.1"))
    live = next(iter(stack.book))
    stack.venue.faults = {"id_only_reply": 1, "latency_ms": 20}
    order = await stack.orders.place_order(
        spec(
            type="stop_market",
            trigger_price="49900",
            amount="0.05",
            reduce_only=True,
            position_id=live.id,
        )
    )
    running = True

    async def syncer() -> None:
        while running:
            await stack.orders.sync_native()
            await asyncio.sleep(0.005)

    task = asyncio.create_task(syncer())
    stack.tick(BTC, "49800")
    await asyncio.sleep(0.5)
    await stack.tasks.drain(5)
    running = False
    await task
    held = await stack.venue_position()
    assert held is not None and Decimal("0.050") == held.qty
    assert Decimal("0.050") == live.position.quantity
    trades = [
        r for r in stack.rows(RecordKind.TRADE) if r["client_order_id"] == order.client_order_id
    ]
    assert 1 == len(trades)
    assert [Decimal("0.050")] == [s.amount for s in await stack.venue_stops()]


async def test_order_fired_but_never_sent_is_failed_by_sync() -> None:
    """An order restored as TRIGGERED (the daemon died between trigger and send) that the
    venue does not know ends FAILED with a reason, instead of staying live forever."""
    stack = build_stack()
    order = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    stack.triggers.remove(order.client_order_id)
    stack.orders.track(order.with_status(OrderStatus.TRIGGERED))
    await stack.orders.sync_native()
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FAILED == final.status
    assert "never" in (final.error_message or "") or "not sent" in (final.error_message or "")
    assert [] == stack.orders.active_orders()


async def test_submitted_order_unseen_by_the_venue_fails_only_after_the_grace() -> None:
    """A SUBMITTED order the venue does not list stays live for the grace period (the venue
    may be slow to show it), then ends FAILED."""
    stack = build_stack()
    order = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    stack.triggers.remove(order.client_order_id)
    submitted = order.with_status(OrderStatus.TRIGGERED).with_status(OrderStatus.SUBMITTED)
    stack.orders.track(submitted)
    await stack.orders.sync_native()
    still = stack.orders.get_order(order.client_order_id)
    assert still is not None and OrderStatus.SUBMITTED == still.status
    await stack.orders.sync_native(now=utcnow() + timedelta(minutes=5))
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FAILED == final.status


async def test_emulated_order_expires_without_any_tick() -> None:
    """An armed order past expires_at is EXPIRED by the sync loop even when its symbol
    gets no ticks, and is gone from the trigger book."""
    stack = build_stack()
    order = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    live = stack.orders.get_order(order.client_order_id)
    assert live is not None
    stack.triggers.remove(order.client_order_id)
    stack.orders.rearm([dataclasses.replace(live, expires_at=utcnow() + timedelta(seconds=1))])
    await stack.orders.sync_native(now=utcnow() + timedelta(seconds=2))
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.EXPIRED == final.status
    assert order.client_order_id not in stack.triggers


async def test_native_order_is_cancelled_at_its_expiry() -> None:
    """A native limit with an expiry is cancelled on the venue once it is due."""
    stack = build_stack()
    order = await stack.orders.place_order(
        spec(type="limit", side="buy", price="49000", native=True, expires_in="30m")
    )
    assert OrderStatus.NEW == order.status
    await stack.orders.sync_native(now=utcnow() + timedelta(minutes=31))
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.CANCELLED == final.status
    assert [] == list(await stack.venue.fetch_open_orders())


async def test_off_grid_prices_are_put_on_the_tick_in_the_traders_favour() -> None:
    """A sell limit at 50000.04 on a 0.1 tick rests at 50000.1 (never a worse price), a buy
    limit at 49000.06 at 49000.0, and a stop trigger at 49900.06 goes to 49900.1."""
    stack = build_stack()
    sell = await stack.orders.place_order(spec(type="limit", price="50000.04"))
    buy = await stack.orders.place_order(spec(type="limit", side="buy", price="49000.06"))
    stop = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900.06"))
    assert Decimal("50000.1") == sell.price
    assert Decimal("49000.0") == buy.price
    assert Decimal("49900.1") == stop.trigger_price


async def test_price_that_rounds_to_zero_is_refused_naming_the_field() -> None:
    """A buy limit below one tick would be sent at 0: refused, naming ``price``."""
    stack = build_stack()
    with pytest.raises(ValidationError) as err:
        await stack.orders.place_order(spec(type="limit", side="buy", price="0.04"))
    assert "price" == err.value.field
    assert 0 == len(stack.triggers)


async def test_trailing_stop_without_activation_trails_from_placement() -> None:
    """A sell trailing stop of 1 % placed at 50000 fires on a fall to 49400 with no tick in
    between: the placement price is its first peak."""
    stack = build_stack()
    order = await stack.orders.place_order(spec(type="trailing_stop", trail_percent="1"))
    stack.tick(BTC, "49400")
    await stack.tasks.drain(5)
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FILLED == final.status


async def test_fired_stop_limit_is_sent_as_a_limit_at_its_limit_price() -> None:
    """An emulated sell stop-limit (stop 49900, limit 49800) fires at 49850 and is sent to
    the venue as a LIMIT at 49800, not as a market order."""
    stack = build_stack(wrap=Recording)
    venue: Any = stack.orders._adapter
    order = await stack.orders.place_order(
        spec(type="stop_limit", trigger_price="49900", price="49800")
    )
    stack.tick(BTC, "49850")
    await stack.tasks.drain(5)
    sent = [r for r in venue.requests if r.client_order_id == order.client_order_id]
    assert [(OrderType.LIMIT, Decimal("49800"))] == [(r.type, r.price) for r in sent]


async def test_non_rejection_venue_error_ends_failed_with_the_reason() -> None:
    """A final venue error that is not a rejection (say an unexpected reply) ends the fired
    order FAILED with the venue's message; the next order still executes."""
    stack = build_stack(wrap=Recording)
    venue: Any = stack.orders._adapter
    venue.fail_with = ExchangeError("unexpected reply from the venue")
    first = await stack.orders.place_order(spec(type="stop_market", trigger_price="49900"))
    stack.tick(BTC, "49800")
    await stack.tasks.drain(5)
    failed = stack.orders.get_order(first.client_order_id)
    assert failed is not None and OrderStatus.FAILED == failed.status
    assert "unexpected reply" in (failed.error_message or "")
    venue.fail_with = None
    second = await stack.orders.place_order(spec(type="stop_market", trigger_price="49700"))
    stack.tick(BTC, "49600")
    await stack.tasks.drain(5)
    done = stack.orders.get_order(second.client_order_id)
    assert done is not None and OrderStatus.FILLED == done.status


async def test_reduce_only_on_the_positions_own_side_is_refused() -> None:
    """With a long open, a reduce-only BUY would grow it: refused naming reduce_only."""
    stack = build_stack()
    await stack.apm.open_position_atomic(long_signal())
    with pytest.raises(ValidationError) as err:
        await stack.orders.place_order(
            spec(type="stop_market", side="buy", trigger_price="51000", reduce_only=True)
        )
    assert "reduce_only" == err.value.field
