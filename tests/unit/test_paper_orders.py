"""Paper venue order handling: validation like a real venue, ids, lookups, cancel, amend,
markets."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.errors import ValidationError
from core.models import Market, Side
from core.order_model import OrderStatus, OrderType
from core.venue import ExchangeAdapter, InvalidOrder, OrderNotFound, OrderRequest
from exchanges.paper import PaperExchange

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def req(
    cid: str, side: str, kind: str, amount: str, symbol: str = BTC, **kw: object
) -> OrderRequest:
    """Shorthand for an order request."""
    extra = {k: D(str(v)) if k in ("price", "trigger_price") else v for k, v in kw.items()}
    return OrderRequest(cid, symbol, Side(side), OrderType(kind), D(amount), **extra)  # type: ignore[arg-type]


@pytest.fixture
def venue() -> PaperExchange:
    v = PaperExchange()
    v.set_price(BTC, "50000")
    v.set_price(ETH, "3000")
    return v


def test_paper_exchange_satisfies_the_adapter_protocol(venue: PaperExchange) -> None:
    """PaperExchange is an ExchangeAdapter named 'paper'."""
    assert isinstance(venue, ExchangeAdapter)
    assert venue.name == "paper"


@pytest.mark.parametrize(
    ("amount", "price", "message"),
    [
        ("0.0015", "49000", "not a multiple of the amount step"),
        ("0.0001", "49000", "not a multiple of the amount step"),
        ("0", "49000", "must be > 0"),
        ("0.001", "49000.05", "not a multiple of the tick size"),
        ("0.001", "-1", "must be > 0"),
        ("0.001", "4000", "below the minimum 5"),
    ],
)
async def test_orders_breaking_market_rules_are_invalid(
    venue: PaperExchange, amount: str, price: str, message: str
) -> None:
    """Off-step amount, off-tick price, zero size or value below 5 USDT: InvalidOrder."""
    with pytest.raises(InvalidOrder, match=message):
        await venue.create_order(req("x", "buy", "LIMIT", amount, price=price))
    assert await venue.fetch_open_orders() == []


async def test_amount_below_market_minimum_is_invalid() -> None:
    """An amount on the step but under the market's minimum quantity is refused."""
    market = Market("X/USDT:USDT", "XUSDT", "X", "USDT", D("0.1"), D("0.001"), D("0.01"), D(5))
    venue = PaperExchange(markets={market.symbol: market})
    venue.set_price("XUSDT", "1000")
    with pytest.raises(InvalidOrder, match=r"amount 0\.005 is below the minimum 0\.01"):
        await venue.create_order(req("x", "buy", "MARKET", "0.005", symbol="XUSDT"))
    placed = await venue.create_order(req("y", "buy", "MARKET", "0.01", symbol="XUSDT"))
    assert placed.filled == D("0.01")


async def test_limit_without_price_and_stop_without_trigger_are_invalid(
    venue: PaperExchange,
) -> None:
    """A limit needs a price and a stop needs a trigger price."""
    with pytest.raises(InvalidOrder, match="needs a price"):
        await venue.create_order(req("a", "buy", "LIMIT", "0.01"))
    with pytest.raises(InvalidOrder, match="needs a trigger price"):
        await venue.create_order(req("b", "buy", "STOP_MARKET", "0.01"))


async def test_trailing_stop_is_not_a_native_paper_order(venue: PaperExchange) -> None:
    """Trailing stops are emulated in-process, never sent: the venue refuses them."""
    with pytest.raises(InvalidOrder, match="not supported"):
        await venue.create_order(req("t", "sell", "TRAILING_STOP", "0.01", trigger_price="1"))


async def test_duplicate_client_order_id_is_invalid(venue: PaperExchange) -> None:
    """A client id already used (even by a finished order) is refused like a real venue."""
    await venue.create_order(req("dup", "buy", "MARKET", "0.01"))
    with pytest.raises(InvalidOrder, match="duplicate client order id"):
        await venue.create_order(req("dup", "sell", "MARKET", "0.01"))
    [position] = await venue.fetch_positions()
    assert position.quantity == D("0.01")


async def test_fetch_order_by_exchange_id_and_by_client_id(venue: PaperExchange) -> None:
    """The same order is found by its exchange id and by its client id."""
    placed = await venue.create_order(req("c1", "buy", "LIMIT", "0.01", price="49000"))
    by_id = await venue.fetch_order(BTC, exchange_order_id=placed.exchange_order_id)
    by_cid = await venue.fetch_order("BTCUSDT", client_order_id="c1")
    assert by_id == by_cid == placed
    with pytest.raises(OrderNotFound):
        await venue.fetch_order(BTC, client_order_id="nope")
    with pytest.raises(OrderNotFound):
        await venue.fetch_order(ETH, client_order_id="c1")


async def test_cancel_by_client_id_then_cancel_again_is_not_found(venue: PaperExchange) -> None:
    """Cancelling a resting order works once; a second cancel is OrderNotFound (too late)."""
    await venue.create_order(req("c1", "buy", "LIMIT", "0.01", price="49000"))
    cancelled = await venue.cancel_order(BTC, client_order_id="c1")
    assert cancelled.status is OrderStatus.CANCELLED
    assert await venue.fetch_open_orders(BTC) == []
    with pytest.raises(OrderNotFound, match="too late"):
        await venue.cancel_order(BTC, client_order_id="c1")
    assert venue.set_price(BTC, "48000") == ()


async def test_cancel_of_filled_or_unknown_order_is_not_found(venue: PaperExchange) -> None:
    """A filled order cannot be cancelled; an unknown id is not found."""
    filled = await venue.create_order(req("m", "buy", "MARKET", "0.01"))
    with pytest.raises(OrderNotFound):
        await venue.cancel_order(BTC, exchange_order_id=filled.exchange_order_id)
    with pytest.raises(OrderNotFound):
        await venue.cancel_order(BTC, exchange_order_id="po-999")


async def test_edit_moves_a_stop_and_checks_it_like_a_new_order(venue: PaperExchange) -> None:
    """Amending a stop's trigger keeps its id; a trigger through the price is refused."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    stop = await venue.create_order(
        req("sl", "sell", "STOP_MARKET", "0.01", trigger_price="49000", reduce_only=True)
    )
    assert stop.exchange_order_id is not None
    moved = await venue.edit_order(BTC, stop.exchange_order_id, trigger_price=D("49500"))
    assert (moved.exchange_order_id, moved.trigger_price) == (stop.exchange_order_id, D("49500"))
    with pytest.raises(InvalidOrder, match="would trigger immediately"):
        await venue.edit_order(BTC, stop.exchange_order_id, trigger_price=D("50500"))
    [fired] = venue.set_price(BTC, "49400")
    assert fired.status is OrderStatus.FILLED


async def test_edit_limit_through_the_market_executes(venue: PaperExchange) -> None:
    """Amending a buy limit above the market makes it take liquidity at once."""
    placed = await venue.create_order(req("l", "buy", "LIMIT", "0.01", price="49000"))
    assert placed.exchange_order_id is not None
    amended = await venue.edit_order(BTC, placed.exchange_order_id, amount=D("0.02"))
    assert (amended.amount, amended.status) == (D("0.02"), OrderStatus.NEW)
    taken = await venue.edit_order(BTC, placed.exchange_order_id, price=D("50100"))
    assert (taken.status, taken.filled, taken.average_price) == (
        OrderStatus.FILLED,
        D("0.02"),
        D("50010.0"),
    )
    with pytest.raises(OrderNotFound, match="too late"):
        await venue.edit_order(BTC, placed.exchange_order_id, price=D("49000"))


async def test_open_orders_and_fills_are_filtered(venue: PaperExchange) -> None:
    """Open orders by symbol; fills by symbol, by order and by time."""
    await venue.create_order(req("b1", "buy", "LIMIT", "0.01", price="49000"))
    await venue.create_order(req("e1", "buy", "LIMIT", "0.1", symbol=ETH, price="2900"))
    m = await venue.create_order(req("m", "buy", "MARKET", "0.01"))
    assert [o.client_order_id for o in await venue.fetch_open_orders()] == ["b1", "e1"]
    assert [o.client_order_id for o in await venue.fetch_open_orders(ETH)] == ["e1"]
    venue.set_price(ETH, "2900")
    btc_fills = await venue.fetch_fills(BTC)
    assert [f.client_order_id for f in btc_fills] == ["m"]
    eth_fills = await venue.fetch_fills(ETH)
    assert [(f.client_order_id, f.symbol, f.side) for f in eth_fills] == [("e1", ETH, Side.BUY)]
    assert await venue.fetch_fills(BTC, exchange_order_id=m.exchange_order_id) == btc_fills
    assert await venue.fetch_fills(BTC, since=btc_fills[0].ts) == btc_fills
    later = btc_fills[0].ts.replace(year=btc_fills[0].ts.year + 1)
    assert await venue.fetch_fills(BTC, since=later) == []
    assert len({f.trade_id for f in [*btc_fills, *eth_fills]}) == 2


async def test_market_resolves_bare_id_and_refuses_spot(venue: PaperExchange) -> None:
    """BTCUSDT resolves to the perpetual; a spot symbol never resolves (failure mode 13)."""
    markets = await venue.load_markets()
    assert venue.market("BTCUSDT") == markets[BTC]
    assert markets[BTC].tick_size == D("0.1")
    assert (markets[BTC].amount_step, markets[BTC].min_amount, markets[BTC].min_cost) == (
        D("0.001"),
        D("0.001"),
        D(5),
    )
    assert {BTC, ETH, "SOL/USDT:USDT", "MNT/USDT:USDT"} <= set(markets)
    with pytest.raises(InvalidOrder, match="did you mean BTC/USDT:USDT"):
        venue.market("BTC/USDT")


def test_markets_file_overrides_and_extends(tmp_path: Path) -> None:
    """A JSON file changes a built-in market's fields and adds a new market."""
    path = tmp_path / "markets.json"
    path.write_text(
        json.dumps(
            {
                BTC: {"tick_size": "0.5"},
                "PEPE/USDT:USDT": {"tick_size": "0.0000001", "amount_step": "100", "min_cost": 5},
            }
        )
    )
    venue = PaperExchange(markets_file=path)
    assert venue.market(BTC).tick_size == D("0.5")
    assert venue.market(BTC).amount_step == D("0.001")
    pepe = venue.market("PEPEUSDT")
    assert (pepe.symbol, pepe.amount_step, pepe.min_cost) == ("PEPE/USDT:USDT", D(100), D(5))


def test_bad_markets_file_names_the_problem(tmp_path: Path) -> None:
    """A new market without tick size is a ValidationError naming it."""
    path = tmp_path / "markets.json"
    path.write_text(json.dumps([{"symbol": "X/USDT:USDT", "amount_step": "1"}]))
    with pytest.raises(ValidationError, match=r"X/USDT:USDT.*tick_size"):
        PaperExchange(markets_file=path)


async def test_free_balance_subtracts_margin_in_use(venue: PaperExchange) -> None:
    """Free USDT is the balance minus position margin (notional / leverage 10)."""
    await venue.create_order(req("m", "buy", "MARKET", "0.01"))
    fee = D("50010.0") * D("0.01") * D("0.00055")
    margin = D("50010.0") * D("0.01") / 10
    assert await venue.fetch_free_balance("USDT") == D(10000) - fee - margin
    assert await venue.fetch_free_balance("BTC") == 0
