"""An open position's life after the atomic open: price tracking, stop moves, fills that
happen on the venue, and the close.

- ``close_position`` closes at market (reduce-only, side from the position), records the
  exit with realised P&L, then cancels every other order of the position: no orphan stop
  (failure mode 8). It learns first whether the stop already fired, so a close is never
  counted twice (failure mode 12).
- ``move_stop`` places the new reduce-only stop first and cancels the old one second, so
  there is no instant without a stop (failure mode 9); a stop that would fire at once
  becomes a market close.
- ``sync`` asks the venue about the position's orders: a stop or take-profit that filled
  closes the position with the real exit; a growing entry gets its stop and take-profit
  resized, at prices computed from the averaged fill; a stop that vanished is replaced
  at once; an entry whose submit went unanswered is looked up again; a position that
  holds a quantity without a working stop (an interrupted open) is protected. It lives
  in the layer below, core/position_sync.py, with the fitting of exits and the end.
- ``on_tick`` marks positions to the price, samples them (throttled) and returns the stop
  moves that break-even or trailing call for; the caller runs them as tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.errors import ValidationError
from core.execution import Update
from core.models import Tick
from core.money import utcnow
from core.order_model import OrderPurpose
from core.position_book import LivePosition
from core.position_model import Position, PositionStatus
from core.position_sync import PositionSync
from core.positions import stop_is_through, stop_target
from core.records import Severity
from core.stop_gate import StopGate
from core.venue import ExchangeError


@dataclass(frozen=True, slots=True)
class StopMove:
    """A decision to move ``position_id``'s stop to ``price``."""

    position_id: int
    price: Decimal


_NO_MOVES: tuple[StopMove, ...] = ()
_ACTIVE = PositionStatus.ACTIVE  # read on every tick: a global, not an enum class lookup


class PositionLifecycle(PositionSync):
    """Everything that happens to a position between its open and its close."""

    # -- ticks -------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> tuple[StopMove, ...]:
        """Mark positions on ``tick.symbol``; return the stop moves due. Never awaits."""
        live = self._book.on_symbol(tick.symbol)
        if live is None:
            return _NO_MOVES
        marks = live.marks
        if marks.base.status is not _ACTIVE:
            return _NO_MOVES
        price = tick.price
        marks.mark(price)
        next_sample = live.next_sample
        if next_sample is None or tick.ts >= next_sample:
            live.last_sample = tick.ts
            live.next_sample = tick.ts + self._sample_interval
            self._journal.sample(live.position)
        rules = live.rules
        if rules is None or live.busy:
            return _NO_MOVES
        gate = live.gate
        if gate is None or not gate.fits(marks, rules):
            # The venue's markets are loaded once per process (exchanges/ccxt_markets.py
            # caches them, the paper table is fixed), so the tick size is looked up only
            # when the levels are rebuilt, not on every tick.
            gate = live.gate = StopGate(marks, rules, self._adapter.market(live.symbol).tick_size)
        # Most ticks end here: the price is short of every level that can move the stop,
        # or the last move is too recent.
        if not gate.due(price) or gate.waiting(live.last_stop_move, tick.ts):
            return _NO_MOVES
        target = stop_target(live.position, price, rules, gate.tick, live.last_stop_move, tick.ts)
        return _NO_MOVES if target is None else (StopMove(live.id, target),)

    # -- stop moves --------------------------------------------------------------------
    async def move_stop(self, position_id: int, price: Decimal, reason: str = "trailing") -> None:
        """Move the stop: new one placed first, old one cancelled second."""
        live = self._book.get(position_id)
        if live is None:
            return
        async with self._book.lock(live.symbol):
            if self._book.get(position_id) is not live or live.busy:
                return
            live.busy = True
            try:
                await self._move_stop_locked(live, price, reason)
            finally:
                live.busy = False

    async def _move_stop_locked(self, live: LivePosition, price: Decimal, reason: str) -> None:
        position = live.position
        current = self._prices.price(live.symbol)
        if current is not None and stop_is_through(position.side, price, current):
            await self._close_locked(live, f"{reason}_stop_through")
            return
        old = live.stop
        new = await self._apm.place_stop(live, price, position.quantity)
        live.last_stop_move = utcnow()
        if new is None:
            covered = (
                old is not None and not old.status.is_terminal and old.amount >= position.quantity
            )
            self._journal.event(
                "stop_move_failed",
                f"could not move the stop to {price}; the old stop stays"
                + ("" if covered else f" and does not cover {position.quantity}"),
                severity=Severity.WARNING if covered else Severity.CRITICAL,
                position_id=live.id,
            )
            return
        self._set(live, "stop_moved", stop_loss_price=price)
        if old is not None:
            await self._cancel(live, old)

    # -- manual orders linked to a position --------------------------------------------
    async def apply_order_fills(self, update: Update) -> bool:
        """Fills of a manual order placed for a position (``--position``): a fill on the
        closing side reduces it and realises P&L, one on the opening side grows it; the
        stop is resized to the new quantity, and a position brought to zero is closed.
        Returns False when no open position claims the order (the caller records them)."""
        order = update.order
        live = self._book.get(order.position_id) if order.position_id is not None else None
        if live is None or not update.fills:
            return False
        async with self._book.lock(live.symbol):
            if self._book.get(live.id) is not live:
                return False
            live.linked[order.client_order_id] = order
            if order.side is live.position.side.exit_side:
                self._apm.record_exit_fills(live, update)
                if live.position.quantity == 0:
                    await self._end(live, "manual_order")
                    return True
            else:
                self._apm.entry_fills(live, update)
            await self._fit_exits(live)
        return True

    # -- closing -----------------------------------------------------------------------
    async def close_position(self, position_id: int, reason: str = "manual") -> Position:
        """Close at market, record the exit, cancel every other order of the position."""
        live = self._book.get(position_id)
        if live is None:
            raise ValidationError("position_id", "no open position with this id", position_id)
        async with self._book.lock(live.symbol):
            if self._book.get(position_id) is not live:
                return live.position  # closed while we waited for the lock
            return await self._close_locked(live, reason)

    async def _close_locked(
        self, live: LivePosition, reason: str, *, learn_first: bool = True
    ) -> Position:
        if learn_first:
            await self._sync_locked(live)
            if self._book.get(live.id) is not live:
                return live.position  # the stop or take-profit closed it just now
        if live.entry is not None and not live.entry.status.is_terminal:
            cancelled = await self._exec.cancel(live.entry)
            live.entry = cancelled.order
            self._apm.entry_fills(live, cancelled)
        self._set(live, "closing", status=PositionStatus.CLOSING)
        if live.position.quantity > 0:
            try:
                await self._apm.flatten(live, OrderPurpose.EXIT)
            except ExchangeError as exc:
                # Still held (our fills say so, whatever the positions endpoint shows).
                # The stop, if any, stays; reconciliation retries the close.
                stop = live.stop
                guard = "its stop stays" if stop and not stop.status.is_terminal else "NO STOP"
                self._journal.event(
                    "close_failed",
                    f"close did not complete, {live.position.quantity} still held"
                    f" ({guard}); retrying at reconciliation: {exc}",
                    severity=Severity.CRITICAL,
                    position_id=live.id,
                )
                raise
        return await self._end(live, reason)
