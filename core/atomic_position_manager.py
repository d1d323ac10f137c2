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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Protocol

from core.audit_gate import TrailHealth, require_trail
from core.errors import PositionConflict, ValidationError
from core.execution import Executor, Update
from core.ids import is_ours
from core.journal import Journal
from core.models import (
    EntryType,
    Fill,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Signal,
    position_end_note,
)
from core.money import ZERO, utcnow
from core.position_book import LivePosition, PositionBook
from core.positions import StopRules, stop_is_through
from core.records import Severity
from core.retry import Backoff, retry_transient
from core.signals import (
    Protection,
    check_margin,
    check_prices,
    entry_amount,
    protection_from_fill,
)
from core.venue import (
    ExchangeAdapter,
    ExchangeError,
    InvalidOrder,
    OrderNotFound,
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

    def on_position_end(self, hook: Callable[[int, str], Awaitable[None]]) -> None:
        """Call ``hook(position_id, note)`` whenever a position ends (see finish())."""
        self._end_bound = hook

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

    async def protect(self, live: LivePosition) -> Position:
        """Place the stop (and take-profit) for the filled quantity; roll back if impossible."""
        signal = live.signal
        assert signal is not None and live.position.entry_price is not None
        self._set(live, "pending_sl", status=PositionStatus.PENDING_SL)
        try:
            plan = self.plan_for(live, live.position.entry_price)
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
            await self.place_take_profit(live, plan.take_profit)
        return live.position

    def plan_for(self, live: LivePosition, fill_price: Decimal) -> Protection:
        """Stop-loss and take-profit for ``live`` computed from ``fill_price`` (never the
        signal's price); raises ValidationError when no stop can be computed."""
        assert live.signal is not None
        return protection_from_fill(
            live.signal,
            fill_price,
            self._adapter.market(live.symbol),
            self._cfg.default_stop_pct,
            self._cfg.default_tp_pct,
        )

    def rules_for(self, live: LivePosition) -> StopRules:
        """How this position's stop follows the price: the signal's trailing settings,
        else the configured defaults; break-even, the minimum improvement and the move
        rate limit from the settings."""
        signal = live.signal
        return StopRules(
            breakeven_pct=self._cfg.breakeven_pct,
            trailing_activation_pct=(signal and signal.trailing_activation_percent)
            or self._cfg.trailing_activation_pct,
            trailing_callback_pct=(signal and signal.trailing_callback_percent)
            or self._cfg.trailing_callback_pct,
            min_move_ticks=self._cfg.stop_move_min_ticks,
            min_interval=timedelta(seconds=self._cfg.stop_move_interval_s),
            exit_fee_rate=self._cfg.exit_fee_rate,
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
                    self._keep_unresolved(live, order)
                await asyncio.sleep(self._cfg.stop_backoff_s * (2**attempt))
                continue
            return self._adopt_stop(live, update.order)
        return None

    @staticmethod
    def _keep_unresolved(live: LivePosition, order: Order) -> None:
        """An order whose submit went unanswered and that could not be found yet: keep it
        among the position's orders, SUBMITTED, so a sync cancels it if it does rest on
        the venue (no untracked duplicate stop) and its fills are never missed."""
        live.retired.append(order.with_status(OrderStatus.SUBMITTED))

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

    async def place_take_profit(self, live: LivePosition, trigger: Decimal) -> None:
        """A reduce-only take-profit for the open quantity. Not protection: failing to
        place it is a warning. A previous take-profit (no longer resting) is retired."""
        order = live.new_order(
            OrderPurpose.TAKE_PROFIT,
            OrderType.TAKE_PROFIT_MARKET,
            live.position.quantity,
            trigger_price=trigger,
        )
        self._journal.order(order, "created")
        if live.take_profit is not None:
            live.retired.append(live.take_profit)
            live.take_profit = None
        try:
            live.take_profit = (await self._exec.submit(order)).order
        except TransientExchangeError as exc:
            # The venue may hold it: a take-profit resting untracked would close the
            # position behind our back. Find it before giving up on it.
            live.take_profit = await self._find(order.with_status(OrderStatus.SUBMITTED))
            if live.take_profit is None:
                self._keep_unresolved(live, order)
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
        for key, group in foreign.items():
            if live.position.quantity == 0:
                break
            order = Order(
                client_order_id=group[0].client_order_id or f"venue-{key}",
                account=live.position.account,
                exchange=live.position.exchange,
                symbol=live.symbol,
                side=exit_side,
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
