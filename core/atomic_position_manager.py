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
5. if no stop could be placed, close what filled with a reduce-only market order on the
   side derived from the position (failure modes 4, 5), confirm the venue is flat while
   tolerating a lagging positions endpoint (failure mode 6), and record ``rolled_back``.
   A rollback that fails keeps retrying and raises a critical event every time.

Closing, stop moves and detection of fills that happened on the venue live in
core/position_lifecycle.py; both share the market lock of the PositionBook.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from core.errors import PositionConflict, ValidationError
from core.execution import Executor, Update
from core.journal import Journal
from core.models import (
    EntryType,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Signal,
)
from core.money import ZERO, utcnow
from core.position_book import LivePosition, PositionBook
from core.positions import StopRules, stop_is_through
from core.records import Severity
from core.retry import Backoff, retry_transient
from core.signals import check_prices, entry_amount, protection_from_fill
from exchanges.base import (
    ExchangeAdapter,
    ExchangeError,
    InvalidOrder,
    OrderRejected,
    TransientExchangeError,
)


def _has_fill(order: Order) -> bool:
    return order.filled > 0


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


class AtomicPositionManager:
    """Opens positions so that none is ever left without a stop."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        executor: Executor,
        book: PositionBook,
        ids: PositionIds,
        config: ApmConfig,
        *,
        last_price: Callable[[str], Decimal | None] = lambda _symbol: None,
    ) -> None:
        self._adapter = adapter
        self._exec = executor
        self._journal: Journal = executor.journal
        self._book = book
        self._ids = ids
        self._cfg = config
        self._last_price = last_price

    # -- public ------------------------------------------------------------------------
    async def open_position_atomic(self, signal: Signal) -> Position:
        """Open and protect a position, or leave the venue flat and say why.

        Raises :class:`ValidationError` (bad signal) and :class:`PositionConflict` (a
        position is already open on the market) before anything is sent. Once an entry
        is sent, the outcome is a position value: ``active``, ``entry_placed`` (a limit
        entry still resting), ``rolled_back`` or ``failed``, with the reason.
        """
        try:
            market = self._adapter.market(signal.symbol)
        except InvalidOrder:
            raise ValidationError(
                "symbol", "is not a market this venue trades", signal.symbol
            ) from None
        async with self._book.lock(market.symbol):
            if (existing := self._book.on_symbol(market.symbol)) is not None:
                raise PositionConflict(f"position {existing.id} is already open on {market.symbol}")
            reference = signal.price if signal.entry_type is EntryType.LIMIT else None
            reference = reference or await self._current_price(market.symbol)
            amount = entry_amount(signal, market, reference)
            check_prices(signal, reference)
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
            try:
                return await self._open(live, signal, amount)
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
        try:
            update = await self._exec.submit(entry)
        except TransientExchangeError as exc:
            # Accepted or not? The adapter's client-id lookup could not tell. Keep asking;
            # never send a second entry (failure mode 14).
            sent = entry.with_status(OrderStatus.SUBMITTED)
            update = await self._exec.settle(sent, timeout_s=self._cfg.fill_timeout_s)
            if update.order.exchange_order_id is None and not update.fills:
                live.entry = self._exec.mark_failed(sent, f"not found on venue after: {exc}")
                return self.finish(live, PositionStatus.FAILED, f"entry not confirmed: {exc}")
        except ExchangeError as exc:
            return self.finish(live, PositionStatus.FAILED, f"entry refused: {exc}")
        live.entry = update.order
        self._set(
            live,
            "entry_placed",
            status=PositionStatus.ENTRY_PLACED,
            exchange_order_id=update.order.exchange_order_id,
        )
        self.entry_fills(live, update)
        if live.position.quantity == 0 and entry.type is OrderType.MARKET:
            # The reply did not say what filled (an acknowledgement, an id-only reply):
            # ask the venue, by order, then fills, then position (failure mode 1).
            settled = await self._exec.settle(
                live.entry, timeout_s=self._cfg.fill_timeout_s, until=_has_fill
            )
            live.entry = settled.order
            self.entry_fills(live, settled)
            if live.position.quantity == 0:
                await self._adopt_venue_position(live)
        if live.position.quantity == 0:
            if not live.entry.status.is_terminal:
                return live.position  # a resting limit: its fills are protected as they come
            return self.finish(live, PositionStatus.FAILED, "entry did not fill")
        return await self.protect(live)

    async def _adopt_venue_position(self, live: LivePosition) -> None:
        """Last link of the fill chain: the venue's position on this market is ours (one
        position per market), so its quantity and entry price are the fill."""
        positions = await retry_transient(
            lambda: self._adapter.fetch_positions([live.symbol]), Backoff(tries=3)
        )
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
        """Fold entry executions into the position (entry price = weighted fill price)."""
        position = live.position
        for fill in update.fills:
            position = position.with_entry_fill(fill.price, fill.amount, fill.fee)
            self._journal.fill(live.entry or update.order, fill, signal_id=position.signal_id)
        if position is not live.position:
            live.position = position
            self._journal.position(position, "entry_filled")

    async def protect(self, live: LivePosition) -> Position:
        """Place the stop (and take-profit) for the filled quantity; roll back if impossible."""
        signal = live.signal
        assert signal is not None and live.position.entry_price is not None
        self._set(live, "pending_sl", status=PositionStatus.PENDING_SL)
        market = self._adapter.market(live.symbol)
        try:
            plan = protection_from_fill(
                signal,
                live.position.entry_price,
                market,
                self._cfg.default_stop_pct,
                self._cfg.default_tp_pct,
            )
        except ValidationError as exc:
            return await self.rollback(live, f"no stop-loss: {exc}")
        price = self._last_price(live.symbol)
        if price is not None and stop_is_through(live.position.side, plan.stop_loss, price):
            return await self.rollback(live, f"stop {plan.stop_loss} already crossed at {price}")
        stop = await self.place_stop(live, plan.stop_loss, live.position.quantity)
        if stop is None:
            return await self.rollback(live, "stop-loss could not be placed")
        self._set(live, "active", status=PositionStatus.ACTIVE, stop_loss_price=plan.stop_loss)
        live.rules = self.rules_for(live)
        if plan.take_profit is not None:
            await self._place_take_profit(live, plan.take_profit)
        return live.position

    def rules_for(self, live: LivePosition) -> StopRules:
        """How this position's stop follows the price: the signal's trailing settings,
        else the configured defaults; break-even from the settings."""
        signal = live.signal
        return StopRules(
            breakeven_pct=self._cfg.breakeven_pct,
            trailing_activation_pct=(signal and signal.trailing_activation_percent)
            or self._cfg.trailing_activation_pct,
            trailing_callback_pct=(signal and signal.trailing_callback_percent)
            or self._cfg.trailing_callback_pct,
        )

    async def place_stop(
        self, live: LivePosition, trigger: Decimal, quantity: Decimal
    ) -> Order | None:
        """A reduce-only native stop for ``quantity``, with bounded retries. Returns the
        accepted order, or None when every try failed."""
        for attempt in range(self._cfg.stop_tries):
            order = live.new_order(
                OrderPurpose.STOP_LOSS, OrderType.STOP_MARKET, quantity, trigger_price=trigger
            )
            self._journal.order(order, "created")
            try:
                update = await self._exec.submit(order)
            except ExchangeError as exc:
                self._journal.event(
                    "stop_attempt_failed",
                    f"stop attempt {attempt + 1}/{self._cfg.stop_tries} failed: {exc}",
                    severity=Severity.WARNING,
                    position_id=live.id,
                    client_order_id=order.client_order_id,
                )
                if isinstance(exc, TransientExchangeError):
                    # Unresolved timeout: the stop may exist. Find out before another.
                    found = await self._find(order)
                    if found is not None:
                        return self._adopt_stop(live, found)
                await asyncio.sleep(self._cfg.stop_backoff_s * (2**attempt))
                continue
            return self._adopt_stop(live, update.order)
        return None

    def _adopt_stop(self, live: LivePosition, stop: Order) -> Order:
        if live.stop is not None and live.stop is not stop:
            live.retired.append(live.stop)
        live.stop = stop
        return stop

    async def _find(self, order: Order) -> Order | None:
        """Look a sent order up by client id; None if the venue does not have it."""
        try:
            update = await self._exec.refresh(order)
        except ExchangeError:
            return None
        return update.order if update.order.exchange_order_id else None

    async def _place_take_profit(self, live: LivePosition, trigger: Decimal) -> None:
        """A reduce-only take-profit. Not protection: failing to place it is a warning."""
        order = live.new_order(
            OrderPurpose.TAKE_PROFIT,
            OrderType.TAKE_PROFIT_MARKET,
            live.position.quantity,
            trigger_price=trigger,
        )
        self._journal.order(order, "created")
        try:
            live.take_profit = (await self._exec.submit(order)).order
        except TransientExchangeError as exc:
            # The venue may hold it: a take-profit resting untracked would close the
            # position behind our back. Find it before giving up on it.
            live.take_profit = await self._find(order.with_status(OrderStatus.SUBMITTED))
            if live.take_profit is None:
                self._journal.event(
                    "take_profit_failed",
                    f"take-profit not confirmed: {exc}",
                    severity=Severity.WARNING,
                    position_id=live.id,
                )
                return
        except ExchangeError as exc:
            self._journal.event(
                "take_profit_failed",
                f"take-profit not placed: {exc}",
                severity=Severity.WARNING,
                position_id=live.id,
            )
            return
        self._set(live, "take_profit_placed", take_profit_price=trigger)

    # -- rollback ------------------------------------------------------------------------
    async def rollback(self, live: LivePosition, reason: str) -> Position:
        """Close what filled, reduce-only, on the side derived from the position, until the
        venue confirms flat. Never gives up quietly."""
        self._journal.event(
            "rollback_started", reason, severity=Severity.ERROR, position_id=live.id
        )
        if live.entry is not None and not live.entry.status.is_terminal:
            # Stop the entry first; what it filled up to the cancel is ours to close too.
            cancelled = await self._exec.cancel(live.entry)
            live.entry = cancelled.order
            self.entry_fills(live, cancelled)
        attempt = 0
        while True:
            try:
                await self.flatten(live, OrderPurpose.ROLLBACK)
                break
            except ExchangeError as exc:
                attempt += 1
                self._journal.event(
                    "rollback_failed",
                    f"rollback attempt {attempt} failed, position may be unprotected: {exc}",
                    severity=Severity.CRITICAL,
                    position_id=live.id,
                )
                delay = min(0.5 * 2**attempt, self._cfg.rollback_backoff_max_s)
                await asyncio.sleep(delay)
        return self.finish(live, PositionStatus.ROLLED_BACK, reason)

    async def flatten(self, live: LivePosition, purpose: OrderPurpose) -> None:
        """Market-close the open quantity reduce-only and wait until the venue is flat."""
        while live.position.quantity > 0:
            # The exit side comes from the position, never the entry's (failure mode 4);
            # the amount is what our fills say is open (failure mode 5).
            order = live.new_order(purpose, OrderType.MARKET, live.position.quantity)
            self._journal.order(order, "created")
            try:
                update = await self._exec.submit(order)
            except TransientExchangeError:
                update = await self._exec.settle(order, timeout_s=self._cfg.fill_timeout_s)
            except OrderRejected:
                if await self.venue_flat(live):
                    return  # the stop or someone else closed it; nothing left to close
                raise
            if not update.order.status.is_terminal:
                more = await self._exec.settle(
                    update.order, timeout_s=self._cfg.fill_timeout_s, want=order.amount
                )
                update = Update(more.order, update.fills + more.fills)
            if not update.order.status.is_terminal:
                # A remainder left resting would fill later behind our back: cancel it
                # before the next attempt sends a fresh order for what is still open.
                rest = await self._exec.cancel(update.order)
                update = Update(rest.order, update.fills + rest.fills)
            self.record_exit_fills(live, update)
            if update.order.filled == 0:
                raise OrderRejected(f"close order {order.client_order_id} did not fill")
        await self._confirm_flat(live)

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
        positions = await retry_transient(
            lambda: self._adapter.fetch_positions([live.symbol]), Backoff(tries=3)
        )
        return not any(p.symbol == live.symbol and p.quantity > 0 for p in positions)

    async def _confirm_flat(self, live: LivePosition) -> None:
        """Wait until the positions endpoint agrees we are flat. A lagging endpoint is
        waited out; one still showing a position at the deadline is a critical alert."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.flat_timeout_s
        while not await self.venue_flat(live):
            if loop.time() >= deadline:
                self._journal.event(
                    "not_flat",
                    "venue still shows a position after the close filled",
                    severity=Severity.CRITICAL,
                    position_id=live.id,
                )
                return
            await asyncio.sleep(0.25)

    # -- helpers -------------------------------------------------------------------------
    async def _current_price(self, symbol: str) -> Decimal:
        price = self._last_price(symbol)
        if price is None:
            price = (await retry_transient(lambda: self._adapter.fetch_price(symbol))).price
        return price

    def _set(self, live: LivePosition, what: str, **changes: object) -> None:
        live.position = live.position.evolve(**changes)
        self._journal.position(live.position, what)

    def finish(self, live: LivePosition, status: PositionStatus, reason: str) -> Position:
        """Terminal: record the outcome and free the market."""
        self._set(live, status.value, status=status, exit_reason=reason, closed_at=utcnow())
        self._book.release(live)
        if status is not PositionStatus.CLOSED:
            self._journal.event(
                f"position_{status.value}",
                reason,
                severity=Severity.ERROR if status is PositionStatus.FAILED else Severity.WARNING,
                position_id=live.id,
            )
        return live.position
