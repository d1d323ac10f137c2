"""Paper venue fault modes: each reproduces a real exchange behaviour, deterministically."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from config.settings import load_settings
from core.errors import ValidationError
from core.models import Side
from core.order_model import OrderStatus, OrderType
from core.venue import OrderRejected, OrderRequest, RequestTimeout
from exchanges.paper import PaperExchange
from exchanges.paper_faults import PaperFaults

BTC = "BTC/USDT:USDT"


def req(cid: str, side: str, kind: str, amount: str, **kw: object) -> OrderRequest:
    """Shorthand for a BTC order request."""
    extra = {k: D(str(v)) if k in ("price", "trigger_price") else v for k, v in kw.items()}
    return OrderRequest(cid, BTC, Side(side), OrderType(kind), D(amount), **extra)  # type: ignore[arg-type]


class Clock:
    """A hand-driven clock for the venue."""

    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def venue_with(faults: dict[str, object], seed: int = 7, **kw: object) -> PaperExchange:
    v = PaperExchange(faults=faults, seed=seed, slippage_bps=D(0), **kw)  # type: ignore[arg-type]
    v.set_price(BTC, "50000")
    return v


async def stop_outcomes(seed: int) -> tuple[list[bool], list[str]]:
    """Place 12 stops under reject_stop=0.5: True where the venue accepted one, and the
    client ids of the orders then open."""
    venue = venue_with({"reject_stop": "0.5"}, seed=seed)
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    outcomes = []
    for i in range(12):
        try:
            await venue.create_order(
                req(f"s{i}", "sell", "STOP_MARKET", "0.01", trigger_price="40000", reduce_only=True)
            )
            outcomes.append(True)
        except OrderRejected:
            outcomes.append(False)
    open_ids = [str(o.client_order_id) for o in await venue.fetch_open_orders()]
    return outcomes, open_ids


async def test_reject_stop_is_seeded_and_leaves_no_order() -> None:
    """reject_stop=0.5 refuses some stops, the same ones for the same seed, others not;
    a refused stop leaves no order on the venue."""
    (first, first_open), (again, _), (other, _) = [await stop_outcomes(s) for s in (1, 1, 2)]
    assert first == again
    assert first != other
    assert True in first and False in first
    assert first_open == [f"s{i}" for i, accepted in enumerate(first) if accepted]


async def test_reject_stop_certain_spares_entries() -> None:
    """reject_stop=1 refuses every stop but no market entry; a refused id stays unused."""
    venue = venue_with({"reject_stop": 1})
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    with pytest.raises(OrderRejected, match="reject_stop"):
        await venue.create_order(
            req("sl", "sell", "STOP_MARKET", "0.01", trigger_price="49000", reduce_only=True)
        )
    assert await venue.fetch_open_orders() == []
    venue.faults = {}
    placed = await venue.create_order(
        req("sl", "sell", "STOP_MARKET", "0.01", trigger_price="49000", reduce_only=True)
    )
    assert placed.status is OrderStatus.NEW


async def test_reject_entry_spares_reduce_only() -> None:
    """reject_entry=1 refuses opening orders but lets a reduce-only close through."""
    venue = venue_with({})
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    venue.faults = {"reject_entry": "1"}
    with pytest.raises(OrderRejected, match="reject_entry"):
        await venue.create_order(req("e2", "buy", "MARKET", "0.01"))
    closed = await venue.create_order(req("x", "sell", "MARKET", "0.01", reduce_only=True))
    assert closed.status is OrderStatus.FILLED


async def test_timeout_after_accept_order_exists_on_the_venue() -> None:
    """The call raises RequestTimeout, yet the order filled and is found by client id."""
    venue = venue_with({"timeout_after_accept": 1})
    with pytest.raises(RequestTimeout):
        await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    found = await venue.fetch_order(BTC, client_order_id="e")
    assert (found.status, found.filled) == (OrderStatus.FILLED, D("0.01"))
    [position] = await venue.fetch_positions()
    assert position.quantity == D("0.01")


async def test_no_average_price_reply_is_an_acknowledgement() -> None:
    """The reply says NEW with no fill and no average; the venue has it FILLED at 50000."""
    venue = venue_with({"no_average_price": 1})
    reply = await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    assert (reply.status, reply.average_price, reply.filled, reply.fills) == (
        OrderStatus.NEW,
        None,
        D(0),
        (),
    )
    found = await venue.fetch_order(BTC, client_order_id="e")
    assert (found.status, found.average_price) == (OrderStatus.FILLED, D(50000))


async def test_no_status_reply_has_status_none() -> None:
    """The reply's status is None while everything else is true."""
    venue = venue_with({"no_status": 1})
    reply = await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    assert (reply.status, reply.average_price) == (None, D(50000))


async def test_id_only_reply_carries_only_ids() -> None:
    """The reply has the exchange id and client id and nothing else."""
    venue = venue_with({"id_only_reply": 1})
    reply = await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    assert reply.client_order_id == "e"
    assert reply.exchange_order_id is not None
    assert (reply.status, reply.filled, reply.average_price, reply.amount) == (
        None,
        None,
        None,
        None,
    )


async def test_position_lag_shows_changes_late() -> None:
    """With position_lag_s=5 a new position appears 5 s late and a closed one lingers 5 s."""
    clock = Clock()
    venue = venue_with({"position_lag_s": 5}, now=clock)
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    assert await venue.fetch_positions() == []
    clock.advance(4.9)
    assert await venue.fetch_positions() == []
    clock.advance(0.1)
    [position] = await venue.fetch_positions([BTC])
    assert position.quantity == D("0.01")
    await venue.create_order(req("x", "sell", "MARKET", "0.01", reduce_only=True))
    assert len(await venue.fetch_positions()) == 1
    clock.advance(5)
    assert await venue.fetch_positions() == []


async def test_latency_delays_every_call() -> None:
    """latency_ms=60 makes each call take at least 60 ms."""
    venue = venue_with({"latency_ms": 60})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await venue.fetch_price(BTC)
    await venue.fetch_open_orders()
    assert loop.time() - started >= 0.12


async def test_partial_fill_fills_a_fraction_per_tick() -> None:
    """partial_fill=0.5: the entry reply is PARTIALLY_FILLED; the next tick fills the rest."""
    venue = venue_with({"partial_fill": "0.5"})
    reply = await venue.create_order(req("e", "buy", "MARKET", "0.004"))
    assert (reply.status, reply.filled, reply.remaining) == (
        OrderStatus.PARTIALLY_FILLED,
        D("0.002"),
        D("0.002"),
    )
    assert [o.client_order_id for o in await venue.fetch_open_orders()] == ["e"]
    [done] = venue.set_price(BTC, "50100")
    assert (done.status, done.filled) == (OrderStatus.FILLED, D("0.004"))
    assert [f.price for f in done.fills] == [D(50000), D(50100)]
    assert done.average_price == D(50050)


def test_fault_values_are_validated() -> None:
    """Unknown names and probabilities above 1 are ValidationErrors."""
    with pytest.raises(ValidationError, match="unknown fault"):
        PaperFaults.parse({"explode": 1})
    with pytest.raises(ValidationError, match="<= 1"):
        PaperFaults.parse({"reject_stop": "1.5"})
    assert PaperFaults.parse({"latency_ms": "250"}).latency_ms == D(250)


def test_faults_come_from_settings(tmp_path: Path) -> None:
    """TRADER_PAPER_FAULTS reaches the venue built from settings, state under paper_dir."""
    settings = load_settings(state_dir=tmp_path, paper_faults="reject_stop=1,position_lag_s=3")
    venue = PaperExchange.from_settings(settings)
    try:
        assert (venue.faults.reject_stop, venue.faults.position_lag_s) == (D(1), D(3))
        assert (settings.paper_dir / "snapshot.json").exists()
    finally:
        venue.close()


async def test_every_call_suspends_once_as_a_real_venues_does_without_a_latency_fault() -> None:
    """With no latency fault a venue call still yields to the loop: work made ready before
    it (another fired order's submit) runs before the call returns, not after its follow-up."""
    venue = PaperExchange(None)
    venue.set_price(BTC, "50000")
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await venue.create_order(req("e1", "buy", "MARKET", "0.01"))
    ran.append("call returned")
    await task
    assert ran == ["other", "call returned"]
