"""Failure mode 14 and interrupted opens: an entry the venue accepted but never confirmed is
never marked failed while it may hold a position; it stays entry_placed, is resolved from
the venue's fills or position, protected, and is loud (critical) while unresolved. A
position left holding in an opening state is protected by the next sync."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from core.order_model import OrderType
from core.position_model import PositionStatus
from core.records import RecordKind
from core.venue import ExchangeUnavailable, OrderRequest, RequestTimeout
from exchanges.paper import PaperExchange
from tests.trading_harness import BTC, Stack, build_stack, long_signal


class Venue:
    """The paper venue with switchable outages and a reply lost after the accept."""

    def __init__(self, venue: PaperExchange) -> None:
        self.v = venue
        self.lose_entry_reply = False  # accept the entry, then time out
        self.drop_entry = False  # time out without the venue ever getting the entry
        self.down: set[str] = set()  # method names answering 503

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.v, name)
        if name in ("fetch_order", "fetch_fills", "fetch_positions", "cancel_order"):

            async def maybe_down(*args: Any, **kwargs: Any) -> Any:
                if name in self.down:
                    raise ExchangeUnavailable(f"503 on {name}")
                return await attr(*args, **kwargs)

            return maybe_down
        return attr

    async def create_order(self, request: OrderRequest) -> Any:
        entry = not request.reduce_only and request.type is OrderType.MARKET
        if entry and self.drop_entry:
            raise RequestTimeout("no reply (the request never reached the venue)")
        reply = await self.v.create_order(request)
        if entry and self.lose_entry_reply:
            raise RequestTimeout("no reply (the venue accepted the order)")
        return reply


def stack_with(**config: Any) -> tuple[Stack, Venue]:
    holder: dict[str, Venue] = {}
    stack = build_stack(wrap=lambda v: holder.setdefault("w", Venue(v)), **config)
    return stack, holder["w"]


def critical(stack: Stack) -> list[str]:
    return [e["kind"] for e in stack.rows(RecordKind.EVENT) if e["severity"] == "critical"]


async def test_accepted_entry_with_lost_reply_and_order_lookups_down_is_protected() -> None:
    """The entry's reply is lost and fetching orders fails for the whole wait: the fill is
    found in the account's fills, so the position is active with a stop, not failed."""
    stack, venue = stack_with()
    venue.lose_entry_reply = True
    venue.down = {"fetch_order"}
    position = await stack.apm.open_position_atomic(long_signal())
    assert (PositionStatus.ACTIVE, Decimal("0.1")) == (position.status, position.quantity)
    venue_fill = (await stack.venue.fetch_fills(BTC))[0]
    assert venue_fill.price == position.entry_price
    assert [Decimal("0.1")] == [s.amount for s in await stack.venue_stops()]
    (entry,) = [o for o in stack.latest_orders().values() if o["purpose"] == "entry"]
    assert ("FILLED", venue_fill.exchange_order_id) == (entry["status"], entry["order_id"])


async def test_entry_nobody_can_resolve_stays_entry_placed_loudly_until_sync_protects() -> None:
    """The reply is lost and every lookup (order, fills, positions) fails: the position is
    kept entry_placed with the entry SUBMITTED and a critical event, the market stays
    claimed, and the first sync that can see the venue position protects it (the order's
    own fill, when it surfaces, is not counted twice)."""
    stack, venue = stack_with()
    venue.lose_entry_reply = True
    venue.down = {"fetch_order", "fetch_fills", "fetch_positions"}
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.ENTRY_PLACED == position.status
    assert ["entry_unresolved"] == critical(stack)
    live = stack.book.on_symbol(BTC)
    assert live is not None and live.entry is not None
    assert "SUBMITTED" == live.entry.status.value
    await stack.lifecycle.sync_all()  # still down: still unresolved, still loud
    assert ["entry_unresolved", "entry_unresolved"] == critical(stack)
    venue.down = {"fetch_order", "fetch_fills"}  # the positions endpoint answers again
    await stack.lifecycle.sync_all()
    assert (PositionStatus.ACTIVE, Decimal("0.1")) == (
        live.position.status,
        live.position.quantity,
    )
    assert [Decimal("0.1")] == [s.amount for s in await stack.venue_stops()]
    venue.down = set()  # the order's own fill surfaces: the same execution, not more
    await stack.lifecycle.sync_all()
    assert Decimal("0.1") == live.position.quantity
    assert [Decimal("0.1")] == [s.amount for s in await stack.venue_stops()]
    assert 1 == len(await stack.venue.fetch_fills(BTC))  # one entry, never a second


async def test_entry_that_never_reached_the_venue_fails_without_exposure() -> None:
    """A submit that timed out before the venue got it: the venue has no such order and
    no fill of it, so the position fails (entry not confirmed) and the market is free."""
    stack, venue = stack_with()
    venue.drop_entry = True
    position = await stack.apm.open_position_atomic(long_signal())
    assert PositionStatus.FAILED == position.status
    assert position.exit_reason is not None
    assert position.exit_reason.startswith("entry not confirmed")
    assert await stack.venue_position() is None
    assert stack.book.on_symbol(BTC) is None


async def test_interrupted_open_holding_a_quantity_is_protected_by_the_sync() -> None:
    """An open that broke between its entry and its stop (a bug) leaves the position
    pending_sl holding 0.1: the open says so loudly, and the next sync places the stop."""
    stack = build_stack()
    real_place_stop = stack.apm.place_stop

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug between the entry and the stop")

    stack.apm.place_stop = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await stack.apm.open_position_atomic(long_signal())
    stack.apm.place_stop = real_place_stop  # type: ignore[method-assign]
    assert ["open_crashed"] == critical(stack)
    live = stack.book.on_symbol(BTC)
    assert live is not None
    assert (PositionStatus.PENDING_SL, Decimal("0.1")) == (
        live.position.status,
        live.position.quantity,
    )
    await stack.lifecycle.sync_all()
    assert PositionStatus.ACTIVE == live.position.status
    assert [Decimal("0.1")] == [s.amount for s in await stack.venue_stops()]
