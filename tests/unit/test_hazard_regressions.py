"""Regressions for trading hazards found in review: each test reproduces the situation and
proves the position ends protected or flat, recorded truthfully."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from typing import Any

from core.models import Side
from core.order_model import OrderStatus, OrderType
from core.order_requests import OrderSpec
from core.position_model import PositionStatus
from core.records import RecordKind
from core.venue import ExchangeUnavailable, OrderNotFound, OrderRejected, RequestTimeout
from exchanges.paper import PaperExchange
from tests.trading_harness import BTC, ETH, Stack, build_stack, long_signal, short_signal


class Wrap:
    """The paper venue with hooks a test can set to misbehave like a real one."""

    def __init__(self, venue: PaperExchange) -> None:
        self.v = venue
        self.refuse_stops = False
        self.timeout_types: set[OrderType] = set()
        self.reject_first_stop = False
        self.on_cancel: str | None = None
        self.rejected_ids: set[str] = set()
        self.forget_cancelled = False
        self.slow_create_s = 0.0
        self.read_outage = 0
        self.hide_entry = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.v, name)

    async def create_order(self, req: Any) -> Any:
        if self.slow_create_s:
            await asyncio.sleep(self.slow_create_s)
        stop = req.type is OrderType.STOP_MARKET
        if stop and (self.refuse_stops or self.reject_first_stop):
            self.reject_first_stop = False
            raise OrderRejected("stop refused")
        reply = await self.v.create_order(req)
        if req.type in self.timeout_types:
            raise RequestTimeout("reply lost after accept")
        return reply

    async def cancel_order(self, symbol: str, **kw: Any) -> Any:
        if self.on_cancel is not None:
            self.v.set_price(BTC, self.on_cancel)  # the market gaps during the cancel
            self.on_cancel = None
        return await self.v.cancel_order(symbol, **kw)

    async def fetch_order(self, symbol: str, **kw: Any) -> Any:
        if self.hide_entry and "-en-" in (kw.get("client_order_id") or ""):
            raise OrderNotFound("Order does not exist (-2013)")  # not visible yet
        if self.read_outage:
            self.read_outage -= 1
            raise ExchangeUnavailable("503")
        order = await self.v.fetch_order(symbol, **kw)
        if order.client_order_id in self.rejected_ids:
            return dataclasses.replace(order, status=OrderStatus.REJECTED)
        if self.forget_cancelled and order.status is OrderStatus.CANCELLED and not order.filled:
            raise OrderNotFound("Order does not exist. (-2013)")
        return order


def wrapped(faults: dict[str, str] | None = None, **config: Any) -> tuple[Stack, Wrap]:
    holder: dict[str, Wrap] = {}
    stack = build_stack(faults, wrap=lambda v: holder.setdefault("w", Wrap(v)), **config)
    return stack, holder["w"]


async def test_lost_stop_that_cannot_be_replaced_is_closed_at_market() -> None:
    """A stop gone from the venue while new stops are refused: the position is closed at
    market (no recursion, no naked position), and other positions still sync."""
    stack, venue = wrapped()
    btc = await stack.apm.open_position_atomic(long_signal())
    eth = await stack.apm.open_position_atomic(long_signal("1", symbol=ETH))
    live = stack.book.get(btc.id)
    assert live is not None and live.stop is not None
    await stack.venue.cancel_order(BTC, client_order_id=live.stop.client_order_id)
    venue.refuse_stops = True
    assert eth.stop_loss_price is not None
    stack.tick(ETH, str(eth.stop_loss_price - 5))  # ETH's stop fires meanwhile
    await stack.lifecycle.sync_all()
    assert await stack.venue_position(BTC) is None
    assert "stop_lost" == stack.latest_position(btc.id)["exit_reason"]
    assert "stop_loss" == stack.latest_position(eth.id)["exit_reason"]
    assert 0 == len(stack.book)


async def test_old_stop_filling_during_a_move_closes_the_position() -> None:
    """The old stop fills while a move cancels it: the position closes as stop_loss with
    its P&L, the new stop is cancelled, and the market is free again."""
    stack, venue = wrapped()
    position = await stack.apm.open_position_atomic(long_signal())
    stack.tick(BTC, "52000")
    venue.on_cancel = "48000"
    await stack.lifecycle.move_stop(position.id, Decimal("51000"))
    final = stack.latest_position(position.id)
    assert ("closed", "stop_loss") == (final["status"], final["exit_reason"])
    assert final["realized_pnl"] < 0
    assert [] == await stack.venue_stops()
    assert stack.book.on_symbol(BTC) is None


async def test_restart_after_a_rejected_stop_attempt_reconciles() -> None:
    """A position whose first stop attempt was rejected restarts cleanly: the REJECTED
    order stays REJECTED and the live stop is kept."""
    stack, venue = wrapped()
    venue.reject_first_stop = True
    await stack.apm.open_position_atomic(long_signal())
    positions, orders = stack.snapshot()
    again = build_stack(venue=stack.venue, prices={})
    again.reconciler.restore(positions, orders)
    await again.reconciler.reconcile()
    (live,) = list(again.book)
    assert PositionStatus.ACTIVE == live.position.status
    assert 1 == len(await again.venue_stops())


async def test_forgotten_cancelled_orders_do_not_break_reconciliation() -> None:
    """A venue that no longer finds old cancelled orders (Binance -2013) does not make
    reconciliation raise."""
    stack, venue = wrapped()
    position = await stack.apm.open_position_atomic(long_signal())
    stack.tick(BTC, "52000")
    await stack.lifecycle.move_stop(position.id, Decimal("51000"))
    venue.forget_cancelled = True
    await stack.reconciler.reconcile()
    await stack.reconciler.reconcile()
    assert 1 == len(stack.book)


async def test_position_closed_outside_without_any_fill_closes_after_a_grace_loudly() -> None:
    """The venue shows flat a position whose closing execution cannot be found (the
    venue's history is gone): it is not closed on a first sighting (an endpoint may lag),
    only once flat for the grace period, then with a critical note and its stop
    cancelled."""
    from core.reconciler import Reconciler
    from core.venue import OrderRequest

    class NoHistory:
        def __init__(self, venue: PaperExchange) -> None:
            self.v = venue

        def __getattr__(self, name: str) -> Any:
            return getattr(self.v, name)

        async def fetch_fills(self, symbol: str, **kw: Any) -> list[Any]:
            return []

    holder: dict[str, NoHistory] = {}
    stack = build_stack(wrap=lambda v: holder.setdefault("w", NoHistory(v)))
    now = [0.0]
    reconciler = Reconciler(
        holder["w"],  # type: ignore[arg-type]
        stack.executor,
        stack.book,
        stack.apm,
        stack.lifecycle,
        stack.orders,
        account="main",
        symbols=[BTC],
        flat_confirm_s=10.0,
        clock=lambda: now[0],
    )
    position = await stack.apm.open_position_atomic(long_signal())
    await stack.venue.create_order(
        OrderRequest(
            "manual-close-1", BTC, Side.SELL, OrderType.MARKET, Decimal("0.1"), reduce_only=True
        )
    )
    await reconciler.reconcile()
    now[0] = 5.0
    await reconciler.reconcile()
    assert stack.book.get(position.id) is not None  # flat for 5 s only: may be a lag
    now[0] = 11.0
    await reconciler.reconcile()
    final = stack.latest_position(position.id)
    assert ("closed", "closed_on_venue") == (final["status"], final["exit_reason"])
    assert [] == await stack.venue_stops()
    severities = {e["kind"]: e["severity"] for e in stack.rows(RecordKind.EVENT)}
    assert ("warning", "critical") == (
        severities["venue_flat_suspected"],
        severities["closed_elsewhere"],
    )


async def test_a_manual_position_after_ours_closed_is_reported_not_adopted() -> None:
    """A position opened by hand after the daemon's closed is not adopted or touched."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    await stack.lifecycle.close_position(position.id)
    from core.venue import OrderRequest

    await stack.venue.create_order(
        OrderRequest("by-hand-1", BTC, Side.BUY, OrderType.MARKET, Decimal("0.5"))
    )
    await stack.reconciler.reconcile()
    assert 0 == len(stack.book)
    assert [] == await stack.venue_stops()
    assert ["unknown_position"] == [
        e["kind"] for e in stack.rows(RecordKind.EVENT) if e["kind"].startswith("unknown")
    ]


async def test_stop_rejected_when_it_triggers_is_replaced() -> None:
    """A resting stop the venue later reports REJECTED is replaced by a new one."""
    stack, venue = wrapped()
    position = await stack.apm.open_position_atomic(long_signal())
    live = stack.book.get(position.id)
    assert live is not None and live.stop is not None
    cid = live.stop.client_order_id
    await stack.venue.cancel_order(BTC, client_order_id=cid)
    venue.rejected_ids.add(cid)
    await stack.lifecycle.sync_all()
    stops = await stack.venue_stops()
    assert 1 == len(stops) and cid != stops[0].client_order_id


async def test_fill_taken_from_the_venue_position_is_not_counted_again() -> None:
    """An acknowledged entry not yet visible by client id takes its fill from the venue
    position; when the order's own fill surfaces, the quantity stays 0.1."""
    stack, venue = wrapped({"no_average_price": "1"})
    venue.hide_entry = True
    position = await stack.apm.open_position_atomic(long_signal())
    venue.hide_entry = False
    stack.venue.faults = {}
    assert Decimal("0.1") == position.quantity
    await stack.lifecycle.sync_all()
    live = stack.book.get(position.id)
    assert live is not None and Decimal("0.1") == live.position.quantity
    assert [Decimal("0.1")] == [s.amount for s in await stack.venue_stops()]


async def test_take_profit_accepted_behind_a_timeout_is_tracked() -> None:
    """A take-profit whose reply was lost is found by client id; when it fills the
    position closes and the stop is cancelled."""
    stack, venue = wrapped()
    venue.timeout_types = {OrderType.TAKE_PROFIT_MARKET}
    position = await stack.apm.open_position_atomic(long_signal(take_profit_percent=Decimal("4")))
    live = stack.book.get(position.id)
    assert live is not None and live.take_profit is not None
    stack.tick(BTC, "52100")
    await stack.lifecycle.sync_all()
    assert ("closed", "take_profit") == tuple(
        stack.latest_position(position.id)[k] for k in ("status", "exit_reason")
    )
    assert [] == await stack.venue_stops()


async def test_an_order_being_sent_cannot_be_cancelled_into_a_lie() -> None:
    """Cancelling an emulated order whose execution is in flight is refused; the order
    manager's view ends FILLED, like the audit trail."""
    stack, venue = wrapped()
    venue.slow_create_s = 0.1
    spec = OrderSpec(
        symbol=BTC,
        side=Side.BUY,
        type=OrderType.STOP_MARKET,
        amount=Decimal("0.01"),
        trigger_price=Decimal("50500"),
    )
    order = await stack.orders.place_order(spec)
    stack.tick(BTC, "50600")
    await asyncio.sleep(0.01)
    from core.errors import ValidationError

    try:
        await stack.orders.cancel_order(order.client_order_id)
        refused = False
    except ValidationError:
        refused = True
    await stack.tasks.drain(5)
    final = stack.orders.get_order(order.client_order_id)
    assert (True, OrderStatus.FILLED) == (refused, final.status if final else None)


async def test_a_brief_read_outage_after_the_entry_does_not_fail_the_open() -> None:
    """An acknowledged entry whose order reads fail for a moment still ends active, with
    its stop: the outage does not escape the open."""
    stack, venue = wrapped({"no_average_price": "1"})
    venue.read_outage = 4
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ACTIVE == position.status
    assert 1 == len(await stack.venue_stops())


async def test_break_even_never_closes_at_once() -> None:
    """A break-even level the price has not cleared is not placed, and nothing closes."""
    stack = build_stack(breakeven_pct=Decimal("0.05"))
    position = await stack.apm.open_position_atomic(long_signal())
    assert position.entry_price is not None
    stack.tick(BTC, str(position.entry_price + 26))
    await stack.tasks.drain(5)
    live = stack.book.get(position.id)
    assert live is not None and PositionStatus.ACTIVE == live.position.status


async def test_short_positions_get_the_same_lost_stop_care() -> None:
    """A short whose stop vanished gets a new buy stop above the entry."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(short_signal())
    live = stack.book.get(position.id)
    assert live is not None and live.stop is not None
    await stack.venue.cancel_order(BTC, client_order_id=live.stop.client_order_id)
    await stack.lifecycle.sync_all()
    stops = await stack.venue_stops()
    assert [Side.BUY] == [s.side for s in stops]
    assert position.entry_price is not None and stops[0].trigger_price is not None
    assert stops[0].trigger_price > position.entry_price


async def test_rollback_closes_what_the_entry_filled_up_to_its_cancel() -> None:
    """A partly filled entry that keeps filling while the stop is refused: the rollback
    cancels it, counts what it filled up to the cancel, and leaves the venue flat."""
    stack = build_stack({"partial_fill": "0.5", "reject_stop": "1"})

    async def ticking() -> None:
        while True:
            stack.tick(ETH, "3000")
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(ticking())
    try:
        position = await stack.apm.open_position_atomic(short_signal("1", symbol=ETH))
    finally:
        ticker.cancel()
    assert PositionStatus.ROLLED_BACK == position.status
    assert await stack.venue_position(ETH) is None
    venue_trades = {f.trade_id for f in await stack.venue.fetch_fills(ETH)}
    recorded = {t["trade_id"] for t in stack.rows(RecordKind.TRADE)}
    assert venue_trades == recorded


async def test_orders_for_positions_that_do_not_exist_are_refused() -> None:
    """place_order with an unknown or out-of-range position id is rejected, not armed."""
    from core.errors import ValidationError
    from core.order_requests import parse_order_request

    stack = build_stack()
    base = {"symbol": BTC, "side": "buy", "type": "limit", "amount": "0.001", "price": "30000"}
    for bad in (987654321, -1, 10**30):
        try:
            await stack.orders.place_order(parse_order_request({**base, "position_id": bad}))
            refused = False
        except ValidationError as exc:
            refused = exc.field == "position_id"
        assert refused, bad
    assert 0 == len(stack.triggers)


def test_a_log_line_with_an_unencodable_value_is_still_written() -> None:
    """orjson refuses integers beyond 64 bits; the line is written anyway, never raises."""
    import io

    from config.logging import configure_logging, get_logger

    out = io.StringIO()
    configure_logging("json", "INFO", out)
    get_logger("test-huge").info("huge", position_id=10**30)
    assert '"position_id": 1000000000000000000000000000000' in out.getvalue()


async def test_reduce_only_orders_for_a_position_reduce_it_and_its_stop() -> None:
    """Emulated reduce-only orders placed for a position: each fill realises P&L and
    resizes the stop; the last closes the position as manual_order, with no false
    'closed elsewhere' alert at the next reconciliation."""
    from core.order_requests import parse_order_request

    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    for trigger in ("49900", "49800"):
        await stack.orders.place_order(
            parse_order_request(
                {
                    "symbol": BTC,
                    "side": "sell",
                    "type": "stop_market",
                    "amount": "0.05",
                    "trigger_price": trigger,
                    "reduce_only": True,
                    "position_id": position.id,
                }
            )
        )
    stack.tick(BTC, "49850")
    await stack.tasks.drain(5)
    live = stack.book.get(position.id)
    assert live is not None and Decimal("0.05") == live.position.quantity
    assert live.position.realized_pnl < 0
    assert [Decimal("0.05")] == [s.amount for s in await stack.venue_stops()]
    stack.tick(BTC, "49750")
    await stack.tasks.drain(5)
    await stack.reconciler.reconcile()
    await stack.reconciler.reconcile()
    final = stack.latest_position(position.id)
    assert ("closed", "manual_order") == (final["status"], final["exit_reason"])
    assert [] == await stack.venue_stops()
    kinds = {e["kind"] for e in stack.rows(RecordKind.EVENT)}
    assert "closed_elsewhere" not in kinds
    trades = [t for t in stack.rows(RecordKind.TRADE) if t["realized_pnl"] is not None]
    assert 2 == len(trades)
    assert final["realized_pnl"] == sum(t["realized_pnl"] for t in trades)
