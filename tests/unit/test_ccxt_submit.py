"""Submits are never blindly retried; reads are retried with bounded back-off.

Failure mode 14: an order the venue accepted but whose reply was lost must be found by
its client id, never sent twice and never marked failed while it exists.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from core import venue as base
from core.models import Side
from core.order_model import OrderStatus, OrderType
from core.venue import OrderRequest
from tests.unit.ccxt_fixtures import (
    adapter_for,
    binance_algo_order,
    binance_order,
    bybit_list,
    bybit_order_row,
    bybit_position_row,
    route_ticker,
)

CID = "td-main-p1-en-1"
SL_CID = "td-main-p1-sl-1"


def entry() -> OrderRequest:
    return OrderRequest(CID, "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))


class Sleeps:
    """Records the back-off delays instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_timeout_after_accept_returns_the_existing_order() -> None:
    """A submit that times out but was accepted is found by client id, sent once."""
    adapter, venue = adapter_for("bybit")
    route_ticker(venue, "bybit")
    venue.on("POST", "/v5/order/create", raises=ccxt.RequestTimeout("bybit POST timed out"))
    venue.on("GET", "/v5/order/realtime", bybit_list(bybit_order_row()))
    order = await adapter.create_order(entry())
    assert len(venue.to("/v5/order/create")) == 1
    assert venue.to("/v5/order/realtime")[0].query["orderLinkId"] == CID
    assert (order.exchange_order_id, order.client_order_id, order.status) == (
        "b-1001",
        CID,
        OrderStatus.FILLED,
    )
    assert order.average_price == Decimal("50000.5")


async def test_lookup_waits_out_a_lagging_venue() -> None:
    """The order not yet visible on the first look-up is found on a later one."""
    sleeps = Sleeps()
    adapter, venue = adapter_for("bybit", sleep=sleeps)
    route_ticker(venue, "bybit")
    venue.on("POST", "/v5/order/create", raises=ccxt.ExchangeNotAvailable("bybit 503"))
    venue.on("GET", "/v5/order/realtime", bybit_list(), times=1)
    venue.on("GET", "/v5/order/history", bybit_list(), times=1)
    venue.on("GET", "/v5/order/realtime", bybit_list(bybit_order_row()))
    order = await adapter.create_order(entry())
    assert order.exchange_order_id == "b-1001"
    assert len(venue.to("/v5/order/create")) == 1
    assert sleeps.delays == [0.5, 1.0]


async def test_timeout_and_order_absent_reraises_the_transient_error() -> None:
    """Definitely not found after the bounded look-ups: RequestTimeout, nothing resent."""
    sleeps = Sleeps()
    adapter, venue = adapter_for("bybit", sleep=sleeps, lookup_attempts=3)
    route_ticker(venue, "bybit")
    venue.on("POST", "/v5/order/create", raises=ccxt.RequestTimeout("bybit POST timed out"))
    venue.on("GET", "/v5/order/realtime", bybit_list())
    venue.on("GET", "/v5/order/history", bybit_list())
    with pytest.raises(base.RequestTimeout, match="not found by client id after 3 look-ups"):
        await adapter.create_order(entry())
    assert len(venue.to("/v5/order/create")) == 1
    assert len(venue.to("/v5/order/realtime")) == 3
    assert sleeps.delays == [0.5, 1.0, 2.0]


async def test_failing_lookup_never_turns_the_unknown_into_a_final_error() -> None:
    """A look-up the venue refuses (a final error) still ends in the transient error:
    the order may exist, so the caller must not mark it failed."""
    adapter, venue = adapter_for("bybit", lookup_attempts=2)
    route_ticker(venue, "bybit")
    venue.on("POST", "/v5/order/create", raises=ccxt.RequestTimeout("bybit POST timed out"))
    venue.on("GET", "/v5/order/realtime", raises=ccxt.BadRequest("bybit 10001 params error"))
    with pytest.raises(base.RequestTimeout):
        await adapter.create_order(entry())
    assert len(venue.to("/v5/order/create")) == 1
    assert len(venue.to("/v5/order/realtime")) == 2


async def test_binance_conditional_timeout_is_looked_up_as_conditional() -> None:
    """A stop whose submit timed out is looked up on the algo endpoint by clientAlgoId."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("POST", "/fapi/v1/algoOrder", raises=ccxt.RequestTimeout("binanceusdm timeout"))
    venue.on("GET", "/fapi/v1/algoOrder", binance_algo_order())
    request = OrderRequest(
        SL_CID,
        "BTCUSDT",
        Side.SELL,
        OrderType.STOP_MARKET,
        Decimal("0.01"),
        trigger_price=Decimal("49000"),
        reduce_only=True,
    )
    order = await adapter.create_order(request)
    assert len([s for s in venue.sent if s.method == "POST"]) == 1
    assert venue.to("/fapi/v1/algoOrder")[1].query["clientAlgoId"] == SL_CID
    assert (order.exchange_order_id, order.type, order.status) == (
        "3358",
        OrderType.STOP_MARKET,
        OrderStatus.NEW,
    )


async def test_duplicate_client_id_returns_the_earlier_order() -> None:
    """A resubmit refused as a duplicate orderLinkId (110072) returns the existing order."""
    adapter, venue = adapter_for("bybit")
    route_ticker(venue, "bybit")
    duplicate = {"retCode": 110072, "retMsg": "OrderLinkedID is duplicate", "result": {},
                 "retExtInfo": {}, "time": 1700000000000}  # fmt: skip
    venue.on("POST", "/v5/order/create", duplicate)
    venue.on("GET", "/v5/order/realtime", bybit_list(bybit_order_row()))
    order = await adapter.create_order(entry())
    assert (order.exchange_order_id, order.status) == ("b-1001", OrderStatus.FILLED)


async def test_rate_limited_submit_is_raised_without_lookup() -> None:
    """A throttled submit was not accepted: RateLimited, no look-up, no resend."""
    adapter, venue = adapter_for("bybit")
    route_ticker(venue, "bybit")
    venue.on("POST", "/v5/order/create", raises=ccxt.RateLimitExceeded("bybit 10006"))
    with pytest.raises(base.RateLimited):
        await adapter.create_order(entry())
    assert [s.path for s in venue.sent if s.path.startswith("/v5/order")] == ["/v5/order/create"]


async def test_reads_retry_transient_errors_with_backoff() -> None:
    """A read throttled twice succeeds on the third attempt, after growing back-offs."""
    sleeps = Sleeps()
    adapter, venue = adapter_for("bybit", sleep=sleeps)
    venue.on("GET", "/v5/position/list", raises=ccxt.RateLimitExceeded("10006"), times=2)
    venue.on("GET", "/v5/position/list", bybit_list(bybit_position_row()))
    positions = await adapter.fetch_positions()
    assert [p.quantity for p in positions] == [Decimal("0.01")]
    assert sleeps.delays == [0.5, 1.0]


async def test_reads_give_up_after_the_bound() -> None:
    """A read that keeps failing raises the transient error after read_attempts tries."""
    adapter, venue = adapter_for("bybit", read_attempts=3)
    venue.on("GET", "/v5/position/list", raises=ccxt.ExchangeNotAvailable("503"))
    with pytest.raises(base.ExchangeUnavailable):
        await adapter.fetch_positions()
    assert len(venue.sent) == 3


async def test_final_read_errors_are_not_retried() -> None:
    """A read the venue refused for good (authentication) is tried once."""
    adapter, venue = adapter_for("bybit")
    venue.on("GET", "/v5/position/list", raises=ccxt.AuthenticationError("10003"))
    with pytest.raises(base.AuthenticationError):
        await adapter.fetch_positions()
    assert len(venue.sent) == 1


async def test_writes_are_not_retried() -> None:
    """A cancel that fails on the network is tried once; the caller decides."""
    adapter, venue = adapter_for("bybit")
    venue.on("POST", "/v5/order/cancel", raises=ccxt.ExchangeNotAvailable("503"))
    with pytest.raises(base.ExchangeUnavailable):
        await adapter.cancel_order("BTCUSDT", exchange_order_id="b-1")
    assert len(venue.sent) == 1


def bybit_error(code: int, message: str) -> dict[str, object]:
    """A Bybit v5 error envelope (HTTP 200, non-zero retCode)."""
    return {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {},
            "time": 1700000000000}  # fmt: skip


UNCLASSIFIED = [(10016, "Server error"), (10000, "Server Timeout")]  # 10000: unknown to ccxt


@pytest.mark.parametrize(("code", "message"), UNCLASSIFIED)
async def test_unclassified_submit_error_returns_the_order_found_by_client_id(
    code: int, message: str
) -> None:
    """A submit answered with an error ccxt leaves unclassified is looked up by client id;
    the order the venue accepted is returned, not rejected, and never sent twice."""
    adapter, venue = adapter_for("bybit")
    route_ticker(venue, "bybit")
    venue.on("POST", "/v5/order/create", bybit_error(code, message))
    venue.on("GET", "/v5/order/realtime", bybit_list(bybit_order_row()))
    order = await adapter.create_order(entry())
    assert len(venue.to("/v5/order/create")) == 1
    assert venue.to("/v5/order/realtime")[0].query["orderLinkId"] == CID
    assert (order.exchange_order_id, order.client_order_id, order.status) == (
        "b-1001",
        CID,
        OrderStatus.FILLED,
    )


@pytest.mark.parametrize(("code", "message"), UNCLASSIFIED)
async def test_unclassified_submit_error_not_found_is_a_rejection_with_the_venue_message(
    code: int, message: str
) -> None:
    """Looked up and answered "not found", the unclassified error is a final OrderRejected
    that keeps the venue's code and message."""
    adapter, venue = adapter_for("bybit", lookup_attempts=2)
    route_ticker(venue, "bybit")
    venue.on("POST", "/v5/order/create", bybit_error(code, message))
    venue.on("GET", "/v5/order/realtime", bybit_list())
    venue.on("GET", "/v5/order/history", bybit_list())
    with pytest.raises(base.OrderRejected) as caught:
        await adapter.create_order(entry())
    text = str(caught.value)
    assert type(caught.value) is base.OrderRejected
    assert (f'"retCode": {code}' in text, f'"retMsg": "{message}"' in text) == (True, True)
    assert text.endswith(f"(order {CID} not found by client id after 2 look-ups)")
    assert len(venue.to("/v5/order/create")) == 1
    assert len(venue.to("/v5/order/realtime")) == 2


async def test_unclassified_submit_error_with_failing_lookup_stays_unknown() -> None:
    """When the look-ups themselves fail, the outcome is unknown: a transient error the
    caller resolves later, never a rejection (failure mode 14)."""
    adapter, venue = adapter_for("bybit", lookup_attempts=2)
    route_ticker(venue, "bybit")
    venue.on("POST", "/v5/order/create", bybit_error(10016, "Server error"))
    venue.on("GET", "/v5/order/realtime", raises=ccxt.ExchangeNotAvailable("bybit 503"))
    with pytest.raises(base.ExchangeUnavailable, match="outcome unknown") as caught:
        await adapter.create_order(entry())
    assert isinstance(caught.value, base.OrderRejected) is False
    assert len(venue.to("/v5/order/create")) == 1


async def test_binance_unclassified_submit_error_returns_the_order_found() -> None:
    """The same holds on Binance: an error code ccxt does not know is resolved by
    origClientOrderId before anything is decided."""
    adapter, venue = adapter_for("binanceusdm")
    route_ticker(venue, "binanceusdm")
    venue.on("POST", "/fapi/v1/order", {"code": -1, "msg": "Internal error; unable to process"},
             status=400)  # fmt: skip
    venue.on("GET", "/fapi/v1/order", binance_order())
    order = await adapter.create_order(entry())
    assert venue.to("/fapi/v1/order")[1].query["origClientOrderId"] == CID
    assert (order.exchange_order_id, order.status) == ("22542179", OrderStatus.FILLED)
