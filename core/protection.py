"""Placing a position's protective orders: the reduce-only stop for the filled quantity,
computed from the real fill and retried, and the optional take-profit.

A submit that timed out is looked up by client id before another is sent, so no
untracked duplicate stop or take-profit can rest on the venue.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from core.errors import ValidationError
from core.order_model import Order, OrderPurpose, OrderStatus, OrderType
from core.position_book import LivePosition
from core.position_exits import PositionExits
from core.position_model import Position, PositionStatus
from core.positions import StopRules, stop_is_through
from core.records import Severity
from core.signals import (
    Protection,
    protection_from_fill,
)
from core.venue import (
    ExchangeError,
    TransientExchangeError,
)


class Protector(PositionExits):
    """Protects a filled position: its stop (or the rollback), its take-profit."""

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
