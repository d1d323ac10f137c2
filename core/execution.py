"""The executor: sends, refreshes and cancels orders on a venue and records every change.

It is the one place an Order meets the ExchangeAdapter, shared by the order manager
(emulated and manual orders) and the atomic position manager (entries, stops, exits).
Each call returns the updated order and the fills that are new to it; the order's own
snapshot and history are journaled here, and the caller journals the fills, because only
the caller knows what they realise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from core.journal import Journal
from core.order_model import Fill, Order, OrderStatus, OrderType
from core.order_sync import apply_snapshot, unknown_reply
from core.retry import Backoff, retry_transient
from core.venue import (
    ExchangeAdapter,
    ExchangeError,
    ExchangeOrder,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    TransientExchangeError,
)

CONDITIONAL_TYPES = frozenset(
    {OrderType.STOP_MARKET, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_MARKET}
)


READ_BACKOFF = Backoff(tries=4, base_s=0.05, max_s=1.0)


@dataclass(frozen=True, slots=True)
class Update:
    """An order after a venue call, and the executions that call revealed."""

    order: Order
    fills: tuple[Fill, ...] = ()


def refused(submitted: Order, exc: ExchangeError) -> Order:
    """The recorded outcome of a submit the venue refused: REJECTED for a rejection,
    FAILED otherwise, with the venue's reason. Deterministic, so a caller that caught the
    error can rebuild exactly the snapshot the executor journaled."""
    status = OrderStatus.REJECTED if isinstance(exc, OrderRejected) else OrderStatus.FAILED
    return submitted.with_status(status, error=str(exc)[:500])


def request_for(order: Order, *, send_type: OrderType | None = None) -> OrderRequest:
    """The venue request for ``order`` (an emulated order that fired is sent as
    ``send_type``: MARKET, or LIMIT at its limit price)."""
    kind = send_type or order.type
    price = order.limit_price if order.type is OrderType.STOP_LIMIT else order.price
    return OrderRequest(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        type=kind,
        amount=order.remaining if order.fills else order.amount,
        price=price if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        trigger_price=order.trigger_price if kind in CONDITIONAL_TYPES else None,
        reduce_only=order.reduce_only,
    )


class Executor:
    """Venue calls for orders, with the audit trail kept current."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        journal: Journal,
        *,
        read_backoff: Backoff = READ_BACKOFF,
    ) -> None:
        self.adapter = adapter
        self.journal = journal
        self._read_backoff = read_backoff

    def _changed(self, before: Order, after: Order, kind: str, **detail: object) -> None:
        if after.version != before.version:
            self.journal.order(after, kind, before.status, detail or None)

    async def submit(self, order: Order, request: OrderRequest | None = None) -> Update:
        """Mark SUBMITTED, send, fold the reply in.

        A final refusal is recorded (REJECTED / FAILED) and re-raised. A transient error
        the adapter could not resolve by client id leaves the order SUBMITTED and is
        re-raised: the venue may hold it, so only a lookup may decide (failure mode 14).
        """
        sent = order.with_status(OrderStatus.SUBMITTED)
        self.journal.order(sent, "submitted", order.status)
        try:
            reply = await self.adapter.create_order(request or request_for(sent))
        except TransientExchangeError as exc:
            self.journal.unanswered(sent, str(exc))
            raise
        except ExchangeError as exc:
            failed = refused(sent, exc)
            self.journal.order(failed, failed.status.value.lower(), sent.status)
            raise
        return self._fold(sent, reply, (), "accepted")

    def mark_failed(self, order: Order, reason: str) -> Order:
        """Record an order as FAILED (it never reached the venue, or its fate is settled)."""
        failed = order.with_status(OrderStatus.FAILED, error=reason[:500])
        self.journal.order(failed, "failed", order.status)
        return failed

    def _fold(
        self,
        order: Order,
        reply: ExchangeOrder,
        fills: Sequence[Fill],
        kind: str,
        **detail: object,
    ) -> Update:
        updated, new_fills = apply_snapshot(order, reply, fills)
        self._changed(order, updated, kind, **detail)
        return Update(updated, tuple(new_fills))

    async def refresh(self, order: Order) -> Update:
        """Fetch the order by client id (and its fills when the reply lacks prices)."""
        conditional = order.type in CONDITIONAL_TYPES and not order.emulated
        snapshot = await retry_transient(
            lambda: self.adapter.fetch_order(
                order.symbol,
                client_order_id=order.client_order_id,
                conditional=conditional,
            ),
            self._read_backoff,
        )
        fills: Sequence[Fill] = ()
        missing = (snapshot.filled or 0) > order.filled and not snapshot.fills
        if unknown_reply(snapshot) or missing:
            eid = snapshot.exchange_order_id or order.exchange_order_id
            if eid:
                fills = await retry_transient(
                    lambda: self.adapter.fetch_fills(order.symbol, exchange_order_id=eid),
                    self._read_backoff,
                )
        return self._fold(order, snapshot, fills, "refreshed")

    async def settle(
        self,
        order: Order,
        *,
        timeout_s: float,
        want: Decimal | None = None,
        until: Callable[[Order], bool] | None = None,
    ) -> Update:
        """Refresh until the order is terminal, ``want`` is filled or ``until`` holds, or
        time runs out.

        Used to learn an entry's real fill when the reply did not say (failure mode 1);
        returns whatever is known at the deadline, never a guess.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        fills: list[Fill] = []
        delay = 0.02
        while True:
            try:
                update = await self.refresh(order)
            except (OrderNotFound, TransientExchangeError):
                # Not visible yet, or the venue is briefly unreachable: keep asking until
                # the deadline; an entry that filled must not be given up on early.
                update = Update(order)
            order = update.order
            fills.extend(update.fills)
            done = (
                order.status.is_terminal
                or (want is not None and order.filled >= want)
                or (until is not None and until(order))
            )
            if done or loop.time() >= deadline:
                return Update(order, tuple(fills))
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
            delay = min(delay * 2, 0.5)

    async def cancel(self, order: Order, reason: str | None = None) -> Update:
        """Cancel on the venue. An order the venue no longer has is refreshed instead: it
        may have filled (the caller must then account for the fill).

        ``reason`` (why we cancel: "position 7 closed (take_profit)") is kept on the
        order (``error_message``) and in the history rows' detail, so ``orders --all``
        and ``monitoring.order_events`` say why it ended."""
        if order.status.is_terminal:
            return Update(order)
        detail: dict[str, object] = {} if reason is None else {"reason": reason}
        if order.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            cancelling = order.with_status(OrderStatus.CANCELLING, error=reason)
            self.journal.order(cancelling, "cancelling", order.status, detail or None)
        else:
            cancelling = order
        conditional = order.type in CONDITIONAL_TYPES and not order.emulated
        try:
            reply = await retry_transient(
                lambda: self.adapter.cancel_order(
                    order.symbol,
                    exchange_order_id=order.exchange_order_id,
                    client_order_id=order.client_order_id,
                    conditional=conditional,
                ),
                self._read_backoff,
            )
        except (OrderNotFound, OrderRejected):
            # Gone already: filled, cancelled by the venue, or never placed. Ask.
            try:
                return await self.refresh(cancelling)
            except OrderNotFound:
                gone = cancelling.with_status(OrderStatus.CANCELLED, error=reason)
                self.journal.order(
                    gone, "cancelled", cancelling.status, {"note": "not on venue", **detail}
                )
                return Update(gone)
        update = self._fold(cancelling, reply, (), "cancelled", **detail)
        order = update.order
        if not order.status.is_terminal and reply.status is None:
            # Venues often answer a cancel with the id only; the cancel was accepted.
            done = order.with_status(OrderStatus.CANCELLED, error=reason)
            self.journal.order(done, "cancelled", order.status, detail or None)
            order = done
        return Update(order, update.fills)
