"""Audit records: what trading code hands to the audit sink, one per table row.

A record is a table kind plus a flat row of column values (``Decimal``, aware
``datetime``, ``str``, ``int``, ``bool``, ``None``, or a ``dict`` for ``jsonb``). The
builders below are the only place a domain value becomes a row, so the schema contract of
docs/architecture.md ('Schema') is visible in one file.

Every record carries an idempotency key so that a spool replayed twice, or a batch
retried after a lost reply, writes each row once:

- ``orders`` / ``positions``: upsert by ``client_order_id`` / ``id``, newest ``version`` wins;
- ``order_events`` / ``events``: ``(event_key, created_at)`` unique;
- ``trades``: ``(account, exchange, symbol, trade_id, executed_at)`` unique;
- ``position_updates``: ``(position_id, ts)`` unique.

The append-only tables are partitioned by that time (migration 0012), and a unique key
of a partitioned table must hold its partition column. The time is fixed when the record
is built (an order event's is the order's ``updated_at`` at that version, a trade's the
venue's execution time) and travels with it, so a retry or a replay meets its row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from core.money import utcnow
from core.order_model import Fill, Order, OrderStatus
from core.position_model import Position
from core.positions import held_for, profit_pct, risk_pct


class RecordKind(StrEnum):
    """The ``monitoring`` table a record goes to."""

    ORDER = "orders"
    ORDER_EVENT = "order_events"
    TRADE = "trades"
    POSITION = "positions"
    EVENT = "events"
    POSITION_UPDATE = "position_updates"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    kind: RecordKind
    row: Mapping[str, Any]


class AuditSink(Protocol):
    """Where trading code sends records. ``record`` never awaits and never raises on I/O."""

    def record(self, rec: AuditRecord) -> None: ...


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


def order_record(order: Order) -> AuditRecord:
    """The current snapshot of an order (``monitoring.orders``, upsert by client id)."""
    return AuditRecord(
        RecordKind.ORDER,
        {
            "client_order_id": order.client_order_id,
            "position_id": order.position_id,
            "account": order.account,
            "exchange": order.exchange,
            "symbol": order.symbol,
            "order_id": order.exchange_order_id,
            "type": order.type.value,
            "side": order.side.value,
            "purpose": order.purpose.value,
            "size": order.amount,
            "price": order.price,
            "trigger_price": order.trigger_price,
            "limit_price": order.limit_price,
            "trail_percent": order.trail_percent,
            "trail_amount": order.trail_amount,
            "activation_price": order.activation_price,
            "reduce_only": order.reduce_only,
            "emulated": order.emulated,
            "price_source": order.price_source.value,
            "status": order.status.value,
            "filled": order.filled,
            "remaining": order.remaining,
            "average_price": order.average_price,
            "fee": order.fee,
            "fee_currency": order.fee_currency,
            "error_message": order.error_message,
            "expires_at": order.expires_at,
            "created_at": order.created_at,
            "updated_at": order.updated_at,
            "triggered_at": order.triggered_at,
            "filled_at": order.filled_at,
            "cancelled_at": order.cancelled_at,
            "version": order.version,
        },
    )


def order_event_record(
    order: Order,
    kind: str,
    previous_status: OrderStatus | None,
    detail: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """One line of an order's history (``monitoring.order_events``, append-only).

    The key is the client id plus the order's version, so the same change recorded twice
    (a retried batch, a replayed spool) is stored once, and ``version`` orders the history.
    """
    return AuditRecord(
        RecordKind.ORDER_EVENT,
        {
            "event_key": f"{order.client_order_id}#{order.version}#{kind}",
            "client_order_id": order.client_order_id,
            "position_id": order.position_id,
            "kind": kind,
            "previous_status": previous_status.value if previous_status else None,
            "new_status": order.status.value,
            "version": order.version,
            "detail": dict(detail or {}),
            "created_at": order.updated_at,
        },
    )


def trade_record(
    order: Order,
    fill: Fill,
    *,
    signal_id: int | None = None,
    realized_pnl: Decimal | None = None,
) -> AuditRecord:
    """One execution (``monitoring.trades``, unique by account and venue trade id)."""
    return AuditRecord(
        RecordKind.TRADE,
        {
            "signal_id": signal_id,
            "position_id": order.position_id,
            "account": order.account,
            "exchange": order.exchange,
            "symbol": order.symbol,
            "side": order.side.value,
            "order_type": order.type.value,
            "quantity": order.amount,
            "price": fill.price,
            "executed_qty": fill.amount,
            "average_price": order.average_price,
            "order_id": order.exchange_order_id,
            "client_order_id": order.client_order_id,
            "trade_id": fill.trade_id,
            "status": order.status.value,
            "fee": fill.fee,
            "fee_currency": fill.fee_currency,
            "realized_pnl": realized_pnl,
            "executed_at": fill.ts,
        },
    )


def position_record(position: Position) -> AuditRecord:
    """The current snapshot of a position (``monitoring.positions``, upsert by id)."""
    return AuditRecord(
        RecordKind.POSITION,
        {
            "id": position.id,
            "signal_id": position.signal_id,
            "account": position.account,
            "exchange": position.exchange,
            "symbol": position.symbol,
            "side": position.side.value,
            "quantity": position.quantity,
            "traded_quantity": position.traded_quantity,
            "entry_price": position.entry_price,
            "current_price": position.current_price,
            "stop_loss_price": position.stop_loss_price,
            "take_profit_price": position.take_profit_price,
            "status": position.status.value,
            "exchange_order_id": position.exchange_order_id,
            "realized_pnl": position.realized_pnl,
            "unrealized_pnl": position.unrealized_pnl,
            "fees": position.fees,
            "open_entry_fees": position.open_entry_fees,
            "high_water_mark": position.high_water_mark,
            "low_water_mark": position.low_water_mark,
            "max_drawdown": position.max_drawdown,
            "exit_price": position.exit_price,
            "exit_reason": position.exit_reason,
            "opened_at": position.opened_at,
            "closed_at": position.closed_at,
            "updated_at": position.updated_at,
            "version": position.version,
        },
    )


_PCT = Decimal("0.000001")
_MICRO = timedelta(microseconds=1)


def position_metrics(position: Position, now: datetime) -> dict[str, Decimal | None]:
    """What a person watching a position asks for, at ``now``: unrealised P&L in percent
    of the entry price (gross, like ``unrealized_pnl``), time held in seconds, and the
    risk level: distance from the price to the stop in percent of the price (None
    without a stop or a price; negative once the price is through the stop)."""
    price = position.current_price
    pnl_pct = risk = None
    if price is not None and position.entry_price:
        pnl_pct = profit_pct(position, price).quantize(_PCT)
    if price is not None:
        distance = risk_pct(position, price)
        risk = None if distance is None else distance.quantize(_PCT)
    held = Decimal(held_for(position, now) // _MICRO) / 1_000_000
    return {"unrealized_pnl_pct": pnl_pct, "held_s": held, "risk_pct": risk}


def position_update_record(position: Position, ts: datetime | None = None) -> AuditRecord:
    """A price / P&L sample of an open position (``monitoring.position_updates``)."""
    now = ts or utcnow()
    return AuditRecord(
        RecordKind.POSITION_UPDATE,
        {
            "position_id": position.id,
            "ts": now,
            "price": position.current_price,
            "quantity": position.quantity,
            "unrealized_pnl": position.unrealized_pnl,
            "realized_pnl": position.realized_pnl,
            "stop_loss_price": position.stop_loss_price,
            "high_water_mark": position.high_water_mark,
            "low_water_mark": position.low_water_mark,
            "max_drawdown": position.max_drawdown,
            **position_metrics(position, now),
        },
    )


def event_record(
    kind: str,
    message: str,
    *,
    severity: Severity = Severity.INFO,
    account: str | None = None,
    position_id: int | None = None,
    client_order_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
    event_key: str | None = None,
) -> AuditRecord:
    """A daemon event (``monitoring.events``): start, stop, reconciliation, alerts, ..."""
    return AuditRecord(
        RecordKind.EVENT,
        {
            "event_key": event_key or uuid.uuid4().hex,
            "kind": kind,
            "severity": severity.value,
            "account": account,
            "position_id": position_id,
            "client_order_id": client_order_id,
            "message": message,
            "detail": dict(detail or {}),
            "created_at": utcnow(),
        },
    )


class MemorySink:
    """An in-memory AuditSink for unit tests of trading code."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def record(self, rec: AuditRecord) -> None:
        self.records.append(rec)

    def of(self, kind: RecordKind) -> list[Mapping[str, Any]]:
        return [r.row for r in self.records if r.kind is kind]
