"""Manual orders: placed, cancelled and listed; emulated ones armed in the TriggerBook and
executed through the venue when they fire, native ones resting on the venue.

Nothing is armed or sent before :func:`core.order_requests.check_order` passes. A fired
order moves PENDING → TRIGGERED → SUBMITTED → … and every move and fill is journaled. An
execution that fails ends FAILED with the venue's reason; it never takes the loop down.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from core.audit_gate import require_trail
from core.errors import ValidationError
from core.execution import Update, refused, request_for
from core.ids import client_order_id, request_owner
from core.models import PriceSource, Side, Tick
from core.native_orders import NativeOrders
from core.order_model import Order, OrderPurpose, OrderStatus, OrderType
from core.order_requests import OrderSpec, check_order
from core.records import Severity
from core.retry import retry_transient
from core.venue import (
    ExchangeError,
    InvalidOrder,
    TransientExchangeError,
)

_NONE_FIRED: tuple[Order, ...] = ()


class OrderManager(NativeOrders):
    """Manual and emulated orders of one account."""

    # -- placing and cancelling --------------------------------------------------------
    async def place_order(self, spec: OrderSpec) -> Order:
        """Check, then arm (emulated) or send (native). Raises ValidationError, nothing done.

        A reduce-only order only takes risk away: it is accepted even while the audit
        trail is unavailable; any other raises AuditUnavailable then."""
        if not spec.reduce_only:
            require_trail(self._trail)
        self._require_open(spec.position_id)
        try:
            market = self._adapter.market(spec.symbol)
        except InvalidOrder:
            raise ValidationError(
                "symbol", "is not a market this venue trades", spec.symbol
            ) from None
        if spec.position_id is None:
            spec = self._bind_or_refuse(spec, market.symbol)
        price = self._prices.price(market.symbol)
        if price is None:
            price = (await retry_transient(lambda: self._adapter.fetch_price(market.symbol))).price
        free = None
        if not spec.reduce_only:
            free = await retry_transient(lambda: self._adapter.fetch_free_balance(market.quote))
        spec = check_order(
            spec,
            market,
            price,
            free_balance=free,
            leverage=self._leverage,
            position_side=await self._position_side(market.symbol),
        )
        order = self._new_order(spec, market.symbol)
        # The checks above awaited the venue: the position may have ended meanwhile.
        self._require_open(spec.position_id)
        if spec.native:
            return await self._send_native(order)
        # A trailing stop without an activation price trails from now: the current price
        # is its first extreme, so a fall right after placing it already counts.
        # (On the last trade only: the mark or quote it watches may not be known yet.)
        trails_now = (
            spec.type is OrderType.TRAILING_STOP
            and spec.activation_price is None
            and spec.price_source is PriceSource.LAST
        )
        start = price if trails_now else None
        self._triggers.arm(order, initial_price=start)
        self._remember(order)
        self._journal.order(order, "armed")
        return order

    def _require_open(self, position_id: int | None) -> None:
        known = self._positions
        if position_id is not None and known is not None and known.get(position_id) is None:
            raise ValidationError("position_id", "no open position with this id", position_id)

    def _bind_or_refuse(self, spec: OrderSpec, symbol: str) -> OrderSpec:
        """An order without ``--position`` on the closing side of a position the daemon
        holds: reduce-only, it can only reduce that position, so it is bound to it (its
        fills resize the stop, it ends with the position); otherwise it is refused."""
        held = self._holder(symbol, spec.side)
        if held is None:
            return spec
        if spec.reduce_only:
            return replace(spec, position_id=held)
        raise ValidationError("position_id", self._clash(held, symbol))

    def _holder(self, symbol: str, side: Side) -> int | None:
        """The daemon's position on ``symbol`` that an order on ``side`` would reduce."""
        held = self._positions.on_symbol(symbol) if self._positions is not None else None
        if held is None or side is not held.position.side.exit_side:
            return None
        return held.id

    @staticmethod
    def _clash(position_id: int, symbol: str) -> str:
        # Futures venues net one position per market (one-way mode): an order not bound
        # to the position would shrink or flip it behind its bookkeeping, and once flat
        # the venue cancels its reduce-only stop. It would end unrecorded or unprotected.
        return (
            f"would trade against open position {position_id} on {symbol} behind its stop;"
            f" place it with --position {position_id} to reduce that position"
        )

    async def _fire_refusal(self, order: Order) -> str | None:
        """Why a fired emulated order must not be sent: its position has ended, it would
        trade against a position it is not bound to, or it is reduce-only with nothing
        to reduce. Only an unbound reduce-only order costs a venue call."""
        if order.position_id is not None:
            if self._positions is not None and self._positions.get(order.position_id) is None:
                return f"position {order.position_id} is no longer open"
            return None
        held = self._holder(order.symbol, order.side)
        if held is not None:
            return self._clash(held, order.symbol)
        if order.reduce_only:
            venue_side = await self._position_side(order.symbol)
            if venue_side is None or venue_side is order.side:
                return "reduce-only, and there is no open position on the market to reduce"
        return None

    def _new_order(self, spec: OrderSpec, symbol: str) -> Order:
        self._seq += 1
        owner = (
            request_owner(spec.request_id) if spec.request_id else f"m{time.time_ns() // 1_000_000}"
        )
        return Order(
            client_order_id=client_order_id(self._account, owner, OrderPurpose.MANUAL, self._seq),
            account=self._account,
            exchange=self._adapter.name,
            symbol=symbol,
            side=spec.side,
            type=spec.type,
            amount=spec.amount,
            purpose=OrderPurpose.MANUAL,
            price=spec.price if spec.type is OrderType.LIMIT else None,
            limit_price=spec.price if spec.type is OrderType.STOP_LIMIT else None,
            trigger_price=spec.trigger_price,
            trail_percent=spec.trail_percent,
            trail_amount=spec.trail_amount,
            activation_price=spec.activation_price,
            reduce_only=spec.reduce_only,
            emulated=not spec.native,
            expires_at=spec.expires_at,
            position_id=spec.position_id,
            price_source=spec.price_source,
        )

    async def _position_side(self, symbol: str) -> Side | None:
        positions = await retry_transient(lambda: self._adapter.fetch_positions([symbol]))
        venue = next((p for p in positions if p.symbol == symbol and p.quantity > 0), None)
        return None if venue is None else venue.side.entry_side

    async def _send_native(self, order: Order) -> Order:
        self._journal.order(order, "created")
        self._in_flight.add(order.client_order_id)
        try:
            sent = await self._send_native_tracked(order)
        finally:
            self._in_flight.discard(order.client_order_id)
        return await self._end_if_due(sent)

    async def _send_native_tracked(self, order: Order) -> Order:
        try:
            update = await self._exec.submit(order)
        except TransientExchangeError:
            update = await self._exec.settle(
                order.with_status(OrderStatus.SUBMITTED), timeout_s=self._settle_timeout_s
            )
        except ExchangeError as exc:
            raise ValidationError("order", f"the venue refused it: {exc}") from None
        await self._record_fills(update)
        self._remember(update.order)
        return update.order

    async def cancel_order(self, ref: str) -> Order:
        """Cancel by client order id or exchange id."""
        order = self._find(ref)
        if order is None:
            raise ValidationError("order", "no live order with this id", ref)
        if order.status in (OrderStatus.TRIGGERED, OrderStatus.SUBMITTED) and order.emulated:
            raise ValidationError(
                "order", "fired and is being sent to the venue; cancel it once it rests", ref
            )
        if order.emulated and order.status in (OrderStatus.PENDING,):
            self._triggers.remove(order.client_order_id)
            cancelled = order.with_status(OrderStatus.CANCELLED)
            self._journal.order(cancelled, "cancelled", order.status)
            self._remember(cancelled)
            return cancelled
        if order.client_order_id in self._in_flight:
            raise ValidationError("order", "has a venue call in progress; try again", ref)
        self._in_flight.add(order.client_order_id)
        try:
            update = await self._exec.cancel(order)
            await self._record_fills(update)
        finally:
            self._in_flight.discard(order.client_order_id)
        self._remember(update.order)
        return update.order

    # -- ticks and execution -----------------------------------------------------------
    def on_tick(self, tick: Tick) -> Sequence[Order]:
        """Evaluate the book; record expiries; return the orders that fired (TRIGGERED),
        for the caller to execute as tasks. Never awaits; a quiet tick allocates nothing."""
        result = self._triggers.on_tick(
            tick.symbol, tick.price, tick.ts, bid=tick.bid, ask=tick.ask, mark=tick.mark
        )
        if not result.fired and not result.expired:
            return _NONE_FIRED
        for cid in result.expired:
            order = self._live.get(cid)
            if order is not None:
                expired = order.with_status(OrderStatus.EXPIRED, at=tick.ts)
                self._journal.order(expired, "expired", order.status)
                self._remember(expired)
        fired: list[Order] = []
        for hit in result.fired:
            order = self._live.get(hit.client_order_id)
            if order is None:
                continue
            triggered = order.with_status(OrderStatus.TRIGGERED, at=tick.ts)
            self._journal.order(
                triggered,
                "triggered",
                order.status,
                {"fire_price": str(hit.fire_price), "trigger_price": str(hit.trigger_price)},
            )
            self._remember(triggered)
            fired.append(triggered)
        return fired

    async def execute(self, order: Order, tick_ns: int | None = None) -> Order:
        """Send a fired order: a market order, or a limit at its limit price. One that
        must not trade any more (see _fire_refusal) ends CANCELLED with the reason."""
        self._in_flight.add(order.client_order_id)
        try:
            refusal = await self._fire_refusal(order)
            if refusal is not None:
                return self._disarmed(order, refusal)
            done = await self._execute(order, tick_ns)
        finally:
            self._in_flight.discard(order.client_order_id)
        return await self._end_if_due(done)

    async def _end_if_due(self, order: Order) -> Order:
        """An order whose position ended during its venue call: cancel it if it rests."""
        note = self._ending.pop(order.client_order_id, None)
        if note is None or order.status.is_terminal:
            return order
        return await self._end_one(order, note)

    async def _execute(self, order: Order, tick_ns: int | None) -> Order:
        send = (
            OrderType.LIMIT
            if order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
            else OrderType.MARKET
        )
        request = request_for(order, send_type=send)
        if tick_ns is not None:
            elapsed_ns = time.perf_counter_ns() - tick_ns
            self.latencies_us.append(elapsed_ns / 1000)
            if self.on_latency is not None:
                self.on_latency(elapsed_ns / 1e9)
        # While the venue call is in flight, our view says what the journal says.
        self._remember(order.with_status(OrderStatus.SUBMITTED))
        try:
            update = await self._exec.submit(order, request)
        except TransientExchangeError as exc:
            update = await self._exec.settle(
                order.with_status(OrderStatus.SUBMITTED), timeout_s=self._settle_timeout_s
            )
            if update.order.exchange_order_id is None and not update.fills:
                update = Update(self._exec.mark_failed(update.order, f"not confirmed: {exc}"))
        except ExchangeError as exc:
            # The executor journaled this very snapshot; keep our view identical.
            failed = refused(order.with_status(OrderStatus.SUBMITTED), exc)
            self._remember(failed)
            return failed
        if send is OrderType.MARKET and not update.order.status.is_terminal:
            more = await self._exec.settle(update.order, timeout_s=self._settle_timeout_s)
            update = Update(more.order, update.fills + more.fills)
        await self._record_fills(update)
        self._remember(update.order)
        return update.order

    # -- orders bound to a position --------------------------------------------------
    async def end_position_orders(self, position_id: int, note: str) -> None:
        """The position ended (``note`` says how): every live order placed for it ends
        too, disarmed if emulated and waiting, cancelled on the venue if resting; one
        with a venue call in flight is ended as soon as the call returns."""
        for order in [o for o in self._live.values() if o.position_id == position_id]:
            await self._end_one(order, note)

    async def end_orphans(self) -> None:
        """Every live order bound to a position that is no longer open (restored after a
        restart, or one whose cancel failed) ends now, saying so. Run by reconciliation."""
        for order in [o for o in self._live.values() if not self._bound_open(o)]:
            await self._end_one(order, f"position {order.position_id} is no longer open")

    async def _end_one(self, order: Order, note: str) -> Order:
        if order.client_order_id in self._in_flight:
            self._ending[order.client_order_id] = note
            return order
        if order.emulated and order.status is OrderStatus.PENDING:
            return self._disarmed(order, note)
        if order.status not in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            return order  # TRIGGERED / SUBMITTED: its call is settling; sync_native follows
        self._in_flight.add(order.client_order_id)
        try:
            update = await self._exec.cancel(order, note)
        except ExchangeError as exc:
            self._journal.event(
                "cancel_failed",
                f"could not cancel an order of an ended position, retrying at the next"
                f" reconciliation: {exc}",
                severity=Severity.WARNING,
                position_id=order.position_id,
                client_order_id=order.client_order_id,
            )
            return order
        finally:
            self._in_flight.discard(order.client_order_id)
        await self._record_fills(update)
        self._remember(update.order)
        return update.order
