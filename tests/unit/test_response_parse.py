"""Normalising ccxt unified orders, trades and positions (exchanges/response.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from core.errors import ValidationError
from core.models import PositionSide, Side
from core.order_model import Fill, OrderStatus, OrderType
from core.venue import ExchangeOrder, ExchangePosition
from exchanges.response import execution_price, parse_fill, parse_order, parse_position
from exchanges.response_status import handover_order_id, merge_handover, parse_status


def unified(**fields: Any) -> dict[str, Any]:
    """A ccxt unified order with every key ccxt always sets, overridden by ``fields``."""
    order: dict[str, Any] = {
        "info": {},
        "id": "1001",
        "clientOrderId": "td-main-p1-en-1",
        "timestamp": 1700000000000,
        "symbol": "BTC/USDT:USDT",
        "type": "market",
        "side": "buy",
        "price": None,
        "triggerPrice": None,
        "stopLossPrice": None,
        "takeProfitPrice": None,
        "amount": 0.01,
        "filled": 0.01,
        "remaining": 0.0,
        "average": 50000.5,
        "status": "closed",
        "reduceOnly": False,
        "fee": None,
        "fees": [],
        "trades": [],
    }
    order.update(fields)
    return order


def trade(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "info": {},
        "id": "t1",
        "order": "1001",
        "timestamp": 1700000000500,
        "symbol": "BTC/USDT:USDT",
        "side": "buy",
        "takerOrMaker": "taker",
        "price": 50000.5,
        "amount": 0.01,
        "fee": {"cost": 0.3, "currency": "USDT"},
    }
    row.update(fields)
    return row


@pytest.mark.parametrize(
    ("raw_status", "expected"),
    [
        ("New", OrderStatus.NEW),
        ("NEW", OrderStatus.NEW),
        ("Untriggered", OrderStatus.NEW),
        ("Triggered", OrderStatus.NEW),
        ("TRIGGERING", OrderStatus.NEW),
        ("PartiallyFilled", OrderStatus.PARTIALLY_FILLED),
        ("PARTIALLY_FILLED", OrderStatus.PARTIALLY_FILLED),
        ("Filled", OrderStatus.FILLED),
        ("FILLED", OrderStatus.FILLED),
        ("Cancelled", OrderStatus.CANCELLED),
        ("CANCELED", OrderStatus.CANCELLED),
        ("Deactivated", OrderStatus.CANCELLED),
        ("PartiallyFilledCanceled", OrderStatus.CANCELLED),
        ("PendingCancel", OrderStatus.CANCELLING),
        ("EXPIRED", OrderStatus.EXPIRED),
        ("EXPIRED_IN_MATCH", OrderStatus.EXPIRED),
        ("REJECTED", OrderStatus.REJECTED),
        ("Rejected", OrderStatus.REJECTED),
    ],
)
def test_raw_exchange_status_strings_map_in_any_case(
    raw_status: str, expected: OrderStatus
) -> None:
    """The venue's own status string wins over ccxt's coarser one, whatever its case."""
    raw = unified(info={"orderStatus": raw_status}, status="open", filled=0.0, remaining=0.01)
    assert parse_order(raw).status is expected


@pytest.mark.parametrize(
    ("status", "filled", "expected"),
    [
        ("open", 0.0, OrderStatus.NEW),
        ("open", 0.004, OrderStatus.PARTIALLY_FILLED),
        ("closed", 0.01, OrderStatus.FILLED),
        ("closed", 0.004, OrderStatus.CANCELLED),
        ("closed", 0.0, OrderStatus.CANCELLED),
        ("canceled", 0.004, OrderStatus.CANCELLED),
        ("expired", 0.0, OrderStatus.EXPIRED),
        ("rejected", 0.0, OrderStatus.REJECTED),
        (None, 0.0, None),
        ("something-new", 0.0, None),
    ],
)
def test_ccxt_unified_status_refined_by_quantities(
    status: str | None, filled: float, expected: OrderStatus | None
) -> None:
    """'closed' is FILLED only when all filled; unknown or missing status stays None."""
    assert parse_order(unified(status=status, filled=filled)).status is expected


def algo(status: str, actual_id: str = "123456") -> dict[str, Any]:
    """A Binance algo stop as ccxt unifies it: always "closed"-ish, filled 0."""
    info = {"algoId": 3358, "clientAlgoId": "td-main-p1-sl-1", "algoStatus": status,
            "orderType": "STOP_MARKET", "actualOrderId": actual_id,
            "actualPrice": "48990.0"}  # fmt: skip
    return unified(info=info, id="3358", clientOrderId="td-main-p1-sl-1", status="closed",
                   filled=0.0, remaining=0.01, average=None, triggerPrice=49000.0)  # fmt: skip


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("NEW", (OrderStatus.NEW, Decimal(0), None)),
        ("TRIGGERING", (OrderStatus.NEW, Decimal(0), None)),
        ("TRIGGERED", (None, None, "123456")),
        ("FINISHED", (None, None, "123456")),
        ("CANCELED", (OrderStatus.CANCELLED, Decimal(0), None)),
    ],
)
def test_binance_algo_order_handed_over_knows_neither_status_nor_fill(
    status: str, expected: tuple[object, ...]
) -> None:
    """An algo order that triggered into a regular order (TRIGGERED / FINISHED) has no
    status or fill of its own: unknown, and the regular order's id is named."""
    raw = algo(status)
    order = parse_order(raw)
    assert (order.status, order.filled, handover_order_id(raw)) == expected


def test_handed_over_algo_order_with_empty_actual_id_names_none() -> None:
    """An empty or zero actualOrderId is no id."""
    assert [handover_order_id(algo("FINISHED", i)) for i in ("", "0")] == [None, None]


def test_merge_handover_keeps_the_algo_identity_and_takes_the_outcome() -> None:
    """The merged order is the algo order (ids, type, trigger) with the regular order's
    status, fill, average and fee."""
    actual = parse_order(
        unified(
            id="123456",
            clientOrderId="autoclose-3358",
            side="sell",
            average=48990.0,
            fee={"cost": 0.27, "currency": "USDT"},
        )
    )
    merged = merge_handover(parse_order(algo("FINISHED")), actual)
    assert (
        merged.exchange_order_id,
        merged.client_order_id,
        merged.type,
        merged.trigger_price,
        merged.status,
        merged.filled,
        merged.average_price,
        merged.fee,
    ) == (
        "3358",
        "td-main-p1-sl-1",
        OrderType.STOP_MARKET,
        Decimal("49000.0"),
        OrderStatus.FILLED,
        Decimal("0.01"),
        Decimal("48990.0"),
        Decimal("0.27"),
    )


def test_closed_without_known_fill_is_unknown() -> None:
    """A 'closed' order whose filled quantity nobody reported is not assumed FILLED."""
    assert parse_status(["closed"], None, Decimal("1")) is None


def test_bybit_id_only_create_reply_knows_nothing_but_ids() -> None:
    """Bybit's create reply (ids only) parses to status None and average None, not 0."""
    raw = unified(
        info={"orderId": "b-1", "orderLinkId": "td-main-p1-en-1"},
        id="b-1",
        type=None,
        side=None,
        amount=None,
        filled=None,
        remaining=None,
        average=None,
        status=None,
        reduceOnly=None,
    )
    order = parse_order(raw)
    assert (order.exchange_order_id, order.client_order_id) == ("b-1", "td-main-p1-en-1")
    assert (order.status, order.average_price, order.side, order.type, order.amount) == (
        None,
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("average", [0, 0.0, "0", "", None])
def test_zero_or_empty_average_is_unknown(average: object) -> None:
    """An average of 0, '' or None means 'not known', never a price of 0."""
    assert parse_order(unified(average=average)).average_price is None


def test_numbers_become_decimals_from_their_text() -> None:
    """ccxt floats become Decimals through str: 0.1 stays exactly 0.1."""
    order = parse_order(unified(amount=0.1, filled=0.1, average=0.3))
    assert (order.amount, order.filled, order.average_price) == (
        Decimal("0.1"),
        Decimal("0.1"),
        Decimal("0.3"),
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "market"}, OrderType.MARKET),
        ({"type": "limit", "price": 50000}, OrderType.LIMIT),
        # Binance STOP_MARKET: ccxt says "market" with a trigger price.
        (
            {"type": "market", "triggerPrice": 49000, "info": {"type": "STOP_MARKET"}},
            OrderType.STOP_MARKET,
        ),
        # Binance algo TAKE_PROFIT_MARKET: ccxt copies the trigger to takeProfitPrice.
        (
            {
                "type": "market",
                "triggerPrice": 55000,
                "takeProfitPrice": 55000,
                "info": {"orderType": "TAKE_PROFIT_MARKET", "algoType": "CONDITIONAL"},
            },
            OrderType.TAKE_PROFIT_MARKET,
        ),
        # Binance STOP (stop-limit): ccxt maps it to "limit".
        (
            {"type": "limit", "price": 48900, "triggerPrice": 49000, "info": {"type": "STOP"}},
            OrderType.STOP_LIMIT,
        ),
        # Bybit conditional market order placed with triggerPrice / triggerDirection.
        (
            {
                "type": "market",
                "triggerPrice": 49000,
                "stopLossPrice": 49000,
                "info": {"orderType": "Market", "stopOrderType": "Stop"},
            },
            OrderType.STOP_MARKET,
        ),
        # Bybit entry with a stop-loss *attached*: still a plain market entry.
        (
            {"type": "market", "stopLossPrice": 48000, "info": {"stopOrderType": ""}},
            OrderType.MARKET,
        ),
        (
            {"type": "market", "info": {"type": "TRAILING_STOP_MARKET"}},
            OrderType.TRAILING_STOP,
        ),
        ({"type": None}, None),
    ],
)
def test_order_type_detects_stops_and_take_profits(
    fields: dict[str, Any], expected: OrderType | None
) -> None:
    """Stops and take-profits are told apart by trigger prices and the venue's type."""
    assert parse_order(unified(**fields)).type is expected


def test_conditional_order_keeps_its_trigger_and_reduce_only() -> None:
    """A reduce-only stop keeps its trigger price and reduce-only flag (as text or bool)."""
    order = parse_order(
        unified(type="market", triggerPrice=49000.5, reduceOnly="true", status="open", filled=0)
    )
    assert (order.trigger_price, order.reduce_only, order.status) == (
        Decimal("49000.5"),
        True,
        OrderStatus.NEW,
    )


def test_embedded_trades_become_fills_with_order_identity() -> None:
    """Trades inside an order become Fills naming the order, its client id and fee."""
    raw = unified(trades=[trade(), trade(id="t2", price=50001, amount=0.02)], fee=None)
    fills = parse_order(raw).fills
    assert [(f.trade_id, f.price, f.amount) for f in fills] == [
        ("t1", Decimal("50000.5"), Decimal("0.01")),
        ("t2", Decimal("50001"), Decimal("0.02")),
    ]
    assert {(f.exchange_order_id, f.client_order_id, f.symbol) for f in fills} == {
        ("1001", "td-main-p1-en-1", "BTC/USDT:USDT")
    }


def test_embedded_trade_without_id_is_left_out() -> None:
    """A trade without an id cannot be de-duplicated, so it does not become a fill."""
    assert parse_order(unified(trades=[trade(id=None)])).fills == ()


def test_order_fee_from_fee_or_fees() -> None:
    """The fee comes from ccxt's fee, or the fees list in one currency."""
    one = parse_order(unified(fee={"cost": 0.25, "currency": "USDT"}))
    many = parse_order(
        unified(
            fee=None, fees=[{"cost": 0.1, "currency": "USDT"}, {"cost": 0.2, "currency": "USDT"}]
        )
    )
    assert (one.fee, one.fee_currency) == (Decimal("0.25"), "USDT")
    assert (many.fee, many.fee_currency) == (Decimal("0.3"), "USDT")


def test_amounts_scale_by_contract_size() -> None:
    """Contract amounts become base units: 3 contracts of 0.01 BTC are 0.03 BTC."""
    order = parse_order(unified(amount=3, filled=3, remaining=0), contract_size=Decimal("0.01"))
    assert (order.amount, order.filled) == (Decimal("0.03"), Decimal("0.03"))


def test_parse_fill_names_symbol_side_order_and_client_id() -> None:
    """A fetched trade becomes a Fill with symbol, side, order id, client id, maker flag."""
    fill = parse_fill(
        trade(info={"orderLinkId": "td-main-p1-en-1"}, takerOrMaker="maker", side="sell")
    )
    assert fill == Fill(
        trade_id="t1",
        price=Decimal("50000.5"),
        amount=Decimal("0.01"),
        fee=Decimal("0.3"),
        fee_currency="USDT",
        ts=datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC),
        is_maker=True,
        symbol="BTC/USDT:USDT",
        side=Side.SELL,
        exchange_order_id="1001",
        client_order_id="td-main-p1-en-1",
    )


def test_parse_fill_refuses_a_trade_without_price() -> None:
    """A trade with no price cannot be booked: parsing it raises, naming the field."""
    with pytest.raises(ValidationError, match=r"trade\.price"):
        parse_fill(trade(price=None))


def position(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "info": {},
        "symbol": "BTC/USDT:USDT",
        "timestamp": 1700000000000,
        "contracts": 0.5,
        "contractSize": 1,
        "side": "long",
        "entryPrice": 50000.5,
        "markPrice": 50100,
        "unrealizedPnl": 49.75,
        "leverage": 5,
    }
    row.update(fields)
    return row


def test_parse_position_long() -> None:
    """An open long position is normalised with its entry, mark and P&L."""
    assert parse_position(position()) == ExchangePosition(
        symbol="BTC/USDT:USDT",
        side=PositionSide.LONG,
        quantity=Decimal("0.5"),
        entry_price=Decimal("50000.5"),
        mark_price=Decimal("50100"),
        unrealized_pnl=Decimal("49.75"),
        leverage=Decimal("5"),
        ts=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
    )


@pytest.mark.parametrize("contracts", [0, 0.0, "0", None])
def test_flat_position_is_none(contracts: object) -> None:
    """A position with zero (or no) contracts is not a position."""
    assert parse_position(position(contracts=contracts)) is None


def test_position_side_from_sign_when_missing() -> None:
    """Where the side is missing, a negative size is a short of that absolute size."""
    pos = parse_position(position(side=None, contracts=-0.2))
    assert pos is not None
    assert (pos.side, pos.quantity) == (PositionSide.SHORT, Decimal("0.2"))


def test_position_quantity_is_contracts_times_contract_size() -> None:
    """Quantity is in base units: contracts x contractSize."""
    pos = parse_position(position(contracts=7, contractSize=0.01))
    assert pos is not None
    assert pos.quantity == Decimal("0.07")


def test_position_zero_entry_price_is_unknown() -> None:
    """An entry price of 0 (an empty venue field) is unknown, not 0."""
    pos = parse_position(position(entryPrice=0))
    assert pos is not None
    assert pos.entry_price is None


# -- execution_price -----------------------------------------------------------------
def reply(**fields: Any) -> ExchangeOrder:
    base: dict[str, Any] = {
        "symbol": "BTC/USDT:USDT",
        "exchange_order_id": "1001",
        "client_order_id": "td-main-p1-en-1",
    }
    base.update(fields)
    return ExchangeOrder(**base)


def fill(trade_id: str, price: str, amount: str) -> Fill:
    return Fill(trade_id=trade_id, price=Decimal(price), amount=Decimal(amount))


def test_execution_price_prefers_the_reply_average() -> None:
    """The reply's own average price is used first."""
    assert execution_price(reply(average_price=Decimal("50000"))) == Decimal("50000")


def test_execution_price_falls_back_to_weighted_fills() -> None:
    """Without an average, the fills give the quantity-weighted price."""
    fills = (fill("a", "100", "1"), fill("b", "110", "3"))
    assert execution_price(reply(), fills=fills) == Decimal("107.5")


def test_execution_price_counts_a_fill_seen_twice_once() -> None:
    """A fill present both in the reply and in the fetched fills is weighted once."""
    shared = fill("a", "100", "1")
    order = reply(fills=(shared,))
    assert execution_price(order, fills=(shared, fill("b", "110", "1"))) == Decimal("105")


def test_execution_price_then_fetched_order_then_position() -> None:
    """Then the re-fetched order's average, then the position's entry price."""
    fetched = reply(average_price=Decimal("101"))
    pos = ExchangePosition("BTC/USDT:USDT", PositionSide.LONG, Decimal("1"), Decimal("99"))
    assert execution_price(reply(), fetched=fetched, position=pos) == Decimal("101")
    assert execution_price(reply(), fetched=reply(), position=pos) == Decimal("99")


def test_execution_price_none_when_nothing_knows() -> None:
    """With no source knowing the price the answer is None, never 0 (failure mode 1); a
    fill priced 0 cannot even be built."""
    with pytest.raises(ValidationError):
        fill("z", "0", "1")
    flat = ExchangePosition("BTC/USDT:USDT", PositionSide.LONG, Decimal("1"), None)
    assert execution_price(reply(), fetched=reply(), fills=(), position=flat) is None
