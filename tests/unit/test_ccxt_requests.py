"""What the ccxt adapter sends to Bybit and Binance USD-M, and what it makes of replies.

Real ccxt exchange classes with ``fetch`` replaced (tests/unit/ccxt_fixtures.py); the
replies are written from the venues' API documentation.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import SecretStr

from config.settings import load_settings
from core.errors import ValidationError
from core.models import PositionSide, Side
from core.order_model import OrderStatus, OrderType
from core.venue import ExchangeAdapter, InvalidOrder, OrderRequest
from exchanges.ccxt_adapter import CcxtAdapter
from tests.unit.ccxt_fixtures import (
    adapter_for,
    binance_algo_order,
    binance_order,
    bybit_execution_row,
    bybit_list,
    bybit_ok,
    bybit_order_row,
    bybit_position_row,
    route_ticker,
)

CID = "td-main-p1-en-1"
SL_CID = "td-main-p1-sl-1"
_NOISE = {"timestamp", "recvWindow", "signature"}


def entry(side: Side = Side.BUY, amount: str = "0.01") -> OrderRequest:
    return OrderRequest(CID, "BTC/USDT:USDT", side, OrderType.MARKET, Decimal(amount))


def stop(order_type: OrderType, side: Side, trigger: str) -> OrderRequest:
    return OrderRequest(
        SL_CID,
        "BTC/USDT:USDT",
        side,
        order_type,
        Decimal("0.01"),
        trigger_price=Decimal(trigger),
        reduce_only=True,
    )


def test_adapter_satisfies_the_protocol() -> None:
    """CcxtAdapter is an ExchangeAdapter."""
    adapter, _ = adapter_for("bybit")
    assert isinstance(adapter, ExchangeAdapter)


# -- Bybit ---------------------------------------------------------------------------
async def test_bybit_market_entry_request() -> None:
    """A market entry is a linear, one-way order with our orderLinkId and no trigger."""
    adapter, venue = adapter_for("bybit")
    venue.on("POST", "/v5/order/create", bybit_ok({"orderId": "b-1", "orderLinkId": CID}))
    route_ticker(venue, "bybit")
    await adapter.create_order(entry())
    assert venue.to("/v5/order/create")[0].body == {
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "orderLinkId": CID,
        "category": "linear",
        "qty": "0.01",
        "positionIdx": 0,
    }


@pytest.mark.parametrize(
    ("order_type", "side", "trigger", "direction"),
    [
        (OrderType.STOP_MARKET, Side.SELL, "49000", 2),  # long's stop: fires on a fall
        (OrderType.STOP_MARKET, Side.BUY, "51000", 1),  # short's stop: fires on a rise
        (OrderType.TAKE_PROFIT_MARKET, Side.SELL, "55000", 1),  # long's take-profit
        (OrderType.TAKE_PROFIT_MARKET, Side.BUY, "45000", 2),  # short's take-profit
    ],
)
async def test_bybit_reduce_only_conditional_request(
    order_type: OrderType, side: Side, trigger: str, direction: int
) -> None:
    """Stops and take-profits are reduce-only conditional market orders whose
    triggerDirection follows from the side and the kind (1 rises to, 2 falls to)."""
    adapter, venue = adapter_for("bybit")
    venue.on("POST", "/v5/order/create", bybit_ok({"orderId": "b-2", "orderLinkId": SL_CID}))
    await adapter.create_order(stop(order_type, side, trigger))
    assert venue.to("/v5/order/create")[0].body == {
        "symbol": "BTCUSDT",
        "side": side.value.capitalize(),
        "orderType": "Market",
        "orderLinkId": SL_CID,
        "category": "linear",
        "qty": "0.01",
        "triggerPrice": trigger,
        "triggerDirection": direction,
        "reduceOnly": True,
        "positionIdx": 0,
    }


async def test_bybit_prices_and_amounts_are_rounded_before_sending() -> None:
    """The amount is rounded down to the step and the trigger to the tick."""
    adapter, venue = adapter_for("bybit")
    venue.on("POST", "/v5/order/create", bybit_ok({"orderId": "b-2", "orderLinkId": SL_CID}))
    request = OrderRequest(
        SL_CID,
        "BTCUSDT",
        Side.SELL,
        OrderType.STOP_MARKET,
        Decimal("0.0129"),
        trigger_price=Decimal("49000.06"),
        reduce_only=True,
    )
    await adapter.create_order(request)
    body = venue.to("/v5/order/create")[0].body
    assert (body["qty"], body["triggerPrice"]) == ("0.012", "49000.1")


async def test_bybit_id_only_create_reply_parses_to_unknowns() -> None:
    """Bybit's create reply has only ids: status and average price stay None."""
    adapter, venue = adapter_for("bybit")
    venue.on("POST", "/v5/order/create", bybit_ok({"orderId": "b-1", "orderLinkId": CID}))
    route_ticker(venue, "bybit")
    order = await adapter.create_order(entry())
    assert (order.symbol, order.exchange_order_id, order.client_order_id) == (
        "BTC/USDT:USDT",
        "b-1",
        CID,
    )
    assert (order.status, order.average_price, order.filled) == (None, None, None)


async def test_bybit_fetch_by_client_id_reads_realtime_then_history() -> None:
    """An order is looked up by orderLinkId in realtime, then in the order history."""
    adapter, venue = adapter_for("bybit")
    venue.on("GET", "/v5/order/realtime", bybit_list())
    venue.on("GET", "/v5/order/history", bybit_list(bybit_order_row()))
    order = await adapter.fetch_order("BTCUSDT", client_order_id=CID)
    assert [s.query.get("orderLinkId") for s in venue.sent] == [CID, CID]
    assert (order.status, order.filled, order.average_price, order.side, order.type) == (
        OrderStatus.FILLED,
        Decimal("0.01"),
        Decimal("50000.5"),
        Side.BUY,
        OrderType.MARKET,
    )


async def test_bybit_conditional_order_fetched_as_stop() -> None:
    """An untriggered Bybit conditional sell below the market reads back as a NEW stop."""
    adapter, venue = adapter_for("bybit")
    row = bybit_order_row(
        orderId="b-2",
        orderLinkId=SL_CID,
        side="Sell",
        orderStatus="Untriggered",
        avgPrice="",
        cumExecQty="0",
        cumExecValue="0",
        leavesQty="0.010",
        triggerPrice="49000",
        triggerDirection=2,
        stopOrderType="Stop",
        reduceOnly=True,
    )
    venue.on("GET", "/v5/order/realtime", bybit_list(row))
    order = await adapter.fetch_order("BTCUSDT", exchange_order_id="b-2")
    assert venue.sent[0].query["orderId"] == "b-2"
    assert (order.status, order.type, order.trigger_price, order.reduce_only) == (
        OrderStatus.NEW,
        OrderType.STOP_MARKET,
        Decimal("49000"),
        True,
    )


async def test_bybit_cancel_by_client_id() -> None:
    """A cancel by client id sends orderLinkId; an id-only reply means CANCELLED."""
    adapter, venue = adapter_for("bybit")
    venue.on("POST", "/v5/order/cancel", bybit_ok({"orderId": "b-2", "orderLinkId": SL_CID}))
    order = await adapter.cancel_order("BTCUSDT", client_order_id=SL_CID)
    assert venue.sent[0].body == {"symbol": "BTCUSDT", "category": "linear", "orderLinkId": SL_CID}
    assert (order.exchange_order_id, order.status) == ("b-2", OrderStatus.CANCELLED)


async def test_bybit_fills_of_one_order() -> None:
    """Fills are fetched filtered by order id and carry symbol, side, ids and fee."""
    adapter, venue = adapter_for("bybit")
    venue.on("GET", "/v5/execution/list", bybit_list(bybit_execution_row()))
    fills = await adapter.fetch_fills("BTCUSDT", exchange_order_id="b-1001")
    assert venue.sent[0].query["orderId"] == "b-1001"
    [fill] = fills
    assert (fill.trade_id, fill.price, fill.amount, fill.fee) == (
        "e-1",
        Decimal("50000.5"),
        Decimal("0.01"),
        Decimal("0.27500275"),
    )
    assert (fill.symbol, fill.side, fill.exchange_order_id, fill.client_order_id) == (
        "BTC/USDT:USDT",
        Side.BUY,
        "b-1001",
        CID,
    )


async def test_bybit_positions_skip_flat_rows() -> None:
    """Open positions are normalised; a zero-size row is not a position."""
    adapter, venue = adapter_for("bybit")
    flat = bybit_position_row(symbol="ETHUSDT", side="", size="0", avgPrice="0")
    venue.on("GET", "/v5/position/list", bybit_list(bybit_position_row(), flat))
    [position] = await adapter.fetch_positions()
    assert (position.symbol, position.side, position.quantity, position.entry_price) == (
        "BTC/USDT:USDT",
        PositionSide.LONG,
        Decimal("0.01"),
        Decimal("50000.5"),
    )


async def test_bybit_price_from_ticker() -> None:
    """fetch_price reads the linear ticker: last, bid, ask and mark."""
    adapter, venue = adapter_for("bybit")
    ticker = {
        "symbol": "BTCUSDT",
        "lastPrice": "50010.5",
        "bid1Price": "50010.0",
        "ask1Price": "50010.5",
        "markPrice": "50011.0",
        "indexPrice": "50009.0",
        "volume24h": "1000",
        "turnover24h": "50000000",
    }
    venue.on("GET", "/v5/market/tickers", bybit_ok({"category": "linear", "list": [ticker]}))
    tick = await adapter.fetch_price("BTCUSDT")
    assert venue.sent[0].query == {"symbol": "BTCUSDT", "category": "linear"}
    assert (tick.symbol, tick.price, tick.bid, tick.ask, tick.mark) == (
        "BTC/USDT:USDT",
        Decimal("50010.5"),
        Decimal("50010.0"),
        Decimal("50010.5"),
        Decimal("50011.0"),
    )


# -- Binance USD-M -------------------------------------------------------------------
def signed(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in _NOISE}


async def test_binance_market_entry_request_and_reply() -> None:
    """A market entry goes to /fapi/v1/order with newClientOrderId; the RESULT reply
    gives status FILLED and the average price."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("POST", "/fapi/v1/order", binance_order())
    route_ticker(venue, "binanceusdm")
    order = await adapter.create_order(entry())
    assert signed(venue.to("/fapi/v1/order")[0].params) == {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.01",
        "newClientOrderId": CID,
        "newOrderRespType": "RESULT",
    }
    assert (order.status, order.filled, order.average_price) == (
        OrderStatus.FILLED,
        Decimal("0.01"),
        Decimal("50000.5"),
    )


@pytest.mark.parametrize(
    ("order_type", "side", "trigger", "venue_type"),
    [
        (OrderType.STOP_MARKET, Side.SELL, "49000", "STOP_MARKET"),
        (OrderType.TAKE_PROFIT_MARKET, Side.SELL, "55000", "TAKE_PROFIT_MARKET"),
        (OrderType.STOP_MARKET, Side.BUY, "51000", "STOP_MARKET"),
    ],
)
async def test_binance_reduce_only_conditional_request(
    order_type: OrderType, side: Side, trigger: str, venue_type: str
) -> None:
    """Stops and take-profits go to the algo endpoint, reduce-only, with clientAlgoId."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on(
        "POST",
        "/fapi/v1/algoOrder",
        binance_algo_order(orderType=venue_type, side=side.value.upper(), triggerPrice=trigger),
    )
    order = await adapter.create_order(stop(order_type, side, trigger))
    assert signed(venue.to("/fapi/v1/algoOrder")[0].params) == {
        "symbol": "BTCUSDT",
        "side": side.value.upper(),
        "type": venue_type,
        "quantity": "0.01",
        "triggerPrice": trigger,
        "reduceOnly": "true",
        "clientAlgoId": SL_CID,
        "algoType": "CONDITIONAL",
        "newOrderRespType": "RESULT",
    }
    assert (order.type, order.status, order.trigger_price, order.reduce_only) == (
        order_type,
        OrderStatus.NEW,
        Decimal(trigger),
        True,
    )


async def test_binance_cancel_conditional_order_uses_algo_endpoint() -> None:
    """Cancelling a conditional order by client id hits DELETE /fapi/v1/algoOrder."""
    adapter, venue = adapter_for("binanceusdm")
    reply = {"algoId": 3358, "clientAlgoId": SL_CID, "code": "200", "msg": "success"}
    venue.on("DELETE", "/fapi/v1/algoOrder", reply)
    order = await adapter.cancel_order("BTCUSDT", client_order_id=SL_CID, conditional=True)
    [sent] = venue.sent
    assert (sent.method, sent.path) == ("DELETE", "/fapi/v1/algoOrder")
    assert signed(sent.params) == {"symbol": "BTCUSDT", "clientAlgoId": SL_CID}
    assert (order.exchange_order_id, order.status) == ("3358", OrderStatus.CANCELLED)


async def test_binance_cancel_regular_order_by_exchange_id() -> None:
    """A regular order is cancelled on /fapi/v1/order by orderId."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("DELETE", "/fapi/v1/order", binance_order(status="CANCELED", type="LIMIT"))
    order = await adapter.cancel_order("BTCUSDT", exchange_order_id="22542179")
    assert signed(venue.sent[0].params) == {"symbol": "BTCUSDT", "orderId": "22542179"}
    assert order.status is OrderStatus.CANCELLED


async def test_binance_fetch_conditional_by_client_id() -> None:
    """A conditional order is fetched from the algo endpoint by clientAlgoId."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("GET", "/fapi/v1/algoOrder", binance_algo_order())
    order = await adapter.fetch_order("BTCUSDT", client_order_id=SL_CID, conditional=True)
    assert signed(venue.sent[0].query) == {"symbol": "BTCUSDT", "clientAlgoId": SL_CID}
    assert (order.exchange_order_id, order.client_order_id, order.type) == (
        "3358",
        SL_CID,
        OrderType.STOP_MARKET,
    )


ACTUAL_ID = "123456"


def triggered_stop(**fields: object) -> dict[str, object]:
    """The regular order a triggered reduce-only sell stop became (``/fapi/v1/order``)."""
    row = binance_order(orderId=int(ACTUAL_ID), clientOrderId="autoclose-3358", side="SELL",
                        type="MARKET", origType="MARKET", reduceOnly=True)  # fmt: skip
    row.update(fields)
    return row


@pytest.mark.parametrize(
    ("algo_status", "actual", "expected"),
    [
        (
            "TRIGGERED",
            triggered_stop(
                status="PARTIALLY_FILLED",
                executedQty="0.004",
                cumQuote="195.96",
                avgPrice="48990.0",
            ),
            (OrderStatus.PARTIALLY_FILLED, Decimal("0.004"), Decimal("48990")),
        ),
        (
            "FINISHED",
            triggered_stop(
                status="FILLED", executedQty="0.010", cumQuote="489.9", avgPrice="48990.0"
            ),
            (OrderStatus.FILLED, Decimal("0.01"), Decimal("48990")),
        ),
        (
            "FINISHED",
            triggered_stop(status="CANCELED", executedQty="0", cumQuote="0", avgPrice="0.00"),
            (OrderStatus.CANCELLED, Decimal("0"), None),
        ),
    ],
)
async def test_binance_triggered_algo_order_reads_its_actual_order(
    algo_status: str, actual: dict[str, object], expected: tuple[object, ...]
) -> None:
    """A TRIGGERED / FINISHED algo stop is completed from the regular order it became
    (actualOrderId): that order's status, fill and average, the algo order's identity."""
    adapter, venue = adapter_for("binanceusdm")
    algo = binance_algo_order(algoStatus=algo_status, actualOrderId=ACTUAL_ID,
                              actualPrice="48990.0", triggerTime=1700000001000)  # fmt: skip
    venue.on("GET", "/fapi/v1/algoOrder", algo)
    venue.on("GET", "/fapi/v1/order", actual)
    order = await adapter.fetch_order("BTCUSDT", client_order_id=SL_CID, conditional=True)
    assert signed(venue.to("/fapi/v1/order")[0].query) == {
        "symbol": "BTCUSDT",
        "orderId": ACTUAL_ID,
    }
    assert (order.status, order.filled, order.average_price) == expected
    assert (order.exchange_order_id, order.client_order_id, order.type, order.trigger_price) == (
        "3358",
        SL_CID,
        OrderType.STOP_MARKET,
        Decimal("49000"),
    )


@pytest.mark.parametrize("algo_status", ["TRIGGERED", "FINISHED"])
async def test_binance_handed_over_algo_order_without_its_actual_order_is_unknown(
    algo_status: str,
) -> None:
    """An algo order that handed over, whose regular order cannot be read (no id, or the
    venue no longer has it), has an unknown status and fill, never CANCELLED with 0."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("GET", "/fapi/v1/algoOrder", binance_algo_order(algoStatus=algo_status), times=1)
    venue.on("GET", "/fapi/v1/algoOrder",
             binance_algo_order(algoStatus=algo_status, actualOrderId=ACTUAL_ID))  # fmt: skip
    venue.on("GET", "/fapi/v1/order", {"code": -2013, "msg": "Order does not exist."},
             status=400)  # fmt: skip
    without_id = await adapter.fetch_order("BTCUSDT", exchange_order_id="3358", conditional=True)
    purged = await adapter.fetch_order("BTCUSDT", exchange_order_id="3358", conditional=True)
    actual = [(o.status, o.filled, o.average_price) for o in (without_id, purged)]
    assert actual == [(None, None, None), (None, None, None)]
    assert len(venue.to("/fapi/v1/order")) == 1


async def test_binance_fills_of_a_triggered_algo_order_come_from_its_actual_order() -> None:
    """Fills asked for by the algo id are those of the regular order it became."""
    adapter, venue = adapter_for("binanceusdm")
    algo = binance_algo_order(algoStatus="FINISHED", actualOrderId=ACTUAL_ID)
    venue.on("GET", "/fapi/v1/algoOrder", algo)
    venue.on("GET", "/fapi/v1/order", triggered_stop(avgPrice="48990.0"))
    trade = {"buyer": False, "commission": "0.269", "commissionAsset": "USDT", "id": 698761,
             "maker": False, "orderId": int(ACTUAL_ID), "price": "48990.0", "qty": "0.010",
             "quoteQty": "489.9", "realizedPnl": "-10.1", "side": "SELL",
             "positionSide": "BOTH", "symbol": "BTCUSDT", "time": 1700000001050}  # fmt: skip
    venue.on("GET", "/fapi/v1/userTrades", [trade])
    await adapter.fetch_order("BTCUSDT", exchange_order_id="3358", conditional=True)
    fills = await adapter.fetch_fills("BTCUSDT", exchange_order_id="3358")
    assert venue.to("/fapi/v1/userTrades")[0].query["orderId"] == ACTUAL_ID
    assert [(f.trade_id, f.price, f.amount) for f in fills] == [
        ("698761", Decimal("48990"), Decimal("0.01"))
    ]


async def test_binance_open_orders_include_conditional_ones() -> None:
    """Open orders are listed from both the regular and the algo endpoints."""
    adapter, venue = adapter_for("binanceusdm")
    limit = binance_order(status="NEW", type="LIMIT", origType="LIMIT", price="45000",
                          avgPrice="0", executedQty="0", cumQuote="0")  # fmt: skip
    venue.on("GET", "/fapi/v1/openOrders", [limit])
    venue.on("GET", "/fapi/v1/openAlgoOrders", [binance_algo_order()])
    orders = await adapter.fetch_open_orders()
    assert [s.path for s in venue.sent] == ["/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders"]
    assert sorted((o.type, o.status) for o in orders) == [
        (OrderType.LIMIT, OrderStatus.NEW),
        (OrderType.STOP_MARKET, OrderStatus.NEW),
    ]


async def test_binance_fills_filtered_to_the_order() -> None:
    """Fills are asked for by orderId and any other order's trade is dropped."""
    adapter, venue = adapter_for("binanceusdm")
    trade = {
        "buyer": True,
        "commission": "0.20000200",
        "commissionAsset": "USDT",
        "id": 698759,
        "maker": False,
        "orderId": 22542179,
        "price": "50000.50",
        "qty": "0.010",
        "quoteQty": "500.00500",
        "realizedPnl": "0",
        "side": "BUY",
        "positionSide": "BOTH",
        "symbol": "BTCUSDT",
        "time": 1700000000050,
    }
    venue.on("GET", "/fapi/v1/userTrades", [trade, dict(trade, id=698760, orderId=1)])
    fills = await adapter.fetch_fills("BTCUSDT", exchange_order_id="22542179")
    assert venue.sent[0].query["orderId"] == "22542179"
    assert [(f.trade_id, f.price, f.amount, f.fee) for f in fills] == [
        ("698759", Decimal("50000.5"), Decimal("0.01"), Decimal("0.200002"))
    ]


async def test_binance_short_position() -> None:
    """A one-way short (negative positionAmt) is a short of the absolute size."""
    adapter, venue = adapter_for("binanceusdm")
    row = {
        "symbol": "BTCUSDT",
        "positionSide": "BOTH",
        "positionAmt": "-0.010",
        "entryPrice": "50000.5",
        "breakEvenPrice": "50020.0",
        "markPrice": "50100.0",
        "unRealizedProfit": "-0.995",
        "liquidationPrice": "60000",
        "isolatedMargin": "0",
        "notional": "-501.0",
        "marginAsset": "USDT",
        "isolatedWallet": "0",
        "initialMargin": "100.2",
        "maintMargin": "2.5",
        "positionInitialMargin": "100.2",
        "openOrderInitialMargin": "0",
        "adl": 1,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": 1700000000100,
    }
    flat = dict(row, symbol="ETHUSDT", positionAmt="0.000", entryPrice="0.0")
    venue.on("GET", "/fapi/v3/positionRisk", [row, flat])
    [position] = await adapter.fetch_positions()
    assert (position.symbol, position.side, position.quantity, position.entry_price) == (
        "BTC/USDT:USDT",
        PositionSide.SHORT,
        Decimal("0.01"),
        Decimal("50000.5"),
    )


async def test_bybit_amend_stop_trigger_in_place() -> None:
    """A Bybit stop's trigger is amended in place, rounded to the tick, same size."""
    adapter, venue = adapter_for("bybit")
    row = bybit_order_row(orderId="b-2", orderLinkId=SL_CID, side="Sell", orderStatus="Untriggered",
                          avgPrice="", cumExecQty="0", leavesQty="0.010", triggerPrice="49000",
                          triggerDirection=2, stopOrderType="Stop", reduceOnly=True)  # fmt: skip
    venue.on("GET", "/v5/order/realtime", bybit_list(row))
    venue.on("POST", "/v5/order/amend", bybit_ok({"orderId": "b-2", "orderLinkId": SL_CID}))
    order = await adapter.edit_order("BTCUSDT", "b-2", trigger_price=Decimal("49500.04"))
    assert venue.to("/v5/order/amend")[0].body == {
        "symbol": "BTCUSDT",
        "orderId": "b-2",
        "category": "linear",
        "qty": "0.01",
        "triggerPrice": "49500",
        "triggerBy": "LastPrice",
    }
    assert (order.exchange_order_id, order.client_order_id) == ("b-2", SL_CID)


async def test_binance_conditional_order_is_not_amended() -> None:
    """A new trigger marks a conditional order: it is fetched from the algo endpoint, and
    Binance algo orders cannot be modified, so the adapter refuses before sending."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("GET", "/fapi/v1/algoOrder", binance_algo_order())
    with pytest.raises(InvalidOrder, match="cannot amend a conditional order"):
        await adapter.edit_order("BTCUSDT", "3358", trigger_price=Decimal("49500"))
    assert [(s.method, s.path) for s in venue.sent] == [("GET", "/fapi/v1/algoOrder")]
    assert signed(venue.sent[0].query) == {"symbol": "BTCUSDT", "algoId": "3358"}


async def test_binance_amount_edit_of_a_conditional_order_finds_it_among_algo_orders() -> None:
    """Without a trigger to tell, an id the regular list does not know is looked for among
    the conditional orders, and the algo order is refused as unamendable."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("GET", "/fapi/v1/order", {"code": -2013, "msg": "Order does not exist."},
             status=400)  # fmt: skip
    venue.on("GET", "/fapi/v1/algoOrder", binance_algo_order())
    with pytest.raises(InvalidOrder, match="cannot amend a conditional order"):
        await adapter.edit_order("BTCUSDT", "3358", amount=Decimal("0.02"))
    assert [s.path for s in venue.sent] == ["/fapi/v1/order", "/fapi/v1/algoOrder"]


async def test_testnet_on_a_venue_without_one_is_a_settings_error() -> None:
    """TRADER_TESTNET for a venue ccxt has no sandbox for stops the start with a clear
    settings error (ccxt itself would fail with a TypeError)."""
    with pytest.raises(ValidationError, match="kraken has no testnet"):
        CcxtAdapter("kraken", testnet=True)


async def test_binance_fetch_regular_order_by_client_id() -> None:
    """A regular order is fetched from /fapi/v1/order by origClientOrderId."""
    adapter, venue = adapter_for("binanceusdm")
    venue.on("GET", "/fapi/v1/order", binance_order())
    order = await adapter.fetch_order("BTCUSDT", client_order_id=CID)
    assert signed(venue.sent[0].query) == {"symbol": "BTCUSDT", "origClientOrderId": CID}
    assert (order.status, order.average_price) == (OrderStatus.FILLED, Decimal("50000.5"))


async def test_binance_free_balance() -> None:
    """The free balance of a currency comes from the futures account, as a Decimal."""
    adapter, venue = adapter_for("binanceusdm")
    asset = {"asset": "USDT", "walletBalance": "1000.5", "unrealizedProfit": "0",
             "marginBalance": "1000.5", "maintMargin": "0", "initialMargin": "0",
             "positionInitialMargin": "0", "openOrderInitialMargin": "0",
             "crossWalletBalance": "1000.5", "crossUnPnl": "0", "availableBalance": "900.25",
             "maxWithdrawAmount": "900.25", "updateTime": 1700000000000}  # fmt: skip
    account = {"totalWalletBalance": "1000.5", "availableBalance": "900.25",
               "assets": [asset], "positions": []}  # fmt: skip
    venue.on("GET", "/fapi/v3/account", account)
    assert await adapter.fetch_free_balance("usdt") == Decimal("900.25")


async def test_testnet_sends_to_the_sandbox() -> None:
    """With testnet on, requests go to the venue's testnet host."""
    adapter, venue = adapter_for("bybit", testnet=True)
    venue.on("GET", "/v5/position/list", bybit_list())
    await adapter.fetch_positions()
    assert venue.sent[0].url.startswith("https://api-testnet.bybit.com/")


async def test_from_settings_builds_a_rate_limited_ccxt_client_without_leaking_keys() -> None:
    """from_settings makes a rate-limited testnet client; the key is not in its repr."""
    settings = load_settings(exchange="bybit", testnet=True, api_key=SecretStr("key-from-settings"),
                             api_secret=SecretStr("secret-from-settings"))  # fmt: skip
    adapter = CcxtAdapter.from_settings(settings)
    async with adapter:
        assert adapter.name == "bybit"
        assert adapter._exchange.enableRateLimit is True
        assert adapter._exchange.urls["api"]["private"].startswith("https://api-testnet.")
        assert "key-from-settings" not in repr(adapter)
