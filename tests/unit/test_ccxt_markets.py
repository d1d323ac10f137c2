"""Markets, symbol resolution and pre-trade minimums of the ccxt adapter.

Failure mode 13 (a bare id resolving to spot) and 16 (minimums read wrongly so orders
are rejected for size) are checked here, before anything is sent.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from core.models import Market, Side
from core.order_model import OrderType
from core.venue import InvalidOrder, OrderRequest
from tests.unit.ccxt_fixtures import (
    adapter_for,
    binance_order,
    bybit_list,
    bybit_ok,
    bybit_order_row,
    default_markets,
    market_dict,
    route_ticker,
)


@pytest.mark.parametrize("exchange_id", ["binanceusdm", "bybit"])
@pytest.mark.parametrize("text", ["BTCUSDT", "btcusdt", "BTC/USDT:USDT", " BTCUSDT "])
async def test_bare_id_resolves_to_the_perpetual_never_spot(exchange_id: str, text: str) -> None:
    """BTCUSDT, with a spot BTC/USDT sharing that id, resolves to BTC/USDT:USDT."""
    adapter, _ = adapter_for(exchange_id)
    await adapter.load_markets()
    assert adapter.market(text).symbol == "BTC/USDT:USDT"


async def test_unknown_symbol_is_invalid_order_naming_it() -> None:
    """A symbol with no market of the account's type is refused, naming the symbol."""
    adapter, _ = adapter_for("binanceusdm")
    await adapter.load_markets()
    with pytest.raises(InvalidOrder, match="'DOGEUSDT'"):
        adapter.market("DOGEUSDT")


async def test_spot_symbol_is_refused_with_a_hint() -> None:
    """The spot symbol BTC/USDT is not silently traded as the perpetual: refused, with
    the perpetual suggested."""
    adapter, _ = adapter_for("bybit")
    await adapter.load_markets()
    with pytest.raises(InvalidOrder, match=r"'BTC/USDT'.*did you mean 'BTC/USDT:USDT'"):
        adapter.market("BTC/USDT")


async def test_symbol_before_markets_load_is_refused() -> None:
    """Resolving a symbol before the markets are loaded is an error, not a guess."""
    adapter, _ = adapter_for("bybit")
    with pytest.raises(InvalidOrder, match="not loaded"):
        adapter.market("BTCUSDT")


async def test_load_markets_keeps_active_linear_swaps_only() -> None:
    """Spot, inverse and inactive markets are dropped; the rest become core Markets."""
    markets = default_markets("bybit")
    inverse = market_dict("BTC/USD:BTC", "BTCUSD")
    inverse.update(linear=False, inverse=True, settle="BTC")
    halted = market_dict("XRP/USDT:USDT", "XRPUSDT")
    halted["active"] = False
    markets.update({m["symbol"]: m for m in (inverse, halted)})
    adapter, venue = adapter_for("bybit", markets)
    loaded = await adapter.load_markets()
    assert sorted(loaded) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert loaded["BTC/USDT:USDT"] == Market(
        symbol="BTC/USDT:USDT",
        id="BTCUSDT",
        base="BTC",
        quote="USDT",
        tick_size=Decimal("0.1"),
        amount_step=Decimal("0.001"),
        min_amount=Decimal("0.001"),
        min_cost=Decimal("5"),
        contract_size=Decimal("1"),
        type="swap",
        linear=True,
    )
    assert venue.sent == []  # markets given in the constructor: nothing fetched
    assert await adapter.load_markets() is loaded


async def test_contract_size_scales_steps_and_minimums_to_base_units() -> None:
    """On a 0.01-per-contract market the step and minimum are in base units."""
    markets = {"BTC/USDT:USDT": market_dict("BTC/USDT:USDT", "BTCUSDT", step=1, min_amount=1,
                                            contract_size=0.01)}  # fmt: skip
    adapter, _ = adapter_for("bybit", markets)
    market = (await adapter.load_markets())["BTC/USDT:USDT"]
    assert (market.amount_step, market.min_amount, market.contract_size) == (
        Decimal("0.01"),
        Decimal("0.01"),
        Decimal("0.01"),
    )


async def test_decimal_places_precision_becomes_a_step() -> None:
    """In ccxt's DECIMAL_PLACES mode, 3 digits is a step of 0.001."""
    markets = {"BTC/USDT:USDT": market_dict("BTC/USDT:USDT", "BTCUSDT", step=3, tick=1)}
    adapter, _ = adapter_for("bybit", markets)
    adapter._exchange.precisionMode = ccxt.DECIMAL_PLACES  # the venue's declared mode
    market = (await adapter.load_markets())["BTC/USDT:USDT"]
    assert (market.amount_step, market.tick_size) == (Decimal("0.001"), Decimal("0.1"))


async def test_missing_cost_limit_falls_back_to_venue_min_notional() -> None:
    """Where ccxt left the cost minimum out, Bybit's minNotionalValue is used."""
    info = {"symbol": "BTCUSDT", "lotSizeFilter": {"minNotionalValue": "5"}}
    markets = {"BTC/USDT:USDT": market_dict("BTC/USDT:USDT", "BTCUSDT", min_cost=None,
                                            info=info)}  # fmt: skip
    adapter, _ = adapter_for("bybit", markets)
    assert (await adapter.load_markets())["BTC/USDT:USDT"].min_cost == Decimal("5")


def limit(symbol: str, amount: str, price: str, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(
        "td-main-r1-mo-1",
        symbol,
        Side.BUY,
        OrderType.LIMIT,
        Decimal(amount),
        price=Decimal(price),
        reduce_only=reduce_only,
    )


async def test_amount_rounding_to_zero_is_refused_before_sending() -> None:
    """0.0005 BTC rounds down to 0 at the 0.001 step: refused, nothing sent."""
    adapter, venue = adapter_for("binanceusdm")
    with pytest.raises(InvalidOrder, match=r"amount: 0.0005 .*minimum 0.001"):
        await adapter.create_order(limit("BTCUSDT", "0.0005", "50000"))
    assert venue.sent == []


async def test_precision_error_other_than_rounding_is_translated_not_called_zero() -> None:
    """A market ccxt no longer lists (delisted on a reload) fails the rounding with ccxt's
    own reason, translated once, not as "rounds down to 0"; nothing is sent."""
    adapter, venue = adapter_for("binanceusdm")
    await adapter.load_markets()
    venue.exchange.set_markets(
        [m for m in default_markets("binanceusdm").values() if m["symbol"] != "BTC/USDT:USDT"]
    )
    with pytest.raises(InvalidOrder) as caught:
        await adapter.create_order(limit("BTCUSDT", "0.01", "50000"))
    expected = "BadSymbol: binanceusdm does not have market symbol BTC/USDT:USDT"
    assert str(caught.value) == expected
    assert venue.sent == []


async def test_amount_below_minimum_is_refused_before_sending() -> None:
    """An amount on the step but below the minimum is refused, naming both."""
    markets = {"BTC/USDT:USDT": market_dict("BTC/USDT:USDT", "BTCUSDT", min_amount=0.005)}
    adapter, venue = adapter_for("bybit", markets)
    with pytest.raises(InvalidOrder, match=r"amount: 0.003 is below the minimum amount 0.005"):
        await adapter.create_order(limit("BTCUSDT", "0.003", "50000"))
    assert venue.sent == []


async def test_notional_below_minimum_is_refused_before_sending() -> None:
    """0.01 ETH at 1800 (18 USDT) under a 20 USDT minimum cost is refused, unsent."""
    adapter, venue = adapter_for("binanceusdm")
    with pytest.raises(InvalidOrder, match=r"notional: .*18.* minimum cost 20 USDT"):
        await adapter.create_order(limit("ETHUSDT", "0.01", "1800"))
    assert venue.sent == []


async def test_market_order_notional_is_priced_from_the_ticker() -> None:
    """A market order has no price: the ticker prices its notional, and a too-small
    order is refused with only the ticker asked."""
    adapter, venue = adapter_for("bybit")
    route_ticker(venue, "bybit", last="4000")
    request = OrderRequest("td-main-p1-en-1", "BTCUSDT", Side.BUY, OrderType.MARKET,
                           Decimal("0.001"))  # fmt: skip
    with pytest.raises(InvalidOrder, match="notional"):
        await adapter.create_order(request)
    assert [s.path for s in venue.sent] == ["/v5/market/tickers"]


async def test_notional_at_the_minimum_is_sent() -> None:
    """An order exactly at the minimum cost is allowed (the limit is inclusive)."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("POST", "/fapi/v1/order", binance_order(type="LIMIT", status="NEW"))
    await adapter.create_order(limit("ETHUSDT", "0.01", "2000"))
    assert len(venue.to("/fapi/v1/order")) == 1


async def test_reduce_only_orders_are_exempt_from_min_notional() -> None:
    """A reduce-only stop below the notional minimum is still sent: a small position
    must never be left without its stop."""
    adapter, venue = adapter_for("bybit")
    venue.on("POST", "/v5/order/create", bybit_ok({"orderId": "b-9", "orderLinkId": "x"}))
    request = OrderRequest(
        "td-main-p1-sl-1",
        "BTCUSDT",
        Side.SELL,
        OrderType.STOP_MARKET,
        Decimal("0.001"),
        trigger_price=Decimal("4000"),
        reduce_only=True,
    )
    order = await adapter.create_order(request)
    assert order.exchange_order_id == "b-9"
    assert [s.path for s in venue.sent] == ["/v5/order/create"]


async def test_trailing_stop_is_not_sent_natively() -> None:
    """Trailing stops are emulated in-process; the adapter refuses to send one."""
    adapter, venue = adapter_for("bybit")
    request = OrderRequest("td-main-p1-sl-1", "BTCUSDT", Side.SELL, OrderType.TRAILING_STOP,
                           Decimal("0.01"), reduce_only=True)  # fmt: skip
    with pytest.raises(InvalidOrder, match="TRAILING_STOP"):
        await adapter.create_order(request)
    assert venue.sent == []


async def test_limit_without_price_is_refused() -> None:
    """A LIMIT request without a price is refused naming the field."""
    adapter, venue = adapter_for("bybit")
    request = OrderRequest("td-main-r1-mo-1", "BTCUSDT", Side.BUY, OrderType.LIMIT,
                           Decimal("0.01"))  # fmt: skip
    with pytest.raises(InvalidOrder, match="price"):
        await adapter.create_order(request)
    assert venue.sent == []


async def test_recent_price_prices_the_notional_without_another_ticker_call() -> None:
    """A price fetched moments ago sizes a market order's notional: one ticker call."""
    adapter, venue = adapter_for("bybit")
    route_ticker(venue, "bybit", last="50000")
    venue.on("POST", "/v5/order/create", bybit_ok({"orderId": "b-1", "orderLinkId": "x"}))
    await adapter.fetch_price("BTCUSDT")
    request = OrderRequest("td-main-p1-en-1", "BTCUSDT", Side.BUY, OrderType.MARKET,
                           Decimal("0.001"))  # fmt: skip
    await adapter.create_order(request)
    assert [s.path for s in venue.sent] == ["/v5/market/tickers", "/v5/order/create"]


async def test_base_amounts_are_sent_as_contracts_and_read_back_as_base() -> None:
    """On a 0.01-per-contract market, 0.03 BTC is sent as 3 contracts and the order
    reads back as 0.03 BTC: the core never sees contracts."""
    markets = {"BTC/USDT:USDT": market_dict("BTC/USDT:USDT", "BTCUSDT", step=1, min_amount=1,
                                            contract_size=0.01, min_cost=None)}  # fmt: skip
    adapter, venue = adapter_for("bybit", markets)
    venue.on("POST", "/v5/order/create", bybit_ok({"orderId": "b-1", "orderLinkId": "x"}))
    row = bybit_order_row(qty="3", cumExecQty="3", leavesQty="0")
    venue.on("GET", "/v5/order/realtime", bybit_list(row))
    request = OrderRequest("td-main-p1-en-1", "BTCUSDT", Side.BUY, OrderType.MARKET,
                           Decimal("0.035"))  # fmt: skip
    await adapter.create_order(request)
    fetched = await adapter.fetch_order("BTCUSDT", exchange_order_id="b-1001")
    assert venue.to("/v5/order/create")[0].body["qty"] == "3"
    assert (fetched.amount, fetched.filled) == (Decimal("0.03"), Decimal("0.03"))
