"""Opening a position as one crash-safe operation: entry, then stop, or nothing at all.

``open_position_atomic`` walks ``pending_entry → entry_placed → pending_sl → active``,
recording each state before the step it names, under the market's lock:

1. check the signal against the market and the current price; record the intent;
2. send the entry with a deterministic client id; a timed-out submit is looked up by
   that id, never resent (failure mode 14);
3. learn the real fill from the reply, else by fetching the order, its fills, the
   venue position (failure mode 1); the signal's price is never used as a fill;
4. compute the stop (and take-profit) from that fill, rounded away from the entry, and
   place it reduce-only for the filled quantity, retrying transient errors;
5. if no stop could be placed, stop the entry, close what filled with a reduce-only market
   order on the side derived from the position (failure modes 4, 5), and record
   ``rolled_back``. Flatness is decided by our own fills (entered minus exited) and only
   corroborated by the positions endpoint, which may lag either way (failure mode 6). A
   rollback that fails in any step (the entry's cancel, the close, the confirmation)
   keeps retrying and raises a critical event every time; it never goes quiet.

An entry whose submit went unanswered is never marked failed while the venue may hold it
(failure mode 14): it stays ``entry_placed`` with the order SUBMITTED, is looked up by
client id, then in the account's fills, then in the venue position, and is protected (or
rolled back) as soon as something is found; a critical event is raised while it is
unresolved, and every sync pass asks again.

Closing, stop moves and detection of fills that happened on the venue live in
core/position_lifecycle.py; both share the market lock of the PositionBook.

The steps are layered, one concept per module: core/position_steps.py (shared state,
``finish``), core/entry_lookup.py (the fill chain), core/position_exits.py (flatten,
exits found on the venue, rollback), core/protection.py (stop and take-profit); this
module adds the open itself on top.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from core.audit_gate import require_trail
from core.errors import PositionConflict, ValidationError
from core.models import EntryType, Market, Signal
from core.order_model import Order, OrderPurpose, OrderStatus, OrderType
from core.position_book import LivePosition
from core.position_model import Position, PositionStatus
from core.position_steps import ApmConfig, PositionIds
from core.protection import Protector
from core.records import Severity
from core.retry import retry_transient
from core.signals import (
    check_margin,
    check_prices,
    entry_amount,
)
from core.venue import (
    ExchangeError,
    InvalidOrder,
    TransientExchangeError,
)

__all__ = ["ApmConfig", "AtomicPositionManager", "PositionIds"]


def _has_fill(order: Order) -> bool:
    return order.filled > 0


class AtomicPositionManager(Protector):
    """Opens positions so that none is ever left without a stop."""

    # -- public ------------------------------------------------------------------------
    async def open_position_atomic(self, signal: Signal) -> Position:
        """Open and protect a position, or leave the venue flat and say why.

        Raises :class:`ValidationError` (bad signal) and :class:`PositionConflict` (a
        position is already open on the market) before anything is sent. Once an entry
        is sent, the outcome is a position value, and no venue error escapes: ``active``,
        ``entry_placed`` (a limit entry still resting, or an entry whose fate the venue
        has not told yet: a critical event, and the sync loop keeps asking),
        ``rolled_back`` or ``failed``, with the reason.
        """
        require_trail(self._trail)  # AuditUnavailable: nothing sent
        try:
            market = self._adapter.market(signal.symbol)
        except InvalidOrder:
            raise ValidationError(
                "symbol", "is not a market this venue trades", signal.symbol
            ) from None
        async with self._book.lock(market.symbol):
            if (existing := self._book.on_symbol(market.symbol)) is not None:
                raise PositionConflict(f"position {existing.id} is already open on {market.symbol}")
            amount = await self._checked_amount(signal, market)
            position = Position(
                id=self._ids.next_position_id(),
                account=self._cfg.account,
                exchange=self._adapter.name,
                symbol=market.symbol,
                side=signal.side,
                signal_id=signal.id,
            )
            live = self._book.claim(position, signal)
            self._journal.position(position, "pending_entry")
            return await self._open_guarded(live, signal, amount)

    async def _checked_amount(self, signal: Signal, market: Market) -> Decimal:
        """The entry's amount, once the signal's prices (and the margin, when the leverage
        is known) are checked against the reference price; raises ValidationError."""
        reference = signal.price if signal.entry_type is EntryType.LIMIT else None
        reference = reference or await self._current_price(market.symbol)
        amount = entry_amount(signal, market, reference)
        check_prices(signal, reference)
        if self._cfg.leverage is not None:
            free = await retry_transient(lambda: self._adapter.fetch_free_balance(market.quote))
            field = "amount" if signal.amount is not None else "quote_amount"
            check_margin(
                amount,
                market,
                reference,
                leverage=self._cfg.leverage,
                free_balance=free,
                field=field,
                typed=signal.amount if signal.amount is not None else signal.quote_amount,
            )
        return amount

    async def _open_guarded(self, live: LivePosition, signal: Signal, amount: Decimal) -> Position:
        """The open, under the guarantee that no way out of it leaves a fill unprotected
        without a critical event."""
        started = time.monotonic()
        try:
            opened = await self._open(live, signal, amount)
        except asyncio.CancelledError:
            # Shutdown mid-open: whatever filled must still be protected. The
            # reconciler does that at the next start; say so loudly now.
            self._journal.event(
                "open_interrupted",
                "open cancelled mid-way; reconciliation will protect or close it",
                severity=Severity.CRITICAL,
                position_id=live.id,
            )
            raise
        except ExchangeError as exc:
            # A venue error escaped a step: never return with the open half done and
            # whatever filled unprotected. Stop the entry and close what it filled
            # (the rollback retries until the venue is flat).
            self._journal.event(
                "open_step_failed",
                f"venue error in the middle of the open; rolling back: {exc}",
                severity=Severity.CRITICAL,
                position_id=live.id,
            )
            return await self.rollback(live, f"venue error during the open: {exc}")
        except Exception as exc:
            # A bug. The position stays in the book in its opening state, where the
            # next sync protects what it holds; make sure a person hears of it.
            self._journal.event(
                "open_crashed",
                f"the open failed unexpectedly ({type(exc).__name__}); the sync loop"
                " will protect whatever it holds",
                severity=Severity.CRITICAL,
                position_id=live.id,
            )
            raise
        if opened.status is PositionStatus.ACTIVE and self.on_protected is not None:
            self.on_protected(time.monotonic() - started)
        return opened

    # -- the steps -----------------------------------------------------------------------
    async def _open(self, live: LivePosition, signal: Signal, amount: Decimal) -> Position:
        limit = signal.entry_type is EntryType.LIMIT
        entry = live.new_order(
            OrderPurpose.ENTRY,
            OrderType.LIMIT if limit else OrderType.MARKET,
            amount,
            price=signal.price if limit else None,
        )
        live.entry = entry
        self._journal.order(entry, "created")
        unresolved: str | None = None
        try:
            update = await self._exec.submit(entry)
        except TransientExchangeError as exc:
            # Accepted or not? The adapter's client-id lookup could not tell. Keep asking;
            # never send a second entry, never call it failed while the venue may hold it
            # (failure mode 14).
            sent = entry.with_status(OrderStatus.SUBMITTED)
            live.entry = sent
            found = await self._resolve_submit(live, sent)
            if found is None:
                # The venue answered that it has no such order, and no fill of it.
                live.entry = self._exec.mark_failed(sent, f"not found on venue after: {exc}")
                return await self.finish(live, PositionStatus.FAILED, f"entry not confirmed: {exc}")
            update = found
            if update.order.exchange_order_id is None and not update.fills:
                unresolved = f"submit unanswered ({exc}) and the order cannot be looked up"
        except ExchangeError as exc:
            return await self.finish(live, PositionStatus.FAILED, f"entry refused: {exc}")
        live.entry = update.order
        self._set(
            live,
            "entry_placed",
            status=PositionStatus.ENTRY_PLACED,
            exchange_order_id=update.order.exchange_order_id,
        )
        self.entry_fills(live, update)
        market_entry = entry.type is OrderType.MARKET
        if live.position.quantity == 0 and market_entry and unresolved is None:
            # The reply did not say what filled (an acknowledgement, an id-only reply):
            # ask the venue, by order, then fills, then position (failure mode 1).
            settled = await self._exec.settle(
                live.entry, timeout_s=self._cfg.fill_timeout_s, until=_has_fill
            )
            live.entry = settled.order
            self.entry_fills(live, settled)
        if live.position.quantity == 0 and market_entry and not live.entry.status.is_terminal:
            await self._adopt_venue_position(live)
            if live.position.quantity == 0:
                unresolved = unresolved or "a market entry whose fill the venue has not shown"
        if live.position.quantity == 0:
            if unresolved is not None:
                return self._unresolved(live, unresolved)
            if not live.entry.status.is_terminal:
                return live.position  # a resting limit: its fills are protected as they come
            return await self.finish(live, PositionStatus.FAILED, "entry did not fill")
        return await self.protect(live)
