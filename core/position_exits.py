"""Closing what a position holds: the reduce-only flatten, exits the venue made on its
own, and the rollback of an open that could not be protected (failure modes 4, 5, 6).

Flatness is decided by our own fills (entered minus exited) and only corroborated by the
positions endpoint, which may lag either way. A rollback that fails in any step keeps
retrying and raises a critical event every time; it never goes quiet.
"""

from __future__ import annotations

import asyncio

from core.entry_lookup import EntryLookup
from core.execution import Update
from core.ids import is_ours
from core.money import ZERO
from core.order_model import Fill, Order, OrderPurpose, OrderStatus, OrderType
from core.position_book import LivePosition
from core.position_model import Position, PositionStatus
from core.records import Severity
from core.retry import Backoff, retry_transient
from core.venue import (
    ExchangeError,
    OrderNotFound,
    OrderRejected,
    TransientExchangeError,
)


class PositionExits(EntryLookup):
    """Flattens positions, learns the exits the venue made, rolls failed opens back."""

    # -- rollback ------------------------------------------------------------------------
    async def rollback(self, live: LivePosition, reason: str) -> Position:
        """Stop the entry, close what filled (reduce-only, on the side derived from the
        position), until our fills say flat and the venue agrees. Every failed attempt
        is a critical event and the next one follows after a back-off: never quiet."""
        self._journal.event(
            "rollback_started", reason, severity=Severity.ERROR, position_id=live.id
        )
        attempt = 0
        while True:
            try:
                await self._unwind(live)
                break
            except ExchangeError as exc:
                attempt += 1
                self._journal.event(
                    "rollback_failed",
                    f"rollback attempt {attempt} failed, position may be unprotected: {exc}",
                    severity=Severity.CRITICAL,
                    position_id=live.id,
                    held=live.position.quantity,
                )
                # The exponent is capped: a float of 2**1024 overflows, and this loop
                # may run for days against a venue that keeps refusing.
                delay = min(0.5 * 2 ** min(attempt, 30), self._cfg.rollback_backoff_max_s)
                await asyncio.sleep(delay)
        return await self.finish(live, PositionStatus.ROLLED_BACK, reason)

    async def _unwind(self, live: LivePosition) -> None:
        """One rollback attempt: cancel the entry if it still works, close what filled."""
        entry = live.entry
        if entry is not None and not entry.status.is_terminal:
            try:
                cancelled = await self._exec.cancel(entry)
            except ExchangeError:
                # The entry may go on filling. Close what it filled so far now rather
                # than after the cancel goes through, then let the loop retry the cancel.
                await self._learn_entry(live)
                await self.flatten(live, OrderPurpose.ROLLBACK)
                raise
            live.entry = cancelled.order
            self.entry_fills(live, cancelled)
            if not live.entry.status.is_terminal:
                await self.flatten(live, OrderPurpose.ROLLBACK)
                raise OrderRejected(f"entry {entry.client_order_id} is still working")
        await self.flatten(live, OrderPurpose.ROLLBACK)

    async def _learn_entry(self, live: LivePosition) -> None:
        """Best effort: what the working entry has filled so far."""
        entry = live.entry
        assert entry is not None
        try:
            update = await self._exec.refresh(entry)
        except ExchangeError:
            fills = await self._fills_of(live, entry)
            if not fills:
                return
            update = self._fold_fills(entry, fills, "found_by_fills")
        live.entry = update.order
        self.entry_fills(live, update)

    async def flatten(self, live: LivePosition, purpose: OrderPurpose) -> None:
        """Market-close the open quantity reduce-only until our fills say flat, then wait
        for the positions endpoint to agree.

        A refused close does not prove anything by itself: our resting orders and the
        account's fills are asked what closed the position. Only when they account for
        the whole quantity is the position flat; a positions endpoint showing nothing is
        never enough (it lags). Otherwise the refusal is raised for the caller to retry.
        """
        while live.position.quantity > 0:
            # The exit side comes from the position, never the entry's (failure mode 4);
            # the amount is what our fills say is open (failure mode 5).
            order = live.new_order(purpose, OrderType.MARKET, live.position.quantity)
            self._journal.order(order, "created")
            try:
                update = await self._exec.submit(order)
            except TransientExchangeError:
                sent = order.with_status(OrderStatus.SUBMITTED)
                live.retired.append(sent)
                update = await self._exec.settle(sent, timeout_s=self._cfg.fill_timeout_s)
                live.replace_order(sent, update.order)
            except OrderRejected as exc:
                await self.learn_exits(live)
                if live.position.quantity == 0:
                    break  # a stop, a take-profit or someone else closed it
                raise OrderRejected(
                    f"close refused while our fills say {live.position.quantity} is held: {exc}"
                ) from exc
            else:
                live.retired.append(update.order)
            # Every execution is applied the moment it is learned: a later step that
            # raises (a cancel during an outage) must not leave a fill unaccounted for.
            self.record_exit_fills(live, update)
            if not update.order.status.is_terminal:
                more = await self._exec.settle(
                    update.order, timeout_s=self._cfg.fill_timeout_s, want=order.amount
                )
                live.replace_order(update.order, more.order)
                self.record_exit_fills(live, more)
                update = more
            if not update.order.status.is_terminal:
                # A remainder left resting would fill later behind our back: cancel it
                # before the next attempt sends a fresh order for what is still open.
                rest = await self._exec.cancel(update.order)
                live.replace_order(update.order, rest.order)
                self.record_exit_fills(live, rest)
                update = rest
            if update.order.filled == 0:
                raise OrderRejected(f"close order {order.client_order_id} did not fill")
        await self._confirm_flat(live)

    async def learn_exits(self, live: LivePosition) -> None:
        """Exits the venue made that no close of ours has recorded yet.

        First our own orders that may have executed (a stop or take-profit that fired, a
        close whose reply was lost); then the account's executions on the closing side
        since the position opened that belong to no order of ours (a manual close on the
        venue, a liquidation). Each is recorded as an exit with its realised P&L; the
        venue's order behind a foreign execution is recorded among the position's orders
        (purpose ``exit``), so it is known next time. Raises when the venue cannot be
        asked: not knowing is never taken for flat.
        """
        for order in live.live_orders():
            if order.purpose is OrderPurpose.ENTRY:
                continue
            try:
                update = await self._exec.refresh(order)
            except OrderNotFound:
                continue
            live.replace_order(order, update.order)
            self.record_exit_fills(live, update)
        if live.position.quantity == 0:
            return
        for key, group in (await self._foreign_exits(live)).items():
            if live.position.quantity == 0:
                break
            self._record_foreign_exit(live, key, group)

    async def _foreign_exits(self, live: LivePosition) -> dict[str, list[Fill]]:
        """The account's executions on the closing side since the position opened that
        no order of ours made and that are not recorded yet, grouped by their venue order."""
        opened = live.position.opened_at
        fills = await retry_transient(
            lambda: self._adapter.fetch_fills(live.symbol, since=opened), Backoff(tries=3)
        )
        known = {f.trade_id for o in live.all_orders() for f in o.fills}
        exit_side = live.position.side.exit_side
        foreign: dict[str, list[Fill]] = {}
        for fill in fills:
            if (
                fill.side is exit_side
                and fill.ts >= opened
                and fill.trade_id not in known
                and not is_ours(fill.client_order_id, live.position.account)
            ):
                key = fill.exchange_order_id or fill.client_order_id or fill.trade_id
                foreign.setdefault(key, []).append(fill)
        return foreign

    def _record_foreign_exit(self, live: LivePosition, key: str, group: list[Fill]) -> None:
        """Record the venue's order behind foreign executions among the position's orders
        (purpose ``exit``), and its fills as the position's exit."""
        order = Order(
            client_order_id=group[0].client_order_id or f"venue-{key}",
            account=live.position.account,
            exchange=live.position.exchange,
            symbol=live.symbol,
            side=live.position.side.exit_side,
            type=OrderType.MARKET,
            amount=sum((f.amount for f in group), ZERO),
            purpose=OrderPurpose.EXIT,
            position_id=live.id,
            exchange_order_id=group[0].exchange_order_id,
            status=OrderStatus.SUBMITTED,
            error_message="executed on the venue, not sent by this daemon",
        )
        update = self._fold_fills(order, group, "found_on_venue")
        live.retired.append(update.order)
        self._journal.event(
            "exit_found_on_venue",
            "an execution on the closing side that no order of ours made (a manual"
            " close, a liquidation) is recorded as the position's exit",
            severity=Severity.WARNING,
            position_id=live.id,
            client_order_id=update.order.client_order_id,
            quantity=update.order.filled,
            price=update.order.average_price,
        )
        self.record_exit_fills(live, update)

    def record_exit_fills(self, live: LivePosition, update: Update) -> None:
        """Apply exit executions: realised P&L per fill, each recorded once with the trade."""
        for fill in update.fills:
            qty = min(fill.amount, live.position.quantity)
            if qty <= 0:
                self._journal.event(
                    "fill_beyond_position",
                    "an exit fill exceeded the open quantity",
                    severity=Severity.ERROR,
                    position_id=live.id,
                    client_order_id=update.order.client_order_id,
                    trade_id=fill.trade_id,
                )
                continue
            position, realized = live.position.with_exit_fill(fill.price, qty, fill.fee)
            live.position = position
            self._journal.fill(update.order, fill, realized_pnl=realized)
        if update.fills:
            self._journal.position(live.position, "exit_filled")

    async def venue_flat(self, live: LivePosition) -> bool:
        """What the positions endpoint says (it may lag): corroboration, never proof."""
        positions = await retry_transient(
            lambda: self._adapter.fetch_positions([live.symbol]), Backoff(tries=3)
        )
        return not any(p.symbol == live.symbol and p.quantity > 0 for p in positions)

    async def _confirm_flat(self, live: LivePosition) -> None:
        """Our fills say flat: wait until the positions endpoint agrees. A lagging endpoint
        is waited out; one still showing a position at the deadline is a critical alert."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.flat_timeout_s
        while not await self.venue_flat(live):
            if loop.time() >= deadline:
                self._journal.event(
                    "not_flat",
                    "venue still shows a position after our fills say it was closed",
                    severity=Severity.CRITICAL,
                    position_id=live.id,
                )
                return
            await asyncio.sleep(0.25)
