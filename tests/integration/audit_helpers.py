"""Record factories shared by the audit writer tests: realistic order lifecycles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.models import PositionSide, Side
from core.order_model import Fill, Order, OrderPurpose, OrderStatus, OrderType
from core.position_model import Position, PositionStatus
from core.records import (
    AuditRecord,
    event_record,
    order_event_record,
    order_record,
    position_record,
    position_update_record,
    trade_record,
)

T0 = datetime(2024, 6, 1, tzinfo=UTC)
STEPS = (OrderStatus.SUBMITTED, OrderStatus.NEW)  # then a fill: FILLED


def order_lifecycle(order: Order, trade_id: str) -> list[AuditRecord]:
    """Each state of ``order`` as an order snapshot plus its event, then the fill's trade."""
    records = [order_record(order), order_event_record(order, "created", None)]
    for status in STEPS:
        previous = order.status
        order = order.with_status(status, at=order.updated_at + timedelta(milliseconds=1))
        records += [order_record(order), order_event_record(order, "status", previous)]
    fill = Fill(trade_id, Decimal("100.5"), order.amount, Decimal("0.01"), ts=order.updated_at)
    previous = order.status
    order = order.with_fill(fill)
    records += [
        order_record(order),
        order_event_record(order, "fill", previous, {"trade_id": trade_id}),
        trade_record(order, fill),
    ]
    return records


def position_story(pid: int, account: str = "main") -> list[AuditRecord]:
    """A position opened, protected, sampled and closed: 3 orders, 3 trades, 33 records."""
    symbol = f"S{pid}/USDT:USDT"
    pos = Position(pid, account, "paper", symbol, PositionSide.LONG, opened_at=T0, updated_at=T0)
    records = [position_record(pos)]
    for n, (purpose, otype, side) in enumerate(
        [
            (OrderPurpose.ENTRY, OrderType.MARKET, Side.BUY),
            (OrderPurpose.STOP_LOSS, OrderType.STOP_MARKET, Side.SELL),
            (OrderPurpose.EXIT, OrderType.MARKET, Side.SELL),
        ],
        start=1,
    ):
        order = Order(
            f"td-{account}-p{pid}-{purpose.value[:2]}-{n}",
            account,
            "paper",
            symbol,
            side,
            otype,
            Decimal("0.25"),
            purpose=purpose,
            trigger_price=Decimal(95) if otype is OrderType.STOP_MARKET else None,
            position_id=pid,
            created_at=T0,
            updated_at=T0,
        )
        records += order_lifecycle(order, f"T{pid}-{n}")
        if n == 1:
            pos = pos.evolve(
                status=PositionStatus.ACTIVE,
                quantity=Decimal("0.25"),
                entry_price=Decimal("100.5"),
                current_price=Decimal(101),
            )
            records += [
                position_record(pos),
                position_update_record(pos, ts=T0 + timedelta(seconds=1)),
                position_update_record(pos, ts=T0 + timedelta(seconds=2)),
            ]
    pos = pos.evolve(
        status=PositionStatus.CLOSED,
        quantity=Decimal(0),
        exit_reason="exit",
        closed_at=T0 + timedelta(minutes=1),
    )
    records += [
        position_record(pos),
        event_record(
            "closed", f"position {pid} closed", position_id=pid, event_key=f"closed-{pid}"
        ),
    ]
    return records


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``predicate`` (the writer's state has no event to wait on) until true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
