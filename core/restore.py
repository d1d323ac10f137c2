"""Core values rebuilt from ``monitoring`` rows after a restart.

The rows are what core/records.py wrote, so this is its inverse. A restored order carries
what it had executed as one placeholder fill; the venue's real fills replace it when they
are fetched, and only executions beyond it count as new, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from core.models import PositionSide, PriceSource, Side
from core.money import ZERO, utcnow
from core.order_model import Fill, Order, OrderPurpose, OrderStatus, OrderType
from core.position_model import Position, PositionStatus


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


RECORDED = ":recorded"


def recorded_fill(row: Mapping[str, Any]) -> tuple[Fill, ...]:
    """What the row says was executed, as one placeholder fill: enough to know the
    quantity and its price after a restart. :func:`core.order_sync.apply_snapshot`
    replaces it by the venue's real fills when they are fetched."""
    filled = _dec(row.get("filled")) or ZERO
    price = _dec(row.get("average_price"))
    if filled <= 0 or price is None:
        return ()
    return (
        Fill(
            trade_id=row["client_order_id"] + RECORDED,
            price=price,
            amount=filled,
            fee=_dec(row.get("fee")) or ZERO,
            fee_currency=row.get("fee_currency"),
            ts=row.get("filled_at") or row.get("updated_at") or utcnow(),
        ),
    )


def order_from_row(row: Mapping[str, Any]) -> Order:
    """An Order as ``monitoring.orders`` last recorded it (its fills as one placeholder)."""
    return Order(
        fills=recorded_fill(row),
        client_order_id=row["client_order_id"],
        account=row["account"],
        exchange=row["exchange"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        amount=Decimal(str(row["size"])),
        purpose=OrderPurpose(row["purpose"]),
        price=_dec(row.get("price")),
        trigger_price=_dec(row.get("trigger_price")),
        limit_price=_dec(row.get("limit_price")),
        trail_percent=_dec(row.get("trail_percent")),
        trail_amount=_dec(row.get("trail_amount")),
        activation_price=_dec(row.get("activation_price")),
        reduce_only=bool(row.get("reduce_only")),
        emulated=bool(row.get("emulated")),
        expires_at=row.get("expires_at"),
        position_id=row.get("position_id"),
        exchange_order_id=row.get("order_id"),
        price_source=PriceSource(row.get("price_source") or PriceSource.LAST),
        status=OrderStatus(row["status"]),
        error_message=row.get("error_message"),
        created_at=row.get("created_at") or utcnow(),
        updated_at=row.get("updated_at") or utcnow(),
        triggered_at=row.get("triggered_at"),
        filled_at=row.get("filled_at"),
        cancelled_at=row.get("cancelled_at"),
        version=int(row.get("version") or 1),
    )


def position_from_row(row: Mapping[str, Any]) -> Position:
    """A Position as ``monitoring.positions`` last recorded it."""
    return Position(
        id=int(row["id"]),
        account=row["account"],
        exchange=row["exchange"],
        symbol=row["symbol"],
        side=PositionSide(row["side"]),
        status=PositionStatus(row["status"]),
        quantity=_dec(row.get("quantity")) or ZERO,
        traded_quantity=_dec(row.get("traded_quantity")) or ZERO,
        entry_price=_dec(row.get("entry_price")),
        current_price=_dec(row.get("current_price")),
        stop_loss_price=_dec(row.get("stop_loss_price")),
        take_profit_price=_dec(row.get("take_profit_price")),
        signal_id=row.get("signal_id"),
        exchange_order_id=row.get("exchange_order_id"),
        realized_pnl=_dec(row.get("realized_pnl")) or ZERO,
        fees=_dec(row.get("fees")) or ZERO,
        open_entry_fees=_dec(row.get("open_entry_fees")) or ZERO,
        high_water_mark=_dec(row.get("high_water_mark")),
        low_water_mark=_dec(row.get("low_water_mark")),
        max_drawdown=_dec(row.get("max_drawdown")) or ZERO,
        exit_price=_dec(row.get("exit_price")),
        exit_reason=row.get("exit_reason"),
        opened_at=row.get("opened_at") or utcnow(),
        closed_at=row.get("closed_at"),
        updated_at=row.get("updated_at") or utcnow(),
        version=int(row.get("version") or 1),
    )
