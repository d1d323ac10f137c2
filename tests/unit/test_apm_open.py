"""The atomic open on the paper venue: the happy path and failure modes 1-7, 14
(docs/architecture.md)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from core.errors import PositionConflict, ValidationError
from core.models import Side
from core.order_model import OrderStatus, OrderType
from core.position_model import PositionStatus
from core.records import RecordKind
from tests.trading_harness import BTC, build_stack, long_signal, short_signal


async def test_happy_path_records_entry_trade_and_stop_from_the_fill() -> None:
    """A long opens active: MARKET entry FILLED, STOP_MARKET NEW at fill × 0.98, entry trade."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ACTIVE == position.status
    assert Decimal("0.1") == position.quantity
    fill = position.entry_price
    assert fill is not None and fill > Decimal(50000)  # slippage: a buy pays up
    expected_stop = (fill * Decimal("0.98")).quantize(Decimal("0.1"), rounding="ROUND_DOWN")
    assert expected_stop == position.stop_loss_price
    orders = list(stack.latest_orders().values())
    market = [o for o in orders if o["type"] == "MARKET"]
    stops = [o for o in orders if o["type"].startswith("STOP")]
    assert [("FILLED", "entry", position.id)] == [
        (o["status"], o["purpose"], o["position_id"]) for o in market
    ]
    assert [("NEW", "sell", True, expected_stop)] == [
        (o["status"], o["side"], o["reduce_only"], o["trigger_price"]) for o in stops
    ]
    trades = stack.rows(RecordKind.TRADE)
    assert [("buy", "MARKET", Decimal("0.1"), fill)] == [
        (t["side"], t["order_type"], t["executed_qty"], t["price"]) for t in trades
    ]
    assert 1 == len(await stack.venue_stops())


async def test_no_average_price_reply_still_records_the_real_fill() -> None:
    """Failure mode 1: an entry reply without average price never yields entry price 0."""
    stack = build_stack({"no_average_price": 1})
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ACTIVE == position.status
    venue_fill = (await stack.venue.fetch_fills(BTC))[0].price
    assert venue_fill == position.entry_price
    assert Decimal(0) != position.entry_price


@pytest.mark.parametrize("fault", ["id_only_reply", "no_status"])
async def test_partial_replies_are_completed_by_lookup(fault: str) -> None:
    """An id-only or status-less entry reply is completed by fetching the order."""
    stack = build_stack({fault: 1})
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ACTIVE == position.status
    assert (await stack.venue.fetch_fills(BTC))[0].price == position.entry_price


async def test_stop_comes_from_fill_not_from_signal_price() -> None:
    """Failure mode 2: a signal carrying a stale price does not move the stop off the fill."""
    stack = build_stack()
    stack.tick(BTC, "52000")
    position = await stack.apm.open_position_atomic(
        long_signal(price=Decimal("40000"), stop_loss_percent=Decimal("1"))
    )
    assert position.entry_price is not None and position.entry_price > Decimal(52000)
    assert position.stop_loss_price == (position.entry_price * Decimal("0.99")).quantize(
        Decimal("0.1"), rounding="ROUND_DOWN"
    )


async def test_long_stop_below_and_short_stop_above_entry() -> None:
    """Failure mode 3: a long's stop is a sell below entry; a short's a buy above."""
    stack = build_stack()
    long = await stack.apm.open_position_atomic(long_signal())
    short = await stack.apm.open_position_atomic(short_signal(symbol="ETH/USDT:USDT", amount="1"))
    assert long.stop_loss_price is not None and long.entry_price is not None
    assert short.stop_loss_price is not None and short.entry_price is not None
    assert long.stop_loss_price < long.entry_price
    assert short.stop_loss_price > short.entry_price
    sides = {
        o["symbol"]: o["side"]
        for o in stack.latest_orders().values()
        if o["purpose"] == "stop_loss"
    }
    assert {BTC: "sell", "ETH/USDT:USDT": "buy"} == sides


async def test_absolute_stop_on_the_wrong_side_is_rejected_before_sending() -> None:
    """A long with a stop above the price is refused, naming the field; nothing is sent."""
    stack = build_stack()
    with pytest.raises(ValidationError) as err:
        await stack.apm.open_position_atomic(long_signal(stop_loss_price=Decimal("51000")))
    assert "stop_loss_price" == err.value.field
    assert [] == list(await stack.venue.fetch_open_orders())
    assert [] == list(await stack.venue.fetch_fills(BTC))


@pytest.mark.parametrize("side", ["long", "short"])
async def test_rejected_stop_rolls_back_with_the_opposite_side(side: str) -> None:
    """Failure mode 4: with every stop rejected, the rollback closes on the exit side and
    the venue ends flat, the position rolled_back with a reason."""
    stack = build_stack({"reject_stop": 1})
    signal = long_signal() if side == "long" else short_signal()
    position = await stack.apm.open_position_atomic(signal)
    assert PositionStatus.ROLLED_BACK == position.status
    assert "stop-loss could not be placed" == position.exit_reason
    assert await stack.venue_position() is None
    rollbacks = [o for o in stack.latest_orders().values() if o["purpose"] == "rollback"]
    entry_side = Side.BUY if side == "long" else Side.SELL
    assert [(entry_side.opposite.value, "FILLED", True)] == [
        (o["side"], o["status"], o["reduce_only"]) for o in rollbacks
    ]
    exit_trades = [t for t in stack.rows(RecordKind.TRADE) if t["realized_pnl"] is not None]
    assert [entry_side.opposite.value] == [t["side"] for t in exit_trades]
    assert 3 == len([o for o in stack.latest_orders().values() if o["purpose"] == "stop_loss"])


async def test_rollback_closes_what_filled_even_when_the_reply_said_nothing() -> None:
    """Failure mode 5: an id-only entry reply and a rejected stop still close the full fill."""
    stack = build_stack({"reject_stop": 1, "id_only_reply": 1})
    position = await stack.apm.open_position_atomic(long_signal("0.25"))
    assert PositionStatus.ROLLED_BACK == position.status
    rollback = [o for o in stack.latest_orders().values() if o["purpose"] == "rollback"]
    assert [Decimal("0.25")] == [o["filled"] for o in rollback]
    assert await stack.venue_position() is None


async def test_lagging_positions_endpoint_causes_no_rollback() -> None:
    """Failure mode 6: a positions endpoint 5 s late does not make a live entry look failed."""
    stack = build_stack({"position_lag_s": 5})
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ACTIVE == position.status
    assert [] == list(await stack.venue.fetch_positions([BTC]))  # still lagging
    assert 1 == len(await stack.venue_stops())


async def test_two_concurrent_opens_on_one_market_make_one_position() -> None:
    """Failure mode 7: racing opens on the same market: one position, one refusal."""
    stack = build_stack({"latency_ms": 20})
    results = await asyncio.gather(
        stack.apm.open_position_atomic(long_signal()),
        stack.apm.open_position_atomic(long_signal()),
        return_exceptions=True,
    )
    statuses = sorted(
        type(r).__name__ if isinstance(r, Exception) else r.status.value for r in results
    )
    assert ["PositionConflict", "active"] == statuses
    venue = await stack.venue_position()
    assert venue is not None and Decimal("0.1") == abs(venue.qty)


async def test_timeout_after_accept_creates_no_duplicate_entry() -> None:
    """Failure mode 14: a submit that timed out after the venue accepted it is found by
    client id; the position is active and the venue saw exactly one entry."""
    stack = build_stack({"timeout_after_accept": 1})
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ACTIVE == position.status
    fills = await stack.venue.fetch_fills(BTC)
    assert 1 == len({f.client_order_id for f in fills if f.side is Side.BUY})
    venue = await stack.venue_position()
    assert venue is not None and Decimal("0.1") == abs(venue.qty)
    assert 1 == len(await stack.venue_stops())


async def test_rejected_entry_fails_without_exposure() -> None:
    """A rejected entry ends the position failed with the venue's reason; nothing open."""
    stack = build_stack({"reject_entry": 1})
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.FAILED == position.status
    assert position.exit_reason is not None and position.exit_reason.startswith("entry refused")
    assert await stack.venue_position() is None
    assert stack.book.on_symbol(BTC) is None


async def test_unknown_symbol_and_bare_spot_id_are_refused() -> None:
    """An unknown symbol is a validation error naming the symbol; nothing is sent."""
    stack = build_stack()
    with pytest.raises(ValidationError) as err:
        await stack.apm.open_position_atomic(long_signal(symbol="NOPE/USDT:USDT"))
    assert "symbol" == err.value.field


async def test_amount_below_market_minimum_is_refused() -> None:
    """Failure mode 16: an amount under the market's minimum is refused before sending."""
    stack = build_stack()
    with pytest.raises(ValidationError) as err:
        await stack.apm.open_position_atomic(long_signal("0.0001"))
    assert "amount" == err.value.field
    assert "minimum" in err.value.rule


async def test_a_second_open_while_one_is_active_is_refused() -> None:
    """One open position per market: a second signal conflicts and changes nothing."""
    stack = build_stack()
    await stack.apm.open_position_atomic(long_signal())
    with pytest.raises(PositionConflict):
        await stack.apm.open_position_atomic(short_signal())
    venue = await stack.venue_position()
    assert venue is not None and Decimal("0.1") == venue.qty


async def test_take_profit_is_placed_reduce_only_from_the_fill() -> None:
    """A take-profit percent becomes a reduce-only TAKE_PROFIT_MARKET above a long's fill."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal(take_profit_percent=Decimal("4")))
    tps = [o for o in stack.latest_orders().values() if o["type"] == "TAKE_PROFIT_MARKET"]
    assert 1 == len(tps)
    assert position.entry_price is not None
    assert tps[0]["trigger_price"] > position.entry_price
    assert (True, "sell", OrderStatus.NEW.value) == (
        tps[0]["reduce_only"],
        tps[0]["side"],
        tps[0]["status"],
    )
    assert tps[0]["trigger_price"] == position.take_profit_price


async def test_partial_entry_is_protected_for_what_filled_then_resized() -> None:
    """A market entry filling in parts gets a stop for the filled part, resized as it grows."""
    stack = build_stack({"partial_fill": "0.5"})
    position = await stack.apm.open_position_atomic(long_signal("0.2"))
    assert PositionStatus.ACTIVE == position.status
    assert Decimal("0.1") == position.quantity
    stops = await stack.venue_stops()
    assert [Decimal("0.1")] == [s.amount for s in stops]
    stack.tick(BTC, "50010")
    await stack.lifecycle.sync(position.id)
    live = stack.book.get(position.id)
    assert live is not None and Decimal("0.2") == live.position.quantity
    stops = await stack.venue_stops()
    assert [Decimal("0.2")] == [s.amount for s in stops]


def test_order_type_constants_match_the_schema() -> None:
    """The types the audit queries filter on are spelled as in the schema."""
    assert ("MARKET", "STOP_MARKET") == (OrderType.MARKET.value, OrderType.STOP_MARKET.value)


async def test_open_racing_sync_and_reconcile_makes_one_position_and_one_stop() -> None:
    """Failure mode 7: sync passes and reconciliations running while an open is in flight
    (entry filled, stop not yet placed) neither adopt a second position nor protect the
    opening one a second time: one position, one entry fill, one stop."""
    stack = build_stack({"latency_ms": 3})
    opening = asyncio.create_task(stack.apm.open_position_atomic(long_signal()))

    async def hammer(work: Any) -> None:
        while not opening.done():
            await work()
            await asyncio.sleep(0)

    await asyncio.gather(
        opening,
        hammer(stack.lifecycle.sync_all),
        hammer(stack.reconciler.reconcile),
        *(hammer(lambda: stack.lifecycle.sync(1)) for _ in range(3)),
    )
    position = opening.result()
    await asyncio.gather(stack.lifecycle.sync_all(), stack.reconciler.reconcile())
    assert PositionStatus.ACTIVE == position.status
    assert [position.id] == [live.id for live in stack.book]
    assert 1 == len(await stack.venue.fetch_fills(BTC))
    assert [Decimal("0.1")] == [s.amount for s in await stack.venue_stops()]
    assert [Decimal("0.1")] == [t["executed_qty"] for t in stack.rows(RecordKind.TRADE)]
    assert Decimal("0.1") == stack.latest_position(position.id)["quantity"]
    kinds = {e["kind"] for e in stack.rows(RecordKind.EVENT)}
    assert set() == kinds & {"protecting", "adopted", "unknown_position", "orphan_cancelled"}
    assert 1 == len([o for o in stack.latest_orders().values() if o["purpose"] == "stop_loss"])


async def test_an_entry_the_balance_cannot_margin_is_rejected_before_it_is_sent() -> None:
    """3 BTC at 50,000 on 10,000 of balance at 10x needs 15,000 of margin: a
    ValidationError naming the amount and the numbers; no position, nothing sent."""
    stack = build_stack()
    with pytest.raises(ValidationError) as err:
        await stack.apm.open_position_atomic(long_signal("3"))
    assert "amount" == err.value.field
    assert "15000.00 USDT of margin at 10x" in err.value.rule
    assert ([], {}) == (list(stack.book), stack.latest_orders())
    opened = await stack.apm.open_position_atomic(long_signal("1.9"))
    assert PositionStatus.ACTIVE == opened.status
