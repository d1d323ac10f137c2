"""Keeping an open position in step with the venue, and the steps every change ends in.

``sync`` asks the venue about the position's orders: a stop or take-profit that filled
closes the position with the real exit; a growing entry gets its stop and take-profit
resized, at prices computed from the averaged fill; a stop that vanished is replaced at
once; an entry whose submit went unanswered is looked up again; a position that holds a
quantity without a working stop (an interrupted open) is protected.

This is the lower layer of core/position_lifecycle.py, which adds ticks, stop moves,
manual orders and the close on top. Two of those steps are needed here (a lost stop that
cannot be replaced is closed; a resized position moves its stop), so they are declared
abstract and the lifecycle provides them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta
from decimal import Decimal

from core.atomic_position_manager import AtomicPositionManager
from core.errors import ValidationError
from core.execution import Executor, Update
from core.journal import Journal
from core.order_model import Order, OrderPurpose, OrderStatus
from core.position_book import LivePosition, PositionBook
from core.position_model import Position, PositionStatus, position_end_note
from core.prices import PriceBoard
from core.records import Severity
from core.retry import retry_transient
from core.signals import Protection
from core.venue import ExchangeAdapter, ExchangeError, ExchangeOrder

SAMPLE_INTERVAL = timedelta(seconds=5)

_OPENING = frozenset(
    {PositionStatus.PENDING_ENTRY, PositionStatus.ENTRY_PLACED, PositionStatus.PENDING_SL}
)


_EXIT_REASON = {OrderPurpose.STOP_LOSS: "stop_loss", OrderPurpose.TAKE_PROFIT: "take_profit"}


def _changed(order: Order, seen: ExchangeOrder | None) -> bool:
    """Gone from the open list, or filled more than we know: worth a lookup."""
    return seen is None or (seen.filled or 0) > order.filled


class PositionSync(ABC):
    """Venue sync of the open positions, the fitting of their exits, and their end."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        executor: Executor,
        book: PositionBook,
        apm: AtomicPositionManager,
        prices: PriceBoard,
        *,
        sample_interval: timedelta = SAMPLE_INTERVAL,
    ) -> None:
        self._adapter = adapter
        self._exec = executor
        self._journal: Journal = executor.journal
        self._book = book
        self._apm = apm
        self._sample_interval = sample_interval
        self._prices = prices

    @abstractmethod
    async def _move_stop_locked(self, live: LivePosition, price: Decimal, reason: str) -> None:
        """Move the stop of ``live`` (market lock held); see PositionLifecycle."""

    @abstractmethod
    async def _close_locked(
        self, live: LivePosition, reason: str, *, learn_first: bool = True
    ) -> Position:
        """Close ``live`` at market (market lock held); see PositionLifecycle."""

    # -- venue sync --------------------------------------------------------------------
    async def sync(self, position_id: int) -> None:
        """Bring one position up to date with the venue."""
        live = self._book.get(position_id)
        if live is None:
            return
        async with self._book.lock(live.symbol):
            if self._book.get(position_id) is live:
                await self._sync_locked(live)

    async def sync_all(self) -> None:
        """One pass over every position at the cost of one venue listing: only positions
        whose resting orders left the open list (filled, cancelled), or whose entry is
        still working, are asked about in detail. A venue's rate limit stays untouched by
        a thousand quiet positions."""
        if not len(self._book):
            return
        listing = await retry_transient(lambda: self._adapter.fetch_open_orders())
        resting = {o.client_order_id: o for o in listing}
        for live in list(self._book):
            watched = [o for o in (live.stop, live.take_profit, *live.retired) if o is not None]
            moved = any(
                not o.status.is_terminal and _changed(o, resting.get(o.client_order_id))
                for o in watched
            )
            entry_working = live.entry is not None and not live.entry.status.is_terminal
            stop = live.stop
            # Quantity and status as the marks hold them: they change only prices, so no
            # snapshot of every position is built once a second.
            base = live.marks.base
            held = base.quantity > 0
            # Naked: holding without a working stop, whether active or still opening (an
            # open interrupted between its entry and its stop); short: a stop smaller
            # than what is held.
            naked = held and (stop is None or stop.status.is_terminal)
            naked = naked and base.status in (PositionStatus.ACTIVE, *_OPENING)
            short = (
                held
                and stop is not None
                and not stop.status.is_terminal
                and stop.amount < base.quantity
            )
            leftovers = any(not o.status.is_terminal for o in live.retired)
            if moved or entry_working or naked or short or leftovers:
                try:
                    await self.sync(live.id)
                except ExchangeError as exc:
                    # One position's trouble must not blind us to every other one.
                    self._journal.event(
                        "sync_failed",
                        f"could not sync the position: {exc}",
                        severity=Severity.WARNING,
                        position_id=live.id,
                    )

    async def _sync_locked(self, live: LivePosition) -> None:
        exit_by: str | None = None
        for order, reason in ((live.stop, "stop_loss"), (live.take_profit, "take_profit")):
            if order is None or order.status.is_terminal:
                continue
            update = await self._refresh(live, order)
            if update is None:
                continue
            live.replace_order(order, update.order)
            if update.fills:
                self._apm.record_exit_fills(live, update)
                exit_by = reason
        if live.entry is not None and not live.entry.status.is_terminal:
            await self._follow_entry(live)
        for order in [o for o in live.retired if not o.status.is_terminal]:
            await self._cancel(live, order)  # a stop left behind by a move (failure mode 8)
        if self._book.get(live.id) is not live:
            return  # finished while following the entry (it never reached the venue)
        if exit_by is not None and live.position.quantity == 0:
            await self._end(live, exit_by)
            return
        if live.position.quantity == 0:
            return
        stop = live.stop
        if live.position.status in _OPENING:
            if stop is None or stop.status.is_terminal:
                # Holding, still opening, no working stop: an open that was interrupted,
                # or an entry found filled late. Protect it (or roll it back) now.
                self._journal.event(
                    "protecting",
                    "position holds a quantity without a stop while opening; placing one",
                    severity=Severity.WARNING,
                    position_id=live.id,
                    quantity=live.position.quantity,
                )
                await self._apm.protect(live)
            return
        if live.position.status is PositionStatus.ACTIVE:
            if stop is None or (stop.status.is_terminal and stop.status is not OrderStatus.FILLED):
                await self._replace_lost_stop(live)
            else:
                # One-cancels-other, partly: a partial fill of the stop or take-profit
                # (or a grown entry) leaves the others fitted to what is still held.
                await self._fit_exits(live)

    async def _refresh(self, live: LivePosition, order: Order) -> Update | None:
        try:
            return await self._exec.refresh(order)
        except ExchangeError as exc:
            self._journal.event(
                "sync_failed",
                f"could not refresh order: {exc}",
                severity=Severity.WARNING,
                position_id=live.id,
                client_order_id=order.client_order_id,
            )
            return None

    async def _follow_entry(self, live: LivePosition) -> None:
        """A resting or partly filled entry: protect what filled, resize as it grows."""
        entry = live.entry
        assert entry is not None
        if entry.status is OrderStatus.SUBMITTED and entry.exchange_order_id is None:
            # A submit the venue never answered (failure mode 14): by client id, by the
            # account's fills, by the venue position; critical while unresolved.
            update = await self._apm.resolve_entry(live)
        else:
            update = await self._refresh(live, entry)
        if update is None or self._book.get(live.id) is not live:
            return
        live.entry = update.order
        if update.order.exchange_order_id and live.position.exchange_order_id is None:
            self._set(live, "entry_found", exchange_order_id=update.order.exchange_order_id)
        before, average = live.position.quantity, live.position.entry_price
        self._apm.entry_fills(live, update)
        if live.position.quantity == before:
            return
        if live.stop is None or live.position.status in _OPENING:
            await self._apm.protect(live)
            return
        await self._entry_grew(live, average)

    async def _entry_grew(self, live: LivePosition, previous_average: Decimal | None) -> None:
        """More of the entry filled: the stop and take-profit cover the new quantity, at
        prices computed from the new averaged fill (a stop a rule has moved since, by
        break-even or trailing, keeps its better level)."""
        position = live.position
        assert position.entry_price is not None
        plan: Protection | None = None
        before: Protection | None = None
        try:
            plan = self._apm.plan_for(live, position.entry_price)
            if previous_average is not None:
                before = self._apm.plan_for(live, previous_average)
        except ValidationError:
            pass  # no stop computable (no default): keep the stop's price, resize it
        stop_price = position.stop_loss_price
        if plan is not None and (
            stop_price is None or before is None or stop_price == before.stop_loss
        ):
            stop_price = plan.stop_loss
        assert stop_price is not None
        await self._move_stop_locked(live, stop_price, "entry_grew")
        if self._book.get(live.id) is not live or plan is None or plan.take_profit is None:
            return
        await self._resize_take_profit(live, plan.take_profit)

    async def _resize_take_profit(self, live: LivePosition, trigger: Decimal) -> None:
        """Replace the take-profit by one for the open quantity at ``trigger``. Not
        protection, so the old one goes first: two would close more than intended."""
        old = live.take_profit
        quantity = live.position.quantity
        if old is not None and not old.status.is_terminal:
            if old.remaining == quantity and old.trigger_price == trigger:
                return
            await self._cancel(live, old)
            if self._book.get(live.id) is not live:
                return  # it filled while being cancelled: that closed the position
            if live.take_profit is not None and not live.take_profit.status.is_terminal:
                return  # the cancel did not go through; keep it rather than add a second
        await self._apm.place_take_profit(live, trigger)

    async def _replace_lost_stop(self, live: LivePosition) -> None:
        """The stop is gone (cancelled on the venue by someone else): protect at once."""
        price = live.position.stop_loss_price
        assert price is not None
        self._journal.event(
            "stop_missing",
            "the position's stop is no longer on the venue; placing a new one",
            severity=Severity.CRITICAL,
            position_id=live.id,
        )
        lost = live.stop
        if lost is not None:
            live.retired.append(lost)  # keep its history; it no longer protects anything
        if await self._apm.place_stop(live, price, live.position.quantity) is None:
            # No stop can be placed: close at market rather than stay naked. The sync that
            # brought us here already learned what the venue knows; do not re-enter it.
            await self._close_locked(live, "stop_lost", learn_first=False)

    # -- fitting and ending -------------------------------------------------------------
    async def _fit_exits(self, live: LivePosition) -> None:
        """The position's size changed (a partial exit, a manual order): its stop and
        take-profit are resized to what is held. The stop by create-then-cancel (never a
        moment unprotected), the take-profit after it (two would close too much)."""
        quantity = live.position.quantity
        stop, price = live.stop, live.position.stop_loss_price
        if (
            stop is not None
            and price is not None
            and not stop.status.is_terminal
            and stop.remaining != quantity
        ):
            await self._move_stop_locked(live, price, "resized")
        if self._book.get(live.id) is not live:
            return
        tp = live.take_profit
        if (
            tp is not None
            and tp.trigger_price is not None
            and not tp.status.is_terminal
            and tp.remaining != quantity
        ):
            await self._resize_take_profit(live, tp.trigger_price)

    async def _end(self, live: LivePosition, reason: str) -> Position:
        """The position is flat: its other orders go (one-cancels-other), then the close
        is recorded, which also ends every order bound to it (AtomicPositionManager.finish)."""
        note = position_end_note(live.id, PositionStatus.CLOSED, reason)
        for order in live.live_orders():
            await self._cancel(live, order, note)
            if self._book.get(live.id) is not live:
                break
        if self._book.get(live.id) is not live:
            return live.position  # a cancelled order had filled and closed it meanwhile
        return await self._apm.finish(live, PositionStatus.CLOSED, reason)

    async def _cancel(self, live: LivePosition, order: Order, note: str | None = None) -> None:
        """Cancel one order of the position and account for anything it filled."""
        try:
            update = await self._exec.cancel(order, note)
        except ExchangeError as exc:
            self._journal.event(
                "cancel_failed",
                f"cancel failed, will retry at the next sync: {exc}",
                severity=Severity.WARNING,
                position_id=live.id,
                client_order_id=order.client_order_id,
            )
            return
        live.replace_order(order, update.order)
        if update.fills:
            self._apm.record_exit_fills(live, update)
            if note is None and live.position.quantity == 0 and self._book.get(live.id) is live:
                # The order we were cancelling filled first: it closed the position.
                reason = _EXIT_REASON.get(order.purpose, "closed_on_venue")
                await self._end(live, reason)

    # -- helpers -----------------------------------------------------------------------
    def _set(self, live: LivePosition, what: str, **changes: object) -> None:
        live.position = live.position.evolve(**changes)
        self._journal.position(live.position, what)
