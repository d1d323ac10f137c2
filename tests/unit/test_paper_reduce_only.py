"""Paper venue reduce-only rules: never opens or grows a position."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from core.models import Side
from core.order_model import OrderStatus, OrderType
from core.venue import InvalidOrder, OrderRequest
from exchanges.paper import PaperExchange

BTC = "BTC/USDT:USDT"


def req(cid: str, side: str, kind: str, amount: str, **kw: object) -> OrderRequest:
    """Shorthand for a BTC order request."""
    extra = {k: D(str(v)) if k in ("price", "trigger_price") else v for k, v in kw.items()}
    return OrderRequest(cid, BTC, Side(side), OrderType(kind), D(amount), **extra)  # type: ignore[arg-type]


@pytest.fixture
def venue() -> PaperExchange:
    v = PaperExchange(slippage_bps=D(0))
    v.set_price(BTC, "50000")
    return v


async def test_reduce_only_without_position_is_invalid(venue: PaperExchange) -> None:
    """A reduce-only order with no position at all is refused."""
    with pytest.raises(InvalidOrder, match="no position to reduce"):
        await venue.create_order(req("r", "sell", "MARKET", "0.01", reduce_only=True))
    assert await venue.fetch_positions() == []


async def test_reduce_only_on_the_same_side_is_invalid(venue: PaperExchange) -> None:
    """A reduce-only buy against a long (the rollback side mix-up, failure mode 4) is refused."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    with pytest.raises(InvalidOrder, match="no position to reduce"):
        await venue.create_order(req("r", "buy", "MARKET", "0.01", reduce_only=True))
    with pytest.raises(InvalidOrder, match="no position to reduce"):
        await venue.create_order(
            req("s", "buy", "STOP_MARKET", "0.01", trigger_price="51000", reduce_only=True)
        )
    [position] = await venue.fetch_positions()
    assert position.quantity == D("0.01")


async def test_reduce_only_fill_is_capped_at_the_position(venue: PaperExchange) -> None:
    """A reduce-only sell larger than the long closes it exactly and never opens a short."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    reply = await venue.create_order(req("r", "sell", "MARKET", "0.05", reduce_only=True))
    assert (reply.status, reply.filled, reply.amount) == (OrderStatus.FILLED, D("0.01"), D("0.01"))
    assert await venue.fetch_positions() == []


async def test_reduce_only_is_exempt_from_min_order_value(venue: PaperExchange) -> None:
    """A tiny reduce-only close below 5 USDT is allowed, as on Bybit, so dust can be closed."""
    venue.set_price(BTC, "1000")
    await venue.create_order(req("e", "buy", "MARKET", "0.005"))
    reply = await venue.create_order(req("r", "sell", "MARKET", "0.001", reduce_only=True))
    assert reply.filled == D("0.001")


async def test_resting_reduce_only_stop_is_cancelled_when_position_is_gone(
    venue: PaperExchange,
) -> None:
    """A stop whose position was closed meanwhile is cancelled when it would fire."""
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    await venue.create_order(
        req("sl", "sell", "STOP_MARKET", "0.01", trigger_price="49000", reduce_only=True)
    )
    await venue.create_order(req("x", "sell", "MARKET", "0.01", reduce_only=True))
    [stop] = venue.set_price(BTC, "48000")
    assert (stop.status, stop.filled, stop.raw["reason"]) == (
        OrderStatus.CANCELLED,
        D(0),
        "reduce-only: no position to reduce",
    )
    assert await venue.fetch_positions() == []


async def test_resting_reduce_only_stop_fills_only_what_remains(venue: PaperExchange) -> None:
    """A stop for 0.02 after half the position was closed fills 0.01 and leaves it flat."""
    await venue.create_order(req("e", "buy", "MARKET", "0.02"))
    await venue.create_order(
        req("sl", "sell", "STOP_MARKET", "0.02", trigger_price="49000", reduce_only=True)
    )
    await venue.create_order(req("x", "sell", "MARKET", "0.01", reduce_only=True))
    [stop] = venue.set_price(BTC, "48999")
    assert (stop.status, stop.filled) == (OrderStatus.FILLED, D("0.01"))
    assert await venue.fetch_positions() == []
