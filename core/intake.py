"""Requests from the intake tables, turned into actions and outcomes.

A ``monitoring.signals`` row opens a position; a ``monitoring.commands`` row places or
cancels an order or closes a position. Rows may come from the CLI or from anyone with SQL,
so everything in them is untrusted: each ends as an :class:`Outcome` — ``done`` with a
result, ``rejected`` with a reason naming what to change (bad input, a conflict), or
``failed`` (the venue or the daemon could not do it). No input stops the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import structlog

from core.atomic_position_manager import AtomicPositionManager
from core.errors import AuditUnavailable, PositionConflict, TraderError, ValidationError
from core.models import Order, Position, PositionStatus
from core.order_manager import OrderManager
from core.order_requests import parse_order_request
from core.position_lifecycle import PositionLifecycle
from core.signals import parse_signal
from exchanges.base import ExchangeError

log = structlog.get_logger("intake")

DONE, REJECTED, FAILED = "done", "rejected", "failed"
COMMAND_KINDS = ("place_order", "cancel_order", "close_position")
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    reason: str | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    position_id: int | None = None


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def position_result(position: Position) -> dict[str, Any]:
    return {
        "position_id": position.id,
        "status": position.status.value,
        "symbol": position.symbol,
        "side": position.side.value,
        "quantity": str(position.quantity),
        "entry_price": _plain(position.entry_price),
        "stop_loss_price": _plain(position.stop_loss_price),
        "take_profit_price": _plain(position.take_profit_price),
        "realized_pnl": str(position.realized_pnl),
        "exit_reason": position.exit_reason,
    }


def order_result(order: Order) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "order_id": order.exchange_order_id,
        "status": order.status.value,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "amount": str(order.amount),
        "filled": str(order.filled),
        "emulated": order.emulated,
    }


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:MAX_REASON]


def _refused(exc: TraderError) -> Outcome:
    """The outcome of a request our code refused: the request's fault (bad input, a
    market already taken) is ``rejected``; the venue's or ours is ``failed``."""
    if isinstance(exc, ValidationError | PositionConflict | AuditUnavailable):
        return Outcome(REJECTED, _reason(exc))
    if isinstance(exc, ExchangeError):
        return Outcome(FAILED, f"venue: {_reason(exc)}")
    return Outcome(FAILED, _reason(exc))


class IntakeHandler:
    """Runs one request against the trading core and says how it ended."""

    def __init__(
        self,
        account: str,
        apm: AtomicPositionManager,
        lifecycle: PositionLifecycle,
        orders: OrderManager,
    ) -> None:
        self._account = account
        self._apm = apm
        self._lifecycle = lifecycle
        self._orders = orders

    async def signal(self, row: Mapping[str, Any]) -> Outcome:
        """Open a position for a signal row."""
        try:
            self._check_account(row)
            signal = parse_signal(row)
            position = await self._apm.open_position_atomic(signal)
        except TraderError as exc:
            return _refused(exc)
        result = position_result(position)
        if position.status in (PositionStatus.ROLLED_BACK, PositionStatus.FAILED):
            return Outcome(FAILED, position.exit_reason, result, position.id)
        return Outcome(DONE, None, result, position.id)

    async def command(self, row: Mapping[str, Any]) -> Outcome:
        """Place / cancel an order or close a position for a command row."""
        kind = row.get("kind")
        payload = row.get("payload")
        try:
            self._check_account(row)
            if kind not in COMMAND_KINDS:
                raise ValidationError("kind", f"must be one of {', '.join(COMMAND_KINDS)}", kind)
            if not isinstance(payload, Mapping):
                raise ValidationError("payload", "must be a JSON object", payload)
            return await self._command(str(kind), payload, row.get("id"))
        except TraderError as exc:
            return _refused(exc)

    async def _command(self, kind: str, payload: Mapping[str, Any], request_id: Any) -> Outcome:
        if kind == "place_order":
            spec = parse_order_request(payload)
            if isinstance(request_id, int):
                spec = replace(spec, request_id=request_id)
            order = await self._orders.place_order(spec)
            return Outcome(DONE, None, order_result(order), order.position_id)
        if kind == "cancel_order":
            ref = payload.get("order_id") or payload.get("client_order_id")
            if not isinstance(ref, str) or not ref.strip():
                raise ValidationError("order_id", "give the order's id or client order id", ref)
            order = await self._orders.cancel_order(ref.strip())
            return Outcome(DONE, None, order_result(order), order.position_id)
        position_id = payload.get("position_id")
        if isinstance(position_id, bool) or not isinstance(position_id, int):
            raise ValidationError("position_id", "must be a position id", position_id)
        reason = payload.get("reason", "manual")
        reason = reason if isinstance(reason, str) and reason.isprintable() else "manual"
        position = await self._lifecycle.close_position(position_id, reason[:64])
        return Outcome(DONE, None, position_result(position), position.id)

    def _check_account(self, row: Mapping[str, Any]) -> None:
        account = row.get("account")
        if account not in (None, self._account):
            raise ValidationError(
                "account", f"this daemon trades account {self._account!r}", account
            )
