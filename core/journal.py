"""The journal: one call records a change in the audit trail and in the log.

Trading code never writes audit rows or log lines about orders and positions by hand: it
calls the journal, which builds the rows (core/records.py), hands them to the
non-blocking sink, and logs one line with ``position_id`` / ``client_order_id`` bound. So
the log and the ``monitoring`` tables tell the same story, and nothing here ever awaits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import structlog

from core.order_model import Fill, Order, OrderStatus
from core.position_model import Position
from core.records import (
    AuditSink,
    Severity,
    event_record,
    order_event_record,
    order_record,
    position_record,
    position_update_record,
    trade_record,
)

_LEVELS = {
    Severity.DEBUG: "debug",
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.ERROR: "error",
    Severity.CRITICAL: "critical",
}


# Position steps that last microseconds on the happy path: recorded in the audit trail
# always, logged at DEBUG; the outcome (active, rolled_back, ...) is logged at INFO.
_TRANSITIONAL = frozenset({"pending_entry", "entry_placed", "pending_sl"})
# The same for an order: what we asked of the venue (create, send, cancel) is logged at
# DEBUG, and the venue's answer (accepted, rejected, failed, cancelled, a fill) at INFO. A
# trailing stop's move is then two order lines, not four, beside ``position_stop_moved``.
# A request the venue never answers is not left silent: see :meth:`Journal.unanswered`.
_REQUESTS = frozenset({"created", "submitted", "cancelling"})


def _order_line(log: Callable[..., Any], event: str, order: Order, **extra: Any) -> None:
    log(
        event,
        client_order_id=order.client_order_id,
        position_id=order.position_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        status=order.status,
        amount=order.amount,
        filled=order.filled,
        **extra,
    )


class Journal:
    """Records orders, fills, positions and events to the sink and the log."""

    def __init__(self, sink: AuditSink, account: str) -> None:
        self._sink = sink
        self.account = account
        self._log = structlog.get_logger("trader")
        # Told of every event (kind, severity): the metrics count them. Set by the wiring.
        self.on_event: Callable[[str, Severity], None] | None = None

    def order(
        self,
        order: Order,
        kind: str,
        previous: OrderStatus | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """An order was created or changed: snapshot row, history row, log line."""
        self._sink.record(order_record(order))
        self._sink.record(order_event_record(order, kind, previous, detail))
        if order.status in (OrderStatus.FAILED, OrderStatus.REJECTED):
            log = self._log.warning
        elif kind in _REQUESTS:
            log = self._log.debug
        else:
            log = self._log.info
        error = {"error": order.error_message} if order.error_message else {}
        _order_line(log, f"order_{kind}", order, **error)

    def unanswered(self, order: Order, error: str) -> None:
        """A request the venue did not answer (a timeout the adapter could not resolve):
        the order's fate stays open until a lookup settles it. A log line only; its row
        keeps the status it was sent with."""
        _order_line(self._log.warning, "order_unanswered", order, error=error)

    def fill(
        self,
        order: Order,
        fill: Fill,
        *,
        signal_id: int | None = None,
        realized_pnl: Decimal | None = None,
    ) -> None:
        """An execution: trade row, history row, log line."""
        self._sink.record(trade_record(order, fill, signal_id=signal_id, realized_pnl=realized_pnl))
        self._sink.record(
            order_event_record(
                order,
                "fill",
                None,
                {"trade_id": fill.trade_id, "price": str(fill.price), "amount": str(fill.amount)},
            )
        )
        self._log.info(
            "order_fill",
            client_order_id=order.client_order_id,
            position_id=order.position_id,
            symbol=order.symbol,
            side=order.side,
            price=fill.price,
            amount=fill.amount,
            fee=fill.fee,
            trade_id=fill.trade_id,
            **({"realized_pnl": realized_pnl} if realized_pnl is not None else {}),
        )

    def position(self, position: Position, what: str) -> None:
        """A position changed: snapshot row and log line."""
        self._sink.record(position_record(position))
        log = self._log.debug if what in _TRANSITIONAL else self._log.info
        log(
            f"position_{what}",
            position_id=position.id,
            symbol=position.symbol,
            side=position.side,
            status=position.status,
            quantity=position.quantity,
            entry_price=position.entry_price,
            stop_loss_price=position.stop_loss_price,
            **({"exit_reason": position.exit_reason} if position.exit_reason else {}),
            **({"realized_pnl": position.realized_pnl} if position.status.is_terminal else {}),
        )

    def sample(self, position: Position) -> None:
        """A price / P&L sample of an open position, and its ``monitoring.positions`` row
        brought up to date with it (current price, unrealised P&L, water marks), so the
        row and the ``open_exposure`` view stay current. No log line: too frequent."""
        self._sink.record(position_update_record(position))
        self._sink.record(position_record(position))

    def event(
        self,
        kind: str,
        message: str,
        *,
        severity: Severity = Severity.INFO,
        position_id: int | None = None,
        client_order_id: str | None = None,
        **detail: Any,
    ) -> None:
        """A daemon event (``monitoring.events``) and its log line."""
        if self.on_event is not None:
            self.on_event(kind, severity)
        plain = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in detail.items()}
        self._sink.record(
            event_record(
                kind,
                message,
                severity=severity,
                account=self.account,
                position_id=position_id,
                client_order_id=client_order_id,
                detail=plain,
            )
        )
        getattr(self._log, _LEVELS[severity])(
            kind,
            message=message,
            **({"position_id": position_id} if position_id is not None else {}),
            **({"client_order_id": client_order_id} if client_order_id else {}),
            **plain,
        )
