"""The state every step of a position's open and close shares, and the one terminal step.

The atomic open is built in layers, one concept per module, each a class over the one
below: this shared state and ``finish`` (core/position_steps.py); learning what an entry
did when the venue did not say (core/entry_lookup.py); closing what is held and the
rollback (core/position_exits.py); placing the protective orders
(core/protection.py); and the open itself (core/atomic_position_manager.py). A step
only calls the layers below it, so the order of the chain is the order of dependence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from core.audit_gate import TrailHealth
from core.execution import Executor
from core.journal import Journal
from core.money import utcnow
from core.order_model import Order
from core.position_book import LivePosition, PositionBook
from core.position_model import Position, PositionStatus, position_end_note
from core.records import Severity
from core.retry import retry_transient
from core.venue import (
    ExchangeAdapter,
    ExchangeError,
)


class PositionIds(Protocol):
    """Source of position ids; must not await (ids are reserved ahead of need)."""

    def next_position_id(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ApmConfig:
    """Tunables of the atomic open. Defaults suit a live venue; tests shorten them."""

    account: str
    default_stop_pct: Decimal | None = Decimal(2)
    default_tp_pct: Decimal | None = None
    stop_tries: int = 3
    stop_backoff_s: float = 0.2
    breakeven_pct: Decimal | None = None
    trailing_activation_pct: Decimal | None = None
    trailing_callback_pct: Decimal | None = None
    fill_timeout_s: float = 5.0
    flat_timeout_s: float = 30.0
    rollback_backoff_max_s: float = 30.0
    # Stop moves (break-even, trailing): at least this many ticks of improvement, at most
    # one move per interval (TRADER_STOP_MOVE_MIN_TICKS, TRADER_STOP_MOVE_INTERVAL_S).
    stop_move_min_ticks: int = 1
    stop_move_interval_s: float = 1.0
    # The account's leverage, for the pre-trade margin check (None: no check; the venue
    # refuses what it cannot margin, after the entry was sent).
    leverage: Decimal | None = None
    # The fee rate a closing stop pays (a fraction, 0.00055 = 0.055 %), for the break-even
    # level; None assumes the entry's own fee rate.
    exit_fee_rate: Decimal | None = None


class PositionSteps:
    """The collaborators and tunables of the position steps, and ending a position."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        executor: Executor,
        book: PositionBook,
        ids: PositionIds,
        config: ApmConfig,
        *,
        last_price: Callable[[str], Decimal | None] = lambda _symbol: None,
        trail: TrailHealth | None = None,
    ) -> None:
        self._adapter = adapter
        self._exec = executor
        self._journal: Journal = executor.journal
        self._book = book
        self._ids = ids
        self._cfg = config
        self._last_price = last_price
        self._trail = trail  # no new position while the audit trail cannot be kept
        # Ends the orders bound to a position that were placed apart from it (manual ones
        # with --position): set by the wiring to the order manager's, see finish().
        self._end_bound: Callable[[int, str], Awaitable[None]] | None = None
        # Told, in seconds, how long an open took from its intent to its accepted stop
        # (market entries protected in the open itself): the metrics' histogram.
        self.on_protected: Callable[[float], None] | None = None

    def on_position_end(self, hook: Callable[[int, str], Awaitable[None]]) -> None:
        """Call ``hook(position_id, note)`` whenever a position ends (see finish())."""
        self._end_bound = hook

    # -- helpers -------------------------------------------------------------------------
    async def _current_price(self, symbol: str) -> Decimal:
        price = self._last_price(symbol)
        if price is None:
            price = (await retry_transient(lambda: self._adapter.fetch_price(symbol))).price
        return price

    def _set(self, live: LivePosition, what: str, **changes: object) -> None:
        live.position = live.position.evolve(**changes)
        self._journal.position(live.position, what)

    async def finish(self, live: LivePosition, status: PositionStatus, reason: str) -> Position:
        """Terminal: record the outcome, free the market, and end every order still bound
        to the position, in this one step, whatever ended it (its stop, its take-profit,
        a close, a rollback, a failed open, a close found by reconciliation).

        The position's own orders (stop, take-profit, moved stops) have been cancelled
        by the caller, which accounts for what they filled; anything still live here is
        cancelled now with the position's exit as the reason. Then the hook ends the
        manual orders placed with ``--position`` (disarmed if emulated, cancelled on the
        venue if resting), so none can fire against a flat account or the next position.
        The market is released first, so a fill such a cancel reveals is recorded as the
        order's own, not folded into a position that no longer exists."""
        note = position_end_note(live.id, status, reason)
        self._set(live, status.value, status=status, exit_reason=reason, closed_at=utcnow())
        self._book.release(live)
        if status is not PositionStatus.CLOSED:
            self._journal.event(
                f"position_{status.value}",
                reason,
                severity=Severity.ERROR if status is PositionStatus.FAILED else Severity.WARNING,
                position_id=live.id,
            )
        for order in live.live_orders():
            await self._cancel_leftover(live, order, note)
        if self._end_bound is not None:
            await self._end_bound(live.id, note)
        return live.position

    async def _cancel_leftover(self, live: LivePosition, order: Order, note: str) -> None:
        """Cancel an order of an ended position; its fills are journaled as they are."""
        try:
            update = await self._exec.cancel(order, note)
        except ExchangeError as exc:
            self._journal.event(
                "cancel_failed",
                f"could not cancel an order of the ended position: {exc}",
                severity=Severity.CRITICAL,
                position_id=live.id,
                client_order_id=order.client_order_id,
            )
            return
        live.replace_order(order, update.order)
        for fill in update.fills:
            self._journal.fill(update.order, fill)
