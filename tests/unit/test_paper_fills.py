"""Paper venue execution: prices, slippage, fees, P&L and resting-order matching, exactly."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.models import PositionSide, Side
from core.order_model import OrderStatus, OrderType
from core.venue import (
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderRequest,
)
from exchanges.paper import PaperExchange

BTC = "BTC/USDT:USDT"
KPEPE = "KPEPE/USDT:USDT"
TAKER = D("0.00055")
MAKER = D("0.0002")


def req(cid: str, side: str, kind: str, amount: str, **kw: object) -> OrderRequest:
    """Shorthand for an order request on BTC."""
    extra = {k: D(str(v)) if k in ("price", "trigger_price") else v for k, v in kw.items()}
    return OrderRequest(cid, BTC, Side(side), OrderType(kind), D(amount), **extra)  # type: ignore[arg-type]


@pytest.fixture
def venue() -> PaperExchange:
    v = PaperExchange(balance=D(10000))
    v.set_price(BTC, "50000")
    return v


async def test_market_buy_pays_slippage_and_taker_fee(venue: PaperExchange) -> None:
    """A market buy fills at last price + 2 bps, rounded up to the tick, taker fee in USDT."""
    reply = await venue.create_order(req("b1", "buy", "MARKET", "0.01"))
    assert reply.status is OrderStatus.FILLED
    assert reply.average_price == D("50010.0")
    assert reply.filled == D("0.01")
    assert reply.fee == D("50010.0") * D("0.01") * TAKER
    assert reply.fee_currency == "USDT"
    assert venue.balance == D(10000) - D("50010.0") * D("0.01") * TAKER
    [fill] = reply.fills
    assert (fill.price, fill.amount, fill.is_maker) == (D("50010.0"), D("0.01"), False)
    assert (fill.exchange_order_id, fill.client_order_id, fill.side) == (
        reply.exchange_order_id,
        "b1",
        Side.BUY,
    )


async def test_market_sell_receives_less_rounded_down(venue: PaperExchange) -> None:
    """A market sell fills at last price - 2 bps, rounded down to the tick (against the taker)."""
    venue.set_price(BTC, "50000.3")
    reply = await venue.create_order(req("s1", "sell", "MARKET", "0.01"))
    # 50000.3 * 0.9998 = 49990.29994 -> 49990.2
    assert reply.average_price == D("49990.2")
    [position] = await venue.fetch_positions()
    assert (position.side, position.quantity, position.entry_price) == (
        PositionSide.SHORT,
        D("0.01"),
        D("49990.2"),
    )


async def test_round_trip_pnl_and_balance_exact() -> None:
    """Long open and close: balance moves by (exit - entry) * qty minus both taker fees."""
    venue = PaperExchange(balance=D(1000), slippage_bps=D(0))
    venue.set_price(BTC, "40000")
    await venue.create_order(req("o", "buy", "MARKET", "0.02"))
    venue.set_price(BTC, "41000")
    await venue.create_order(req("c", "sell", "MARKET", "0.02", reduce_only=True))
    fees = D("40000") * D("0.02") * TAKER + D("41000") * D("0.02") * TAKER
    assert venue.balance == D(1000) + D("1000") * D("0.02") - fees
    assert await venue.fetch_positions() == []


async def test_short_pnl_has_no_leverage_factor() -> None:
    """A short gains (entry - exit) * qty: leverage never multiplies P&L."""
    venue = PaperExchange(balance=D(1000), slippage_bps=D(0), taker_fee=D(0), leverage=D(50))
    venue.set_price(BTC, "40000")
    await venue.create_order(req("o", "sell", "MARKET", "0.01"))
    venue.set_price(BTC, "38000")
    await venue.create_order(req("c", "buy", "MARKET", "0.01", reduce_only=True))
    assert venue.balance == D(1000) + D(20)


async def test_partial_close_realises_only_the_part_closed() -> None:
    """Closing half a long realises half the gain and keeps the entry price of the rest."""
    venue = PaperExchange(balance=D(1000), slippage_bps=D(0), taker_fee=D(0))
    venue.set_price(BTC, "40000")
    await venue.create_order(req("o", "buy", "MARKET", "0.02"))
    venue.set_price(BTC, "42000")
    await venue.create_order(req("c", "sell", "MARKET", "0.01", reduce_only=True))
    assert venue.balance == D(1020)
    [position] = await venue.fetch_positions()
    assert (position.quantity, position.entry_price) == (D("0.01"), D("40000"))


async def test_adding_to_a_position_averages_the_entry() -> None:
    """A second buy moves the entry to the quantity-weighted average."""
    venue = PaperExchange(slippage_bps=D(0))
    venue.set_price(BTC, "40000")
    await venue.create_order(req("a", "buy", "MARKET", "0.01"))
    venue.set_price(BTC, "43000")
    await venue.create_order(req("b", "buy", "MARKET", "0.02"))
    [position] = await venue.fetch_positions()
    assert (position.quantity, position.entry_price) == (D("0.03"), D("42000"))


async def test_oversized_opposite_order_flips_the_position() -> None:
    """One-way mode: selling 0.03 against a 0.01 long closes it and opens a 0.02 short."""
    venue = PaperExchange(slippage_bps=D(0), taker_fee=D(0))
    venue.set_price(BTC, "40000")
    await venue.create_order(req("a", "buy", "MARKET", "0.01"))
    venue.set_price(BTC, "41000")
    await venue.create_order(req("b", "sell", "MARKET", "0.03"))
    [position] = await venue.fetch_positions()
    assert (position.side, position.quantity, position.entry_price) == (
        PositionSide.SHORT,
        D("0.02"),
        D("41000"),
    )
    assert venue.balance == D(10000) + D(10)


async def test_resting_limit_buy_fills_at_limit_with_maker_fee(venue: PaperExchange) -> None:
    """A buy limit rests above nothing, then fills at its limit (not the lower tick) as maker."""
    placed = await venue.create_order(req("l", "buy", "LIMIT", "0.01", price="49000"))
    assert placed.status is OrderStatus.NEW
    assert venue.set_price(BTC, "49000.1") == ()
    [changed] = venue.set_price(BTC, "48500")
    assert changed.status is OrderStatus.FILLED
    assert changed.average_price == D("49000")
    assert changed.fee == D("49000") * D("0.01") * MAKER
    assert changed.fills[0].is_maker is True


async def test_resting_limit_sell_fills_when_price_reaches_it(venue: PaperExchange) -> None:
    """A sell limit fills when the price is at or above the limit."""
    await venue.create_order(req("l", "sell", "LIMIT", "0.01", price="51000"))
    assert venue.set_price(BTC, "50999.9") == ()
    [changed] = venue.set_price(BTC, "51000")
    assert (changed.status, changed.average_price) == (OrderStatus.FILLED, D("51000"))


async def test_marketable_limit_takes_at_market_never_worse_than_limit(
    venue: PaperExchange,
) -> None:
    """A buy limit above the market fills at once at the market (+slippage) as taker."""
    reply = await venue.create_order(req("l", "buy", "LIMIT", "0.01", price="50005"))
    assert reply.status is OrderStatus.FILLED
    # market + slippage would be 50010.0, capped at the limit
    assert reply.average_price == D("50005")
    assert reply.fills[0].is_maker is False


async def test_stop_sell_gap_fills_at_tick_price_not_stop(venue: PaperExchange) -> None:
    """A sell stop gapped through fills at the gap's price minus slippage, taker fee."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    await venue.create_order(
        req("sl", "sell", "STOP_MARKET", "0.01", trigger_price="49000", reduce_only=True)
    )
    assert venue.set_price(BTC, "49000.1") == ()
    [stop] = venue.set_price(BTC, "48000")
    expected = D("48000") * (1 - D("0.0002"))  # 47990.4, on the tick
    assert (stop.status, stop.average_price) == (OrderStatus.FILLED, expected)
    assert stop.fee == expected * D("0.01") * TAKER
    assert await venue.fetch_positions() == []


async def test_stop_buy_fires_when_price_rises_to_trigger(venue: PaperExchange) -> None:
    """A buy stop fires at price >= trigger and fills at that price plus slippage."""
    await venue.create_order(req("e", "sell", "MARKET", "0.01"))
    await venue.create_order(
        req("sl", "buy", "STOP_MARKET", "0.01", trigger_price="51000", reduce_only=True)
    )
    assert venue.set_price(BTC, "50999.9") == ()
    [stop] = venue.set_price(BTC, "51000")
    assert stop.average_price == D("51010.2")


async def test_take_profit_sell_fires_on_rise_and_buy_on_fall(venue: PaperExchange) -> None:
    """Take-profit: a sell fires at price >= trigger, a buy at price <= trigger."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    await venue.create_order(
        req("tp", "sell", "TAKE_PROFIT_MARKET", "0.01", trigger_price="52000", reduce_only=True)
    )
    assert venue.set_price(BTC, "51999.9") == ()
    [tp] = venue.set_price(BTC, "52000")
    assert tp.status is OrderStatus.FILLED
    await venue.create_order(req("e2", "sell", "MARKET", "0.01"))
    await venue.create_order(
        req("tp2", "buy", "TAKE_PROFIT_MARKET", "0.01", trigger_price="51000", reduce_only=True)
    )
    assert venue.set_price(BTC, "51000.1") == ()
    [tp2] = venue.set_price(BTC, "50990")
    assert (tp2.status, tp2.average_price) == (OrderStatus.FILLED, D("51000.2"))


async def test_stop_limit_becomes_a_resting_limit_when_gapped(venue: PaperExchange) -> None:
    """A sell stop-limit gapped below its limit rests as a limit and fills there later."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    await venue.create_order(
        req("sl", "sell", "STOP_LIMIT", "0.01", trigger_price="49000", price="48900",
            reduce_only=True)
    )  # fmt: skip
    [triggered] = venue.set_price(BTC, "48000")
    assert (triggered.status, triggered.raw["triggered"]) == (OrderStatus.NEW, True)
    [filled] = venue.set_price(BTC, "48900")
    assert (filled.status, filled.average_price) == (OrderStatus.FILLED, D("48900"))


async def test_stop_that_would_trigger_at_once_is_refused(venue: PaperExchange) -> None:
    """Like Bybit and Binance, a stop already through the price is rejected, not filled."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    with pytest.raises(InvalidOrder, match="would trigger immediately"):
        await venue.create_order(
            req("sl", "sell", "STOP_MARKET", "0.01", trigger_price="50000", reduce_only=True)
        )


async def test_resting_orders_fire_in_placement_order(venue: PaperExchange) -> None:
    """Two reduce-only stops gapped on one tick: the older fills, the newer is cancelled."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    await venue.create_order(
        req("old", "sell", "STOP_MARKET", "0.01", trigger_price="49000", reduce_only=True)
    )
    await venue.create_order(
        req("new", "sell", "STOP_MARKET", "0.01", trigger_price="49500", reduce_only=True)
    )
    changed = {o.client_order_id: o for o in venue.set_price(BTC, "48000")}
    assert changed["old"].status is OrderStatus.FILLED
    assert changed["new"].status is OrderStatus.CANCELLED
    assert changed["new"].filled == 0


async def test_ioc_limit_not_marketable_is_cancelled(venue: PaperExchange) -> None:
    """An IOC limit that cannot fill now is cancelled instead of resting."""
    reply = await venue.create_order(
        req("i", "buy", "LIMIT", "0.01", price="49000", time_in_force="IOC")
    )
    assert (reply.status, reply.filled) == (OrderStatus.CANCELLED, D(0))
    assert await venue.fetch_open_orders() == []


async def test_post_only_that_would_take_is_refused(venue: PaperExchange) -> None:
    """A post-only limit through the market is rejected (Binance GTX behaviour)."""
    with pytest.raises(InvalidOrder, match="post-only"):
        await venue.create_order(
            req("p", "buy", "LIMIT", "0.01", price="50001", time_in_force="PO")
        )


async def test_margin_check_refuses_oversized_order() -> None:
    """An order whose notional / leverage exceeds the free balance is InsufficientFunds."""
    venue = PaperExchange(balance=D(100), leverage=D(10))
    venue.set_price(BTC, "50000")
    await venue.create_order(req("ok", "buy", "MARKET", "0.019"))  # 95 margin
    with pytest.raises(InsufficientFunds):
        await venue.create_order(req("no", "buy", "MARKET", "0.002"))


async def test_market_order_without_any_price_is_transient() -> None:
    """Before the first tick a market order fails with a retryable ExchangeUnavailable."""
    venue = PaperExchange()
    with pytest.raises(ExchangeUnavailable):
        await venue.create_order(req("m", "buy", "MARKET", "0.01"))
    with pytest.raises(ExchangeUnavailable):
        await venue.fetch_price(BTC)


async def test_fetch_price_returns_last_tick(venue: PaperExchange) -> None:
    """fetch_price gives the last price set, resolving a bare id."""
    venue.set_price("BTCUSDT", "50100.5")
    tick = await venue.fetch_price("BTCUSDT")
    assert (tick.symbol, tick.price) == (BTC, D("50100.5"))


async def test_resting_order_margin_counts_the_contract_size(tmp_path: Path) -> None:
    """On a JSON-defined market of 1000-unit contracts, a resting limit holds notional x
    contract size / leverage of margin, and that margin limits the next order."""
    path = tmp_path / "markets.json"
    kpepe = {"tick_size": "0.000001", "amount_step": "1", "min_amount": "1", "min_cost": "5",
             "contract_size": "1000"}  # fmt: skip
    path.write_text(json.dumps({KPEPE: kpepe}))
    venue = PaperExchange(balance=D(10000), leverage=D(10), markets_file=path)
    venue.set_price(KPEPE, "0.012")
    await venue.create_order(
        OrderRequest("l1", KPEPE, Side.BUY, OrderType.LIMIT, D(1000), price=D("0.01"))
    )
    balance = await venue.fetch_balance()
    assert (balance.used, balance.free) == (D(1000), D(9000))  # 1000 x 0.01 x 1000 / 10
    with pytest.raises(InsufficientFunds, match="free balance is 9000"):
        await venue.create_order(
            OrderRequest("l2", KPEPE, Side.BUY, OrderType.LIMIT, D(9500), price=D("0.01"))
        )
