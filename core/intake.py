"""Requests from the intake tables, turned into actions and outcomes.

A ``monitoring.signals`` row opens a position; a ``monitoring.commands`` row places or
cancels an order or closes a position. Rows may come from the CLI or from anyone with SQL,
so everything in them is untrusted: each ends as an :class:`Outcome` — ``done`` with a
result, ``rejected`` with a reason naming what to change (bad input, a conflict), or
``failed`` (the venue or the daemon could not do it). No input stops the daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import structlog

from core.atomic_position_manager import AtomicPositionManager
from core.errors import AuditUnavailable, PositionConflict, TraderError, ValidationError
from core.order_manager import OrderManager
from core.order_model import Order, OrderType
from core.order_requests import parse_order_request
from core.position_book import LivePosition, PositionBook
from core.position_lifecycle import PositionLifecycle
from core.position_model import Position, PositionStatus
from core.request_check import (
    check_command,
    check_signal,
    close_target,
    order_ref,
)
from core.venue import ExchangeError

log = structlog.get_logger("intake")

DONE, REJECTED, FAILED = "done", "rejected", "failed"
MAX_REASON = 500
# How long a signal's outcome waits for a market entry that filled only in part to finish
# (the sync loop folds its later fills in): the outcome states the entry's final size.
ENTRY_SETTLE_S = 10.0
SETTLE_POLL_S = 0.05


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
        *,
        symbols: Sequence[str] | None = None,
        book: PositionBook | None = None,
        entry_settle_s: float = ENTRY_SETTLE_S,
    ) -> None:
        self._account = account
        self._apm = apm
        self._lifecycle = lifecycle
        self._orders = orders
        self._symbols = tuple(symbols) if symbols is not None else None
        self._book = book
        self._settle_s = entry_settle_s

    def screen(self, kind: str, row: Mapping[str, Any]) -> Outcome | None:
        """The request's rejection when the shared check (core/request_check.py) refuses
        it, else None. Pure and cheap: database/intake.py runs it over whole batches."""
        try:
            self._check_account(row)
            if kind == "signal":
                check_signal(row, self._symbols)
            else:
                check_command(row, self._symbols)
        except TraderError as exc:
            return _refused(exc)
        return None

    async def signal(self, row: Mapping[str, Any]) -> Outcome:
        """Open a position for a signal row; the outcome is written once the entry is
        final (filled, or ended with a remainder), so it states what was really bought."""
        try:
            self._check_account(row)
            signal = check_signal(row, self._symbols)
            position = await self._apm.open_position_atomic(signal)
        except TraderError as exc:
            return _refused(exc)
        position, entry = await self._settled(position)
        result = position_result(position)
        if entry is not None:
            result.update(requested=str(entry.amount), filled=str(entry.filled))
        if position.status in (PositionStatus.ROLLED_BACK, PositionStatus.FAILED):
            return Outcome(FAILED, position.exit_reason, result, position.id)
        return Outcome(DONE, None, result, position.id)

    async def _settled(self, position: Position) -> tuple[Position, Order | None]:
        """The position once its market entry stopped filling (bounded by the settle
        time), and that entry. A resting limit entry is not waited for: it may rest for
        days, and its fills are protected as they come."""
        live = self._book.get(position.id) if self._book is not None else None
        if live is None:
            return position, None
        # Polled: the sync loop replaces the entry snapshot in the book, it signals nothing.
        for _ in range(max(1, int(self._settle_s / SETTLE_POLL_S))):
            if not self._entry_working(live):
                break
            await asyncio.sleep(SETTLE_POLL_S)
        return live.position, live.entry

    async def command(self, row: Mapping[str, Any]) -> Outcome:
        """Place / cancel an order or close a position for a command row."""
        try:
            self._check_account(row)
            check_command(row, self._symbols)
            return await self._command(str(row["kind"]), row["payload"], row.get("id"))
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
            order = await self._orders.cancel_order(order_ref(payload))
            return Outcome(DONE, None, order_result(order), order.position_id)
        position_id, reason = close_target(payload)
        position = await self._lifecycle.close_position(position_id, reason)
        return Outcome(DONE, None, position_result(position), position.id)

    def _entry_working(self, live: LivePosition) -> bool:
        """A market entry of a position still in the book, still filling."""
        entry = live.entry
        return (
            entry is not None
            and entry.type is OrderType.MARKET
            and not entry.status.is_terminal
            and self._book is not None
            and self._book.get(live.id) is live
        )

    def _check_account(self, row: Mapping[str, Any]) -> None:
        account = row.get("account")
        if account not in (None, self._account):
            raise ValidationError(
                "account", f"this daemon trades account {self._account!r}", account
            )
