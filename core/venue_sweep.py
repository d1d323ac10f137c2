"""The venue sweep: venue positions and orders that no live record here accounts for.

Part of every reconciliation pass, after the positions we know (core/reconciler.py):

- our orders that belong to no live position or request are cancelled (orphans);
- a venue position with no record, but whose fills carry our client ids and add up to
  what the venue holds (a crash between the entry and the audit write), is adopted and
  protected;
- anything of unknown origin is reported once, and left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from core.atomic_position_manager import AtomicPositionManager
from core.ids import is_ours, owner_of, purpose_of
from core.journal import Journal
from core.models import Signal
from core.money import ZERO
from core.order_manager import OrderManager
from core.order_model import Fill, OrderPurpose
from core.position_book import PositionBook
from core.position_model import Position, PositionStatus
from core.records import Severity
from core.retry import retry_transient
from core.venue import ExchangeAdapter, ExchangeError, ExchangeOrder, ExchangePosition

ADOPTED_VERSION = 1_000_000
_STRAY_SEQ = 50  # client-id sequences of an adopted position restart past any earlier use


class VenueSweep:
    """Finds what is on the venue that nobody here accounts for: cancels our orphans,
    adopts our unrecorded positions, reports the rest once."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        journal: Journal,
        book: PositionBook,
        apm: AtomicPositionManager,
        orders: OrderManager,
        *,
        account: str,
    ) -> None:
        self._adapter = adapter
        self._journal = journal
        self._book = book
        self._apm = apm
        self._orders = orders
        self._account = account
        self._reported: set[str] = set()

    async def sweep(self) -> None:
        """Venue positions and orders nobody here accounts for."""
        venue_positions = await retry_transient(lambda: self._adapter.fetch_positions())
        open_orders = await retry_transient(lambda: self._adapter.fetch_open_orders())
        known = self._known_client_ids()
        for venue in venue_positions:
            if self._book.on_symbol(venue.symbol) is None:
                await self._stray_position(venue)
        for order in open_orders:
            cid = order.client_order_id
            if cid in known:
                continue
            if is_ours(cid, self._account) and not self._has_owner(cid):
                await self._cancel_orphan(order)
            elif cid is None or not is_ours(cid, self._account):
                self._report("unknown_order", order.exchange_order_id or "?", order.symbol)

    def _known_client_ids(self) -> set[str]:
        ids = {o.client_order_id for live in self._book for o in live.live_orders()}
        ids.update(o.client_order_id for o in self._orders.active_orders())
        return ids

    def _has_owner(self, cid: str | None) -> bool:
        owner = owner_of(cid)
        if owner is None:
            return False
        kind, number = owner
        if kind == "p":
            return self._book.get(number) is not None
        return any(o.client_order_id == cid for o in self._orders.active_orders())

    async def _cancel_orphan(self, order: ExchangeOrder) -> None:
        self._journal.event(
            "orphan_cancelled",
            "our order belongs to no live position or request; cancelling it",
            severity=Severity.WARNING,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
        )
        try:
            await self._adapter.cancel_order(
                order.symbol,
                exchange_order_id=order.exchange_order_id,
                client_order_id=order.client_order_id,
                conditional=order.trigger_price is not None,
            )
        except ExchangeError as exc:
            self._journal.event(
                "cancel_failed",
                f"orphan not cancelled: {exc}",
                severity=Severity.WARNING,
                client_order_id=order.client_order_id,
            )

    async def _stray_position(self, venue: ExchangePosition) -> None:
        """A venue position with no live record: ours if our entry filled it."""
        fills = await retry_transient(lambda: self._adapter.fetch_fills(venue.symbol))
        entries = [
            f
            for f in fills
            if is_ours(f.client_order_id, self._account)
            and purpose_of(f.client_order_id or "") is OrderPurpose.ENTRY
            and f.side is venue.side.entry_side
        ]
        owner = owner_of(entries[-1].client_order_id) if entries else None
        if owner is None or owner[0] != "p" or _net_of(fills, owner) != venue.quantity:
            # Not provably ours: our fills for that position do not add up to what the
            # venue holds (it was closed, and this is someone else's). Report, never touch.
            self._report("unknown_position", venue.symbol, venue.symbol)
            return
        await self._adopt(venue, owner[1], entries[-1].client_order_id or "")

    async def _adopt(self, venue: ExchangePosition, position_id: int, entry_cid: str) -> None:
        async with self._book.lock(venue.symbol):
            if self._book.on_symbol(venue.symbol) is not None:
                return
            position = Position(
                id=position_id,
                account=self._account,
                exchange=self._adapter.name,
                symbol=venue.symbol,
                side=venue.side,
                status=PositionStatus.PENDING_SL,
                quantity=venue.quantity,
                entry_price=venue.entry_price,
                # Rows of this id may exist (e.g. pending_entry); newest version wins there.
                version=ADOPTED_VERSION,
            )
            live = self._book.claim(position, restored_signal(position))
            live.skip_sequences(_STRAY_SEQ)
            self._journal.event(
                "adopted",
                "venue position filled by our entry but unrecorded; adopting and protecting",
                severity=Severity.CRITICAL,
                position_id=position_id,
                client_order_id=entry_cid,
                quantity=venue.quantity,
            )
            self._journal.position(position, "adopted")
            await self._apm.protect(live)

    def _report(self, kind: str, key: str, symbol: str) -> None:
        if f"{kind}:{key}" in self._reported:
            return
        self._reported.add(f"{kind}:{key}")
        self._journal.event(
            kind,
            "found on the venue, not ours: reported, not touched",
            severity=Severity.WARNING,
            symbol=symbol,
            venue_id=key,
        )


def _net_of(fills: Sequence[Fill], owner: tuple[str, int]) -> Decimal:
    """What our fills for one position add up to: entries minus exits."""
    net = ZERO
    for fill in fills:
        if owner_of(fill.client_order_id) != owner:
            continue
        entry = purpose_of(fill.client_order_id or "") is OrderPurpose.ENTRY
        net += fill.amount if entry else -fill.amount
    return net


def restored_signal(position: Position) -> Signal:
    """The protection a restored position asks for: its recorded stop and take-profit, or
    the configured defaults where it had none yet."""
    return Signal(
        symbol=position.symbol,
        side=position.side,
        amount=position.quantity or Decimal(1),
        stop_loss_price=position.stop_loss_price,
        take_profit_price=position.take_profit_price,
        id=position.signal_id,
    )
