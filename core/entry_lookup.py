"""Learning what an entry did when the venue's reply did not say (failure modes 1, 14).

The fill chain: the order by client id, then the account's fills, then the venue
position. An entry whose submit went unanswered is never taken for failed while the venue
may hold it: it is asked again until it answers, and stays ``entry_placed`` meanwhile.
"""

from __future__ import annotations

import asyncio

from core.execution import Update
from core.money import ZERO
from core.order_model import Fill, Order, OrderPurpose, OrderType
from core.position_book import LivePosition
from core.position_model import Position, PositionStatus
from core.position_steps import PositionSteps
from core.records import Severity
from core.retry import Backoff, retry_transient
from core.venue import (
    ExchangeError,
    OrderNotFound,
)


class EntryLookup(PositionSteps):
    """Finds an entry's fills by order, by the account's executions, by the venue position."""

    def _unresolved(self, live: LivePosition, why: str) -> Position:
        """The entry may have filled and we cannot tell: keep the position (and the market)
        and say so loudly; every sync pass asks the venue again."""
        self._journal.event(
            "entry_unresolved",
            f"{why}; the position stays entry_placed and is looked up at every sync until"
            " it is protected or known flat — check the venue",
            severity=Severity.CRITICAL,
            position_id=live.id,
            client_order_id=live.entry.client_order_id if live.entry else None,
        )
        return live.position

    async def _resolve_submit(self, live: LivePosition, sent: Order) -> Update | None:
        """Ask about an unanswered submit until the venue answers or time runs out.

        Returns the order as found (by client id or by its fills), ``Update(sent)`` when
        nothing could be learned (unresolved: the caller keeps it SUBMITTED), or None when
        the venue answered that it has no such order and no fill of it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.fill_timeout_s
        delay = 0.02
        while True:
            answer = await self._ask_entry(live, sent)
            if isinstance(answer, Update):
                return answer
            if loop.time() >= deadline:
                return None if answer else Update(sent)
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
            delay = min(delay * 2, 0.5)

    async def _ask_entry(self, live: LivePosition, order: Order) -> Update | bool:
        """One round of questions about an entry whose submit went unanswered: by client
        id, then the account's fills. An Update when the venue shows it; True when the
        venue answered that it has no such order and there is no fill of it; False when
        the venue could not answer."""
        try:
            update = await self._exec.refresh(order)
        except OrderNotFound:
            absent = True
        except ExchangeError:
            absent = False
        else:
            if update.order.exchange_order_id is not None or update.fills:
                return update
            absent = False
        fills = await self._fills_of(live, order)
        if fills is None:
            return False
        if fills:
            return self._fold_fills(order, fills, "found_by_fills")
        return absent

    async def _fills_of(self, live: LivePosition, order: Order) -> list[Fill] | None:
        """The account's executions of ``order`` since the position opened (None when the
        venue could not say)."""
        try:
            fills = await retry_transient(
                lambda: self._adapter.fetch_fills(live.symbol, since=live.position.opened_at),
                Backoff(tries=2, base_s=0.01),
            )
        except ExchangeError:
            return None
        return [
            f
            for f in fills
            if f.client_order_id == order.client_order_id
            or (
                order.exchange_order_id is not None
                and f.exchange_order_id == order.exchange_order_id
            )
        ]

    def _fold_fills(self, order: Order, fills: list[Fill], kind: str) -> Update:
        """Apply executions found in the venue's fill list to ``order`` (each once)."""
        updated = order
        eid = next((f.exchange_order_id for f in fills if f.exchange_order_id), None)
        if eid is not None:
            updated = updated.with_exchange_id(eid)
        new: list[Fill] = []
        for fill in fills:
            if not updated.has_fill(fill.trade_id):
                updated = updated.with_fill(fill)
                new.append(fill)
        if updated is not order:
            self._journal.order(updated, kind, order.status)
        return Update(updated, tuple(new))

    async def resolve_entry(self, live: LivePosition) -> Update | None:
        """A sync pass at an entry whose submit went unanswered (failure mode 14).

        Returns what the venue showed of the order (the caller folds its fills in). When
        the venue has no such order and no fill of it, the entry is marked FAILED and a
        position that holds nothing is finished ``failed``. When it still cannot tell, the
        venue position is tried, and a critical event says the entry is unresolved.
        """
        entry = live.entry
        assert entry is not None
        answer = await self._ask_entry(live, entry)
        if isinstance(answer, Update):
            return answer
        if answer:
            live.entry = self._exec.mark_failed(entry, "not on the venue: the submit never arrived")
            if live.position.quantity == 0:
                await self.finish(
                    live, PositionStatus.FAILED, "entry not confirmed: not on the venue"
                )
            return None
        if live.position.quantity == 0 and entry.type is OrderType.MARKET:
            await self._adopt_venue_position(live)
        if live.position.quantity == 0:
            self._unresolved(live, "the entry's submit is still unanswered")
        return None

    async def _adopt_venue_position(self, live: LivePosition) -> None:
        """Last link of the fill chain: the venue's position on this market is ours (one
        position per market), so its quantity and entry price are the fill."""
        try:
            positions = await retry_transient(
                lambda: self._adapter.fetch_positions([live.symbol]), Backoff(tries=3)
            )
        except ExchangeError:
            return  # unknown: the caller treats the entry as unresolved
        venue = next((p for p in positions if p.symbol == live.symbol and p.quantity > 0), None)
        if venue is None or venue.entry_price is None or venue.side is not live.position.side:
            return
        live.position = live.position.with_entry_fill(venue.entry_price, venue.quantity, ZERO)
        live.entry_from_venue = True
        self._journal.event(
            "fill_from_position",
            "entry fill unknown from the order; taken from the venue position",
            severity=Severity.WARNING,
            position_id=live.id,
            quantity=venue.quantity,
            entry_price=venue.entry_price,
        )
        self._journal.position(live.position, "entry_filled")

    def entry_fills(self, live: LivePosition, update: Update) -> None:
        """Fold entry executions into the position (entry price = weighted fill price).

        When the entry's fill was taken from the venue position, the entry order's own
        fills are that same execution: recorded as trades, not added again.
        """
        if live.entry_from_venue and update.order.purpose is OrderPurpose.ENTRY:
            for fill in update.fills:
                self._journal.fill(update.order, fill, signal_id=live.position.signal_id)
            return
        position = live.position
        for fill in update.fills:
            position = position.with_entry_fill(fill.price, fill.amount, fill.fee)
            self._journal.fill(live.entry or update.order, fill, signal_id=position.signal_id)
        if position is not live.position:
            live.position = position
            self._journal.position(position, "entry_filled")
