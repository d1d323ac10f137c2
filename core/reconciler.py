"""Reconciliation: making our records and the venue agree, at start-up and periodically.

At start-up :meth:`Reconciler.restore` rebuilds the in-memory book from what the database
last knew; :meth:`Reconciler.reconcile` (at start and every few seconds) then applies the
rules below (docs/architecture.md, 'Positions'), every action an event:

- orders we think live are fetched by client id: fills that happened while we were down
  are applied, and a position closed on the venue is closed here with the real exit;
- a position of ours on the venue without a stop for its full quantity gets one at once;
- an entry that never filled (cancelled, expired) is not treated as filled: its position
  fails and no stop is placed for something that does not exist (failure mode 15);
- a venue position with no record, but whose fills carry our client ids (a crash between
  the entry and the audit write), is adopted and protected;
- our orders that belong to no live position or request are cancelled (orphans);
- anything of unknown origin is reported, and left alone.

The last three rules are the venue sweep, in core/venue_sweep.py.

When the positions endpoint and our orders disagree (a lagging endpoint), the orders win:
a reduce-only stop is placed for what our fills say we hold, and the venue's refusal of
that stop is what proves the market flat. A position the venue shows flat while our
orders say we hold it is looked up in the venue's fills since it opened: executions that
closed it (a manual close, a liquidation) are recorded as its exit with realised P&L, and
it is closed. Only when no such execution can be found, and the venue has shown it flat
for ``flat_confirm_s`` (a lagging endpoint shows a fresh position flat for a while), is it
closed without an exit, with a critical event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

from core.atomic_position_manager import AtomicPositionManager
from core.execution import Executor
from core.journal import Journal
from core.money import ZERO
from core.order_manager import OrderManager
from core.order_model import Order, OrderPurpose, OrderStatus
from core.position_book import LivePosition, PositionBook
from core.position_lifecycle import PositionLifecycle
from core.position_model import Position, PositionStatus
from core.records import Severity
from core.retry import retry_transient
from core.venue import (
    ExchangeAdapter,
    ExchangeError,
    OrderNotFound,
)
from core.venue_sweep import VenueSweep, restored_signal

# The events raised when our records and the venue disagree and something is done about it
# (here, in core/venue_sweep.py and core/position_sync.py): what an operator counts.
DISCREPANCY_EVENTS = frozenset(
    {
        "protecting",
        "closed_on_venue",
        "closed_elsewhere",
        "venue_flat_suspected",
        "orphan_cancelled",
        "adopted",
        "unknown_order",
        "unknown_position",
        "stop_missing",
    }
)

_OPENING = (PositionStatus.PENDING_ENTRY, PositionStatus.ENTRY_PLACED, PositionStatus.PENDING_SL)


class Reconciler:
    """Brings the book, the audit trail and the venue into agreement."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        executor: Executor,
        book: PositionBook,
        apm: AtomicPositionManager,
        lifecycle: PositionLifecycle,
        orders: OrderManager,
        *,
        account: str,
        symbols: Sequence[str],
        flat_confirm_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._adapter = adapter
        self._exec = executor
        self._journal: Journal = executor.journal
        self._book = book
        self._apm = apm
        self._lifecycle = lifecycle
        self._orders = orders
        self._account = account
        self._symbols = list(symbols)
        self._sweep = VenueSweep(adapter, executor.journal, book, apm, orders, account=account)
        # Position id -> when the venue first showed it flat while our fills say held.
        self._flat_seen: dict[int, float] = {}
        self._flat_confirm_s = flat_confirm_s
        self._clock = clock

    # -- start-up ----------------------------------------------------------------------
    def restore(self, positions: Iterable[Position], orders: Iterable[Order]) -> None:
        """Rebuild the book from the database's view.

        ``orders`` must hold every order of the given positions, terminal ones included
        (a FILLED entry is what says the position exists), and the live manual orders.
        """
        by_position: dict[int, list[Order]] = {}
        manual: list[Order] = []
        for order in orders:
            if order.position_id is not None and order.purpose is not OrderPurpose.MANUAL:
                by_position.setdefault(order.position_id, []).append(order)
            else:
                manual.append(order)
        for position in positions:
            if position.status.is_terminal:
                continue
            live = self._book.claim(position, restored_signal(position))
            for order in sorted(by_position.get(position.id, []), key=lambda o: o.created_at):
                _attach(live, order)
                live.note_client_id(order.client_order_id, order.purpose)
            live.rules = self._apm.rules_for(live)
            self._journal.event(
                "restored", "position restored from the database", position_id=position.id
            )
        for order in manual:
            owner = self._book.get(order.position_id) if order.position_id is not None else None
            if owner is not None and order.filled > 0:
                owner.linked[order.client_order_id] = order
        armed = self._orders.rearm(manual)
        for order in manual:
            if not order.emulated or order.status is not OrderStatus.PENDING:
                self._orders.track(order)
        if armed:
            self._journal.event("rearmed", f"{armed} emulated orders re-armed", count=armed)

    # -- the rules ---------------------------------------------------------------------
    async def reconcile(self) -> None:
        """One full pass: every known position, then the venue sweep."""
        for live in list(self._book):
            try:
                await self._position(live)
            except ExchangeError as exc:
                self._journal.event(
                    "reconcile_failed",
                    f"could not reconcile the position: {exc}",
                    severity=Severity.WARNING,
                    position_id=live.id,
                )
        # Orders bound to a position that is no longer open (restored after a restart,
        # or a cancel that failed when it ended) are ended now, never re-armed or left.
        await self._orders.end_orphans()
        await self._sweep.sweep()

    async def _position(self, live: LivePosition) -> None:
        async with self._book.lock(live.symbol):
            if self._book.get(live.id) is not live:
                return
            entered, exited = await self._refresh_orders(live)
            held = max(entered - exited, ZERO)
            venue = await self._venue_position(live)
            if held == 0 and venue > 0 and live.position.quantity > 0:
                # Our orders account for nothing, yet the venue holds our side: believe
                # the venue and protect it rather than call the position closed.
                held = venue
            if live.position.status is PositionStatus.CLOSING:
                await self._finish_close(live, held)
            elif held > 0:
                if venue == 0 and live.position.status is PositionStatus.ACTIVE:
                    if await self._closed_elsewhere(live):
                        return
                    held = min(held, live.position.quantity)  # less any exit it found
                else:
                    self._flat_seen.pop(live.id, None)
                await self._protect(live, held)
            elif entered == 0:
                if live.entry is not None and not live.entry.status.is_terminal:
                    return  # a limit entry still resting, nothing filled: nothing to protect
                # Cancelled or expired without a fill: no position exists (failure mode 15).
                await self._apm.finish(live, PositionStatus.FAILED, "entry never filled")
            else:
                await self._closed_on_venue(live)

    def _flat_for_long(self, live: LivePosition) -> bool:
        """Our orders say we hold, the venue says flat, and no execution explains it. A
        lagging positions endpoint shows a fresh position flat for a while; flat on two
        passes at least ``flat_confirm_s`` apart is a position closed on the venue by
        something whose executions we cannot see."""
        now = self._clock()
        first = self._flat_seen.get(live.id)
        if first is not None and now - first >= self._flat_confirm_s:
            return True
        if first is None:
            self._flat_seen[live.id] = now
            self._journal.event(
                "venue_flat_suspected",
                "the venue shows no position while our orders say we hold one; rechecking",
                severity=Severity.WARNING,
                position_id=live.id,
            )
        return False

    async def _closed_elsewhere(self, live: LivePosition) -> bool:
        """The venue shows flat what our orders say we hold: find what closed it.

        The venue's fills since the position opened are the evidence: executions on the
        closing side that no order of ours made are recorded as the exit, with realised
        P&L, and close the position. Without such evidence it is closed only once the
        venue has shown it flat for long enough, with a critical event. Returns True
        when the position was closed.
        """
        await self._apm.learn_exits(live)
        if live.position.quantity == 0:
            self._flat_seen.pop(live.id, None)
            self._journal.event(
                "closed_elsewhere",
                f"the venue closed this position outside the daemon at {live.position.exit_price};"
                f" exit recorded from the venue's fills, realised P&L {live.position.realized_pnl}",
                severity=Severity.WARNING,
                position_id=live.id,
            )
            await self._apm.finish(live, PositionStatus.CLOSED, "closed_on_venue")
            return True
        if not self._flat_for_long(live):
            return False
        self._flat_seen.pop(live.id, None)
        self._journal.event(
            "closed_elsewhere",
            f"the venue closed this position outside the daemon and no execution of it can"
            f" be found; {live.position.quantity} closed at an unknown price, realised P&L not"
            " recorded — check the venue's history",
            severity=Severity.CRITICAL,
            position_id=live.id,
            quantity=live.position.quantity,
        )
        await self._apm.finish(live, PositionStatus.CLOSED, "closed_on_venue")
        return True

    async def _venue_position(self, live: LivePosition) -> Decimal:
        """The venue's quantity on this market on our side (0 when flat or lagging)."""
        positions = await retry_transient(lambda: self._adapter.fetch_positions([live.symbol]))
        return sum(
            (
                p.quantity
                for p in positions
                if p.symbol == live.symbol and p.side is live.position.side
            ),
            ZERO,
        )

    async def _refresh_orders(self, live: LivePosition) -> tuple[Decimal, Decimal]:
        """Bring the position's live orders up to date (recording any executions they
        reveal) and return what our fills say was entered and exited."""
        for order in [o for o in (live.entry, live.stop, live.take_profit, *live.retired) if o]:
            if order.status.is_terminal:
                continue  # its executions are in its (restored) fills already
            try:
                update = await self._exec.refresh(order)
            except OrderNotFound:
                live.replace_order(order, self._vanished(order))
                continue
            live.replace_order(order, update.order)
            if not update.fills:
                continue
            if order.purpose is OrderPurpose.ENTRY:
                for fill in update.fills:
                    self._journal.fill(update.order, fill, signal_id=live.position.signal_id)
            else:
                self._apm.record_exit_fills(live, update)
        orders = [o for o in (live.entry, live.stop, live.take_profit, *live.retired) if o]
        entered = sum((o.filled for o in orders if o.purpose is OrderPurpose.ENTRY), ZERO)
        exited = sum((o.filled for o in orders if o.purpose is not OrderPurpose.ENTRY), ZERO)
        # Manual orders placed for the position moved it too (the order manager keeps them
        # current): an exit-side one reduced it, an entry-side one grew it.
        closing = live.position.side.exit_side
        for linked in live.linked.values():
            if linked.side is closing:
                exited += linked.filled
            else:
                entered += linked.filled
        return entered, exited

    def _vanished(self, order: Order) -> Order:
        """A live order the venue no longer knows: never sent (FAILED) or gone (CANCELLED)."""
        if order.status in (OrderStatus.PENDING, OrderStatus.TRIGGERED, OrderStatus.SUBMITTED):
            return self._exec.mark_failed(order, "never reached the venue")
        gone = order.with_status(OrderStatus.CANCELLED, error="not on the venue at reconciliation")
        self._journal.order(gone, "vanished", order.status)
        return gone

    async def _protect(self, live: LivePosition, held: Decimal) -> None:
        """Our fills say we hold ``held``: make sure a stop covers it."""
        position = live.position
        if position.quantity != held:
            live.position = position.evolve(quantity=held, entry_price=_entry_price(live, position))
            self._journal.position(live.position, "quantity_reconciled")
        stop = live.stop
        covered = stop is not None and not stop.status.is_terminal and stop.amount >= held
        if covered and live.position.status is PositionStatus.ACTIVE:
            return
        self._journal.event(
            "protecting",
            "position held without a full stop; placing one",
            severity=Severity.WARNING,
            position_id=live.id,
            quantity=held,
        )
        if live.position.stop_loss_price is None or live.position.status in _OPENING:
            await self._apm.protect(live)
            return
        new = await self._apm.place_stop(live, live.position.stop_loss_price, held)
        if new is None:
            await self._apm.rollback(live, "no stop could be placed at reconciliation")
            return
        if stop is not None and not stop.status.is_terminal:
            live.replace_order(stop, (await self._exec.cancel(stop)).order)

    async def _closed_on_venue(self, live: LivePosition) -> None:
        """Our fills say flat, but the position was open: it closed on the venue."""
        exit_order = next(
            (o for o in (live.stop, live.take_profit, *live.retired) if o and o.filled > 0), None
        )
        reason = "closed_on_venue"
        if exit_order is not None:
            reason = {
                OrderPurpose.STOP_LOSS: "stop_loss",
                OrderPurpose.TAKE_PROFIT: "take_profit",
            }.get(exit_order.purpose, reason)
            fills = await retry_transient(
                lambda: self._adapter.fetch_fills(
                    live.symbol, exchange_order_id=exit_order.exchange_order_id
                )
            )
            for fill in fills:
                qty = min(fill.amount, live.position.quantity)
                if qty > 0 and live.position.entry_price is not None:
                    live.position, realized = live.position.with_exit_fill(
                        fill.price, qty, fill.fee
                    )
                    self._journal.fill(exit_order, fill, realized_pnl=realized)
        self._journal.event(
            "closed_on_venue", f"position found closed on the venue ({reason})", position_id=live.id
        )
        await self._apm.finish(live, PositionStatus.CLOSED, reason)

    async def _finish_close(self, live: LivePosition, held: Decimal) -> None:
        if held > 0:
            live.position = live.position.evolve(quantity=held)
            await self._apm.flatten(live, OrderPurpose.EXIT)
        await self._apm.finish(live, PositionStatus.CLOSED, live.position.exit_reason or "manual")


def _entry_price(live: LivePosition, position: Position) -> Decimal | None:
    if position.entry_price is not None:
        return position.entry_price
    return live.entry.average_price if live.entry is not None else None


def _attach(live: LivePosition, order: Order) -> None:
    """Put a restored order in its slot; a newer live stop retires an older one."""
    slot = {
        OrderPurpose.ENTRY: "entry",
        OrderPurpose.STOP_LOSS: "stop",
        OrderPurpose.TAKE_PROFIT: "take_profit",
    }.get(order.purpose)
    if slot is None:
        live.retired.append(order)
        return
    current: Order | None = getattr(live, slot)
    if current is not None and (order.status.is_terminal and not current.status.is_terminal):
        live.retired.append(order)
        return
    if current is not None:
        live.retired.append(current)
    setattr(live, slot, order)
