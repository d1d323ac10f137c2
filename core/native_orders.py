"""Native orders resting on the venue: one listing per pass finds those that filled,
ended or vanished, and the ones that expired are cancelled (the venue knows no expiry).

A sent order the venue does not show is called never placed only after a grace period
(``UNSEEN_GRACE``): listings lag a fresh order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

import structlog

from core.errors import ValidationError
from core.money import utcnow
from core.order_model import Order, OrderStatus
from core.order_records import UNSEEN_GRACE, OrderRecords
from core.records import Severity
from core.retry import retry_transient
from core.venue import (
    ExchangeError,
    OrderNotFound,
)

log = structlog.get_logger("orders")


class NativeOrders(OrderRecords, ABC):
    """Follows the manual orders that rest on the venue itself."""

    @abstractmethod
    async def cancel_order(self, ref: str) -> Order:
        """Cancel by client order id or exchange id (see OrderManager)."""

    async def sync_native(self, now: datetime | None = None) -> None:
        """Refresh the orders that rest on the venue and have left its open list (filled
        or cancelled there), plus any still in flight: one listing, few lookups. Orders
        past their ``expires_at`` are expired (emulated) or cancelled (resting), even when
        their symbol has no ticks."""
        now = now or utcnow()
        await self._expire_due(now)
        sent = [
            o
            for o in self._live.values()
            if o.status is not OrderStatus.PENDING and o.client_order_id not in self._in_flight
        ]
        if not sent:
            return
        listing = await retry_transient(lambda: self._adapter.fetch_open_orders())
        resting = {o.client_order_id: o for o in listing}
        for order in sent:
            seen = resting.get(order.client_order_id)
            unchanged = seen is not None and (seen.filled or 0) <= order.filled
            if unchanged and order.status is not OrderStatus.SUBMITTED:
                continue
            try:
                update = await self._exec.refresh(order)
            except OrderNotFound:
                self._not_on_venue(order, now)
                continue
            except ExchangeError:
                continue
            if (
                order.client_order_id in self._in_flight
                or self._live.get(order.client_order_id) is not order
            ):
                continue  # a cancel or execution started meanwhile; it has the newer view
            await self._record_fills(update)
            self._remember(update.order)

    def _not_on_venue(self, order: Order, now: datetime) -> None:
        """An order we sent that the venue does not know. TRIGGERED means the daemon
        stopped between the trigger and the send (SUBMITTED is journaled before any
        request leaves): it was never sent. SUBMITTED may be a venue that is slow to
        list it, so only after a grace period."""
        never_sent = order.status is OrderStatus.TRIGGERED
        if never_sent or (
            order.status is OrderStatus.SUBMITTED and now - order.updated_at > UNSEEN_GRACE
        ):
            reason = (
                "fired, but the daemon stopped before sending it; not sent"
                if never_sent
                else f"the venue has no such order {UNSEEN_GRACE.seconds} s after sending"
            )
            failed = self._exec.mark_failed(order, reason)
            self._journal.event(
                "order_not_sent",
                reason,
                severity=Severity.WARNING,
                client_order_id=order.client_order_id,
            )
            self._remember(failed)

    async def _expire_due(self, now: datetime) -> None:
        """Good-till-date without ticks: emulated orders are expired here too (the trigger
        book only sees time when a tick of the symbol arrives), resting ones cancelled."""
        due = [
            o
            for o in self._live.values()
            if o.expires_at is not None
            and o.expires_at <= now
            and o.client_order_id not in self._in_flight
        ]
        for order in due:
            if order.emulated and order.status is OrderStatus.PENDING:
                self._triggers.remove(order.client_order_id)
                expired = order.with_status(OrderStatus.EXPIRED, at=now)
                self._journal.order(expired, "expired", order.status)
                self._remember(expired)
            elif order.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
                try:
                    await self.cancel_order(order.client_order_id)
                except (ExchangeError, ValidationError) as exc:
                    log.warning(
                        "expiry_cancel_failed",
                        client_order_id=order.client_order_id,
                        error=str(exc),
                    )
