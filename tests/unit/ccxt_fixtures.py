"""Offline harness for the ccxt adapter tests.

Real ``ccxt.async_support`` exchange classes, built with their markets in the
constructor (so ``load_markets`` makes no request) and with ``fetch`` replaced by
:class:`FakeTransport`: request signing, parameter mapping, error mapping and response
parsing are ccxt's own code; only the socket is fake. Nothing here touches the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt.async_support as ccxt_async

from exchanges.ccxt_adapter import CcxtAdapter

# ../shared/ccxt_static beside the repository (README there); absent in some checkouts.
STATIC_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "ccxt_static"

FUTURES_ORDER_TYPES = [
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]


def market_dict(
    symbol: str,
    market_id: str,
    *,
    kind: str = "swap",
    tick: float = 0.1,
    step: float = 0.001,
    min_amount: float = 0.001,
    min_cost: float | None = 5,
    contract_size: float = 1,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ccxt market structure (TICK_SIZE precision) for a linear swap or a spot pair."""
    base, rest = symbol.split("/")
    quote = rest.split(":")[0]
    swap = kind == "swap"
    return {
        "id": market_id,
        "lowercaseId": market_id.lower(),
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": quote if swap else None,
        "baseId": base,
        "quoteId": quote,
        "settleId": quote if swap else None,
        "type": kind,
        "spot": not swap,
        "margin": not swap,
        "swap": swap,
        "future": False,
        "option": False,
        "index": None,
        "active": True,
        "contract": swap,
        "linear": True if swap else None,
        "inverse": False if swap else None,
        "subType": "linear" if swap else None,
        "taker": 0.0006,
        "maker": 0.0001,
        "contractSize": contract_size if swap else None,
        "expiry": None,
        "expiryDatetime": None,
        "strike": None,
        "optionType": None,
        "precision": {"amount": step, "price": tick},
        "limits": {
            "leverage": {"min": 1, "max": 100},
            "amount": {"min": min_amount, "max": 1000},
            "price": {"min": tick, "max": 2000000},
            "cost": {"min": min_cost, "max": None},
        },
        "marginModes": {"cross": None, "isolated": None},
        "created": None,
        "info": info if info is not None else {"symbol": market_id},
        "tierBased": True,
        "percentage": True,
        "feeSide": "get",
    }


def default_markets(exchange_id: str) -> dict[str, dict[str, Any]]:
    """BTC and ETH linear perpetuals plus the BTC/USDT spot pair sharing the id BTCUSDT."""
    info = {"orderTypes": FUTURES_ORDER_TYPES} if exchange_id != "bybit" else None
    spot_info = {"orderTypes": ["LIMIT", "MARKET"]} if exchange_id != "bybit" else None
    markets = [
        market_dict("BTC/USDT", "BTCUSDT", kind="spot", tick=0.01, step=0.00001,
                    min_amount=0.00001, info=spot_info),
        market_dict("BTC/USDT:USDT", "BTCUSDT", info=dict(info or {}, symbol="BTCUSDT")),
        market_dict("ETH/USDT:USDT", "ETHUSDT", tick=0.01, step=0.01, min_amount=0.01,
                    min_cost=20, info=dict(info or {}, symbol="ETHUSDT")),
    ]  # fmt: skip
    return {m["symbol"]: m for m in markets}


def static_markets(exchange_id: str) -> dict[str, dict[str, Any]]:
    """The captured markets of ``../shared/ccxt_static``, made loadable by ccxt 4.5.90
    (the Binance file stores decimal places where ccxt now expects tick sizes)."""
    name = "bybit" if exchange_id == "bybit" else "binance"
    markets: dict[str, dict[str, Any]] = json.loads(
        (STATIC_DIR / "markets" / f"{name}.json").read_text()
    )
    if name == "binance":
        for market in markets.values():
            precision = market.setdefault("precision", {})
            for key in ("amount", "price"):
                digits = precision.get(key)
                if digits is not None:
                    precision[key] = 10.0 ** -int(digits)
            market.setdefault("linear", None)
            market.setdefault("inverse", None)
    return markets


def make_exchange(exchange_id: str, markets: dict[str, Any] | None = None) -> Any:
    """A real ccxt async exchange with markets preloaded and no account probes."""
    klass = getattr(ccxt_async, exchange_id)
    return klass(
        {
            "markets": markets if markets is not None else default_markets(exchange_id),
            "apiKey": "test-api-key-0001",
            "secret": "test-api-secret-0001",
            "enableRateLimit": False,
            "options": {
                "enableUnifiedAccount": True,
                "enableUnifiedMargin": False,
                "leverageBrackets": {},
            },
        }
    )


@dataclass
class Sent:
    """One request ccxt sent: method, URL path, query and decoded body."""

    method: str
    url: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        """Query and body together (Binance signs either, depending on the method)."""
        return {**self.query, **self.body}


Reply = dict[str, Any] | list[Any] | Callable[[Sent], Any]


@dataclass
class Route:
    method: str
    path: str
    reply: Reply | None = None
    status: int = 200
    raises: BaseException | None = None
    times: int | None = None  # None: unlimited
    hits: int = 0


@dataclass
class FakeTransport:
    """Replaces ``exchange.fetch``: records each request and answers from routes.

    Replies go through the exchange's own ``handle_errors`` and status handling, as on
    the wire, so a Bybit ``retCode`` or a Binance ``code`` raises the ccxt exception the
    real venue would cause. An unrouted request fails the test loudly.
    """

    exchange: Any
    routes: list[Route] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.exchange.fetch = self.fetch

    def on(
        self,
        method: str,
        path: str,
        reply: Reply | None = None,
        *,
        status: int = 200,
        raises: BaseException | None = None,
        times: int | None = None,
    ) -> FakeTransport:
        self.routes.append(Route(method, path, reply, status, raises, times))
        return self

    def to(self, path: str) -> list[Sent]:
        """The requests sent to a URL path ending in ``path``."""
        return [s for s in self.sent if s.path.endswith(path)]

    async def fetch(
        self, url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        parts = urlsplit(url)
        decoded: dict[str, Any] = {}
        if body:
            text = body.decode() if isinstance(body, bytes) else str(body)
            decoded = json.loads(text) if text.lstrip().startswith("{") else dict(parse_qsl(text))
        sent = Sent(method, url, parts.path, dict(parse_qsl(parts.query)), decoded)
        self.sent.append(sent)
        for route in self.routes:
            usable = route.times is None or route.hits < route.times
            if usable and route.method == method and parts.path.endswith(route.path):
                route.hits += 1
                if route.raises is not None:
                    raise route.raises
                reply = route.reply(sent) if callable(route.reply) else route.reply
                text = json.dumps(reply)
                reason = "OK" if route.status < 400 else "Bad Request"
                self.exchange.handle_errors(
                    route.status, reason, url, method, {}, text, reply, headers, body
                )
                self.exchange.handle_http_status_code(route.status, reason, url, method, text)
                return reply
        raise AssertionError(f"unrouted request: {method} {url}")


def adapter_for(
    exchange_id: str, markets: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[CcxtAdapter, FakeTransport]:
    """An adapter over a real, offline ccxt exchange, and the transport it talks to."""

    async def no_sleep(_: float) -> None:
        return None

    exchange = make_exchange(exchange_id, markets)
    transport = FakeTransport(exchange)
    kwargs.setdefault("sleep", no_sleep)
    adapter = CcxtAdapter(
        exchange_id,
        api_key="test-api-key-0001",
        secret="test-api-secret-0001",
        exchange=exchange,
        **kwargs,
    )
    return adapter, transport


def bybit_ok(result: Any) -> dict[str, Any]:
    """A successful Bybit v5 envelope."""
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": 1700000000000}


def bybit_list(*rows: dict[str, Any]) -> dict[str, Any]:
    return bybit_ok({"category": "linear", "list": list(rows), "nextPageCursor": ""})


# -- venue payloads, written from the exchanges' API documentation --------------------
def bybit_order_row(**fields: Any) -> dict[str, Any]:
    """One order of Bybit v5 ``/v5/order/realtime`` / ``/v5/order/history``."""
    row: dict[str, Any] = {
        "orderId": "b-1001",
        "orderLinkId": "td-main-p1-en-1",
        "blockTradeId": "",
        "symbol": "BTCUSDT",
        "price": "0",
        "qty": "0.010",
        "side": "Buy",
        "isLeverage": "",
        "positionIdx": 0,
        "orderStatus": "Filled",
        "cancelType": "UNKNOWN",
        "rejectReason": "EC_NoError",
        "avgPrice": "50000.5",
        "leavesQty": "0.000",
        "leavesValue": "0",
        "cumExecQty": "0.010",
        "cumExecValue": "500.005",
        "cumExecFee": "0.27500275",
        "timeInForce": "IOC",
        "orderType": "Market",
        "stopOrderType": "",
        "orderIv": "",
        "triggerPrice": "0.00",
        "takeProfit": "0.00",
        "stopLoss": "0.00",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": 0,
        "triggerBy": "",
        "lastPriceOnCreated": "50000.0",
        "reduceOnly": False,
        "closeOnTrigger": False,
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "tpslMode": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "placeType": "",
        "createdTime": "1700000000000",
        "updatedTime": "1700000000100",
    }
    row.update(fields)
    return row


def bybit_execution_row(**fields: Any) -> dict[str, Any]:
    """One execution of Bybit v5 ``/v5/execution/list``."""
    row: dict[str, Any] = {
        "symbol": "BTCUSDT",
        "orderId": "b-1001",
        "orderLinkId": "td-main-p1-en-1",
        "side": "Buy",
        "orderPrice": "52500.0",
        "orderQty": "0.010",
        "leavesQty": "0.000",
        "createType": "CreateByUser",
        "orderType": "Market",
        "stopOrderType": "",
        "execFee": "0.27500275",
        "execId": "e-1",
        "execPrice": "50000.5",
        "execQty": "0.010",
        "execType": "Trade",
        "execValue": "500.005",
        "execTime": "1700000000050",
        "feeCurrency": "",
        "isMaker": False,
        "feeRate": "0.00055",
        "tradeIv": "",
        "markIv": "",
        "markPrice": "50001.0",
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": "",
        "seq": 4688002127,
    }
    row.update(fields)
    return row


def bybit_position_row(**fields: Any) -> dict[str, Any]:
    """One position of Bybit v5 ``/v5/position/list`` (one-way mode)."""
    row: dict[str, Any] = {
        "positionIdx": 0,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "size": "0.010",
        "avgPrice": "50000.5",
        "positionValue": "500.005",
        "tradeMode": 0,
        "autoAddMargin": 0,
        "positionStatus": "Normal",
        "leverage": "5",
        "markPrice": "50100.0",
        "liqPrice": "40500.0",
        "bustPrice": "",
        "positionIM": "100.0",
        "positionMM": "2.5",
        "positionBalance": "100.0",
        "tpslMode": "Full",
        "takeProfit": "",
        "stopLoss": "49000.0",
        "trailingStop": "0",
        "unrealisedPnl": "0.995",
        "curRealisedPnl": "-0.275",
        "cumRealisedPnl": "-0.275",
        "adlRankIndicator": 2,
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
        "createdTime": "1700000000000",
        "updatedTime": "1700000000100",
        "seq": 8172241024,
    }
    row.update(fields)
    return row


def binance_order(**fields: Any) -> dict[str, Any]:
    """A USD-M futures order (``/fapi/v1/order`` with ``newOrderRespType=RESULT``)."""
    row: dict[str, Any] = {
        "orderId": 22542179,
        "symbol": "BTCUSDT",
        "status": "FILLED",
        "clientOrderId": "td-main-p1-en-1",
        "price": "0.00",
        "avgPrice": "50000.50",
        "origQty": "0.010",
        "executedQty": "0.010",
        "cumQty": "0.010",
        "cumQuote": "500.00500",
        "timeInForce": "GTC",
        "type": "MARKET",
        "reduceOnly": False,
        "closePosition": False,
        "side": "BUY",
        "positionSide": "BOTH",
        "stopPrice": "0.00",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": "MARKET",
        "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE",
        "goodTillDate": 0,
        "updateTime": 1700000000100,
    }
    row.update(fields)
    return row


def binance_algo_order(**fields: Any) -> dict[str, Any]:
    """A USD-M conditional order of the algo service (``GET /fapi/v1/algoOrder``).

    ``actualOrderId`` / ``actualPrice`` name the regular order it became once triggered
    (empty / zero before, as in Binance's "Query Algo Order" example).
    """
    row: dict[str, Any] = {
        "algoId": 3358,
        "clientAlgoId": "td-main-p1-sl-1",
        "algoType": "CONDITIONAL",
        "orderType": "STOP_MARKET",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "positionSide": "BOTH",
        "timeInForce": "GTC",
        "quantity": "0.010",
        "algoStatus": "NEW",
        "actualOrderId": "",
        "actualPrice": "0.00000",
        "triggerPrice": "49000.00",
        "price": "0.00",
        "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": "CONTRACT_PRICE",
        "priceMatch": "NONE",
        "closePosition": False,
        "priceProtect": False,
        "reduceOnly": True,
        "createTime": 1700000000000,
        "updateTime": 1700000000000,
        "triggerTime": 0,
        "goodTillDate": 0,
    }
    row.update(fields)
    return row


def route_ticker(venue: FakeTransport, exchange_id: str, last: str = "50000.0") -> None:
    """Answer the venue's ticker endpoint (the adapter prices a market order's notional)."""
    if exchange_id == "bybit":
        ticker = {"symbol": "BTCUSDT", "lastPrice": last, "bid1Price": last, "ask1Price": last}
        venue.on("GET", "/v5/market/tickers", bybit_ok({"category": "linear", "list": [ticker]}))
    else:
        row: dict[str, Any] = {"symbol": "BTCUSDT", "lastPrice": last, "closeTime": 1700000000000}
        venue.on("GET", "/fapi/v1/ticker/24hr", row)
