"""TriggerBook: which emulated (in-process) orders fire, or expire, on a price tick.

The order manager arms emulated orders here, feeds every price tick to :meth:`on_tick`
and executes what comes back. The book does no I/O and knows no exchange; it only
implements the trigger table of docs/architecture.md ('Trigger semantics'), with ``p``
the tick price:

========================  ======================================================
LIMIT buy / sell          ``p ≤ limit`` / ``p ≥ limit``
STOP_MARKET buy / sell    ``p ≥ stop`` / ``p ≤ stop``
STOP_LIMIT buy / sell     ``p ≥ stop`` / ``p ≤ stop`` (the limit is the caller's)
TAKE_PROFIT_MARKET s / b  ``p ≥ tp`` / ``p ≤ tp``
TRAILING_STOP sell / buy  see core/trailing.py: peak / trough since activation
any with ``expires_at``   ``tick ts ≥ expires_at`` → EXPIRED, checked before firing
========================  ======================================================

Exact rules (the reference evaluator in tests/trigger_reference.py follows the same):

- A gap through a trigger fires on that tick; ``fire_price`` is the tick price (never
  the stop, which did not trade) and ``trigger_price`` the level that was crossed: the
  limit / stop / take-profit, or a trailing order's stop level at that moment.
- An order expiring on a tick is reported expired, not fired, even if the price crosses.
- Trailing stops: with an activation price, the first tick at or through it activates
  the order and sets the extreme to its price; without one, the first tick seen after
  arming does (or arming itself, when the caller passes ``initial_price``, which is only
  allowed without an activation price). The fire check uses the extreme after updating
  it with the tick's price, so an order never fires on the tick it activates.
  ``trail_percent`` is a percentage in (0, 100): 0.5 means 0.5 %.
- Within one tick, fired orders are sorted by (trigger price, ``created_at``, client
  order id) and expired ones by (``expires_at``, ``created_at``, client order id).
- A fired, expired or removed order leaves the book; symbols never touch each other.
- ``p`` is the price the order watches (:class:`~core.models.PriceSource`): the last
  trade by default, else the tick's mark, or its ask for a buy and bid for a sell. A tick
  without that price (a feed that only knows trades) uses the last trade for it. Orders
  watching different prices live in separate books; a tick evaluates each book of its
  symbol with that book's price, and what fires is ordered as one list.

Cost per tick does not grow with the orders that do not fire: per symbol, the simple
triggers fold into two heaps ("fires when p ≥ X" and "fires when p ≤ X", the latter
stored negated so both are min-heaps), expiries into a third, and trailing stops into
:class:`~core.trailing.TrailingSet` groups. A tick that fires nothing compares a few heap
tops and returns a shared empty result. Removal is lazy; the book compacts all its
structures once dead entries outnumber the live orders, so churn cannot grow memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.errors import ValidationError
from core.models import Side
from core.money import ZERO, require_aware
from core.order_model import Order, OrderType
from core.trailing_groups import Armed, DeadCount
from core.trigger_structures import (
    STREAM_SEP,
    SymbolBook,
    pop_levels,
    positive,
    prepare_level,
    prepare_trailing,
    stream_key,
    usable,
)

_EMULATED = frozenset(
    {
        OrderType.LIMIT,
        OrderType.STOP_MARKET,
        OrderType.STOP_LIMIT,
        OrderType.TAKE_PROFIT_MARKET,
        OrderType.TRAILING_STOP,
    }
)


@dataclass(frozen=True, slots=True)
class Fired:
    """An order that fired: executed by the caller at market, or as a limit."""

    client_order_id: str
    symbol: str
    fire_price: Decimal  # the tick price that fired it
    trigger_price: Decimal  # the level crossed (a trailing order's stop at that moment)
    ts: datetime
    # The order's creation time: the tie-break when orders of several books fire together.
    created_at: datetime | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did: orders fired, and client ids of orders that expired."""

    fired: tuple[Fired, ...] = ()
    expired: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrailingState:
    """A trailing order's progress, persisted so a restart resumes instead of restarting.

    ``extreme`` is the peak (sell) or trough (buy) since activation, None while inactive.
    """

    client_order_id: str
    activated: bool
    extreme: Decimal | None


_NOTHING = TickResult()


class TriggerBook:
    """Emulated orders by symbol; :meth:`on_tick` says which fire and which expire.

    ``compact_min`` is the number of lazily deleted entries tolerated before compaction
    is considered (compaction happens once they also outnumber the live orders).
    """

    def __init__(self, *, compact_min: int = 1024) -> None:
        self._entries: dict[str, Armed] = {}
        self._books: dict[str, SymbolBook] = {}
        # Per symbol, the keys of its books on other prices than the last trade.
        self._streams: dict[str, list[str]] = {}
        self._dead = DeadCount()
        self._seq = 0
        self._compact_min = compact_min

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._entries

    # -- arming and removing -----------------------------------------------------------
    def arm(self, order: Order, *, initial_price: Decimal | None = None) -> None:
        """Hold ``order`` until it fires, expires or is removed.

        Raises ValidationError naming the field when the order lacks what its type needs,
        is not an emulated type, or is already armed. ``initial_price`` (trailing stops
        without activation price only) activates the order at once with that extreme.
        """
        cid = order.client_order_id
        if cid in self._entries:
            raise ValidationError("client_order_id", "is already armed", cid)
        if order.type not in _EMULATED:
            raise ValidationError(
                "type", "must be an emulated trigger type, not MARKET", order.type
            )
        if order.side not in (Side.BUY, Side.SELL):
            raise ValidationError("side", "must be 'buy' or 'sell'", order.side)
        sell = order.side == Side.SELL
        created_at = require_aware(order.created_at, "created_at")
        expires_at = None
        if order.expires_at is not None:
            expires_at = require_aware(order.expires_at, "expires_at")
        if initial_price is not None and order.type != OrderType.TRAILING_STOP:
            raise ValidationError("initial_price", "is only for trailing stops", initial_price)
        self._seq += 1
        entry = Armed(cid, order.symbol, self._seq, created_at, expires_at)
        entry.stream = stream_key(order)
        # Validate everything first (the _prepare_* raise); only then touch the structures.
        if order.type == OrderType.TRAILING_STOP:
            extreme = prepare_trailing(entry, order, sell, initial_price)
            book = self._book(entry.stream)
            percent = order.trail_percent is not None
            tset = book.trailing_set(sell, percent, self._dead, self._compact_min)
            entry.tset = tset
            if entry.activation_key is not None:
                tset.add_waiting(entry)
            elif extreme is not None:
                tset.add_active(entry, extreme)
            else:
                tset.add_pending(entry)
        elif prepare_level(entry, order, sell):
            book = self._book(entry.stream)
            heapq.heappush(book.above, (entry.level, entry.seq, entry))
        else:
            book = self._book(entry.stream)
            heapq.heappush(book.below, (entry.level.copy_negate(), entry.seq, entry))
        if expires_at is not None:
            heapq.heappush(book.expiry, (expires_at, entry.seq, entry))
        book.quiet = None
        self._entries[cid] = entry

    def _book(self, key: str) -> SymbolBook:
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = SymbolBook()
            if STREAM_SEP in key:
                self._streams.setdefault(key.split(STREAM_SEP, 1)[0], []).append(key)
        return book

    def remove(self, client_order_id: str) -> bool:
        """Disarm an order (cancelled by the user); False when it is not in the book."""
        entry = self._entries.pop(client_order_id, None)
        if entry is None:
            return False
        entry.alive = False
        self._dead.dead += 1 if entry.expires_at is None else 2
        self._maybe_compact()
        return True

    # -- the tick ----------------------------------------------------------------------
    def on_tick(
        self,
        symbol: str,
        price: Decimal,
        ts: datetime,
        *,
        bid: Decimal | None = None,
        ask: Decimal | None = None,
        mark: Decimal | None = None,
    ) -> TickResult:
        """Apply one tick of ``symbol`` (last trade ``price``, and the quote and mark
        when the feed knows them); return what fired and what expired."""
        others = self._streams.get(symbol)
        if others is None:
            return self._evaluate(symbol, symbol, price, ts)
        parts = [self._evaluate(symbol, symbol, price, ts)]
        quotes = {"mark": mark, "bid": bid, "ask": ask}
        for key in others:
            own = quotes[key.split(STREAM_SEP, 1)[1]]
            watched = own if own is not None and usable(own) else price
            parts.append(self._evaluate(key, symbol, watched, ts))
        return _merge(parts)

    def _evaluate(self, key: str, symbol: str, price: Decimal, ts: datetime) -> TickResult:
        """One book's reaction to ``price``."""
        book = self._books.get(key)
        if book is None:
            return _NOTHING
        if ts.tzinfo is None:
            raise ValidationError("ts", "must be timezone-aware", ts)
        if not (price.is_finite() and price > ZERO):
            # A glitched zero tick would otherwise fire every sell stop on the symbol.
            raise ValidationError("price", "must be a finite number > 0", price)
        queue = book.expiry
        due = queue and queue[0][0] <= ts
        band = book.quiet
        if band is None:
            band = book.quiet = book.quiet_band()
        if band[0] < price < band[1] and band[2] <= price <= band[3] and not due:
            return _NOTHING  # the common tick: nothing in this book is near the price
        book.quiet = None  # what follows may change the structures
        negp = price.copy_negate()
        fired: list[tuple[Decimal, Armed]] | None = None
        expired: list[Armed] | None = None
        if due:
            expired = self._expire(queue, ts)
        heap = book.above
        if heap and heap[0][0] <= price:
            fired = pop_levels(heap, price, fired, self._dead)
        heap = book.below
        if heap and heap[0][0] <= negp:
            fired = pop_levels(heap, negp, fired, self._dead)
        for tset in book.sells:
            hits = tset.on_tick(price, negp)
            if hits is not None:
                fired = hits if fired is None else fired + hits
        for tset in book.buys:
            hits = tset.on_tick(negp, price)
            if hits is not None:
                fired = hits if fired is None else fired + hits
        if fired is None and expired is None:
            return _NOTHING
        return self._result(symbol, price, ts, fired or [], expired or [])

    def _expire(self, queue: list[tuple[datetime, int, Armed]], ts: datetime) -> list[Armed]:
        expired: list[Armed] = []
        while queue and queue[0][0] <= ts:
            entry = heapq.heappop(queue)[2]
            if entry.alive:
                entry.alive = False  # its trigger-structure reference is now dead
                del self._entries[entry.cid]
                self._dead.dead += 1
                expired.append(entry)
            else:
                self._dead.dead -= 1
        return expired

    def _result(
        self,
        symbol: str,
        price: Decimal,
        ts: datetime,
        fired: list[tuple[Decimal, Armed]],
        expired: list[Armed],
    ) -> TickResult:
        for _, entry in fired:
            del self._entries[entry.cid]
            if entry.expires_at is not None:
                self._dead.dead += 1  # its expiry-heap reference is now dead
        fired.sort(key=lambda hit: (hit[0], hit[1].created_at, hit[1].cid))
        expired.sort(key=lambda e: (e.expires_at, e.created_at, e.cid))
        self._maybe_compact()
        return TickResult(
            fired=tuple(Fired(e.cid, symbol, price, level, ts, e.created_at) for level, e in fired),
            expired=tuple(e.cid for e in expired),
        )

    # -- persistence -------------------------------------------------------------------
    def trailing_states(self) -> list[TrailingState]:
        """The state of every armed trailing stop, by client order id (for persistence)."""
        states = []
        for book in self._books.values():
            for tset in book.sets.values():
                for entry in tset.live_entries():
                    extreme = tset.extreme_of(entry)
                    states.append(TrailingState(entry.cid, extreme is not None, extreme))
        states.sort(key=lambda s: s.client_order_id)
        return states

    def restore_trailing(self, states: Iterable[TrailingState]) -> None:
        """Resume re-armed trailing stops from saved states (after a restart).

        States of orders not in the book are ignored (they ended while we were down); a
        state naming a non-trailing order, or an active one without a positive extreme,
        is a ValidationError and nothing is restored.
        """
        todo: list[tuple[Armed, TrailingState]] = []
        for state in states:
            entry = self._entries.get(state.client_order_id)
            if entry is None:
                continue
            if entry.tset is None:
                raise ValidationError("client_order_id", "is not a trailing stop", entry.cid)
            if state.activated:
                positive(state.extreme, "extreme")
            todo.append((entry, state))
        for entry, state in todo:
            self._replace_trailing(entry, state)

    def _replace_trailing(self, entry: Armed, state: TrailingState) -> None:
        tset = entry.tset
        assert tset is not None
        self._seq += 1
        fresh = entry.clone(self._seq)
        entry.alive = False
        self._dead.dead += 1
        self._entries[fresh.cid] = fresh
        if fresh.expires_at is not None:
            self._dead.dead += 1
            heapq.heappush(self._books[fresh.stream].expiry, (fresh.expires_at, fresh.seq, fresh))
        self._books[fresh.stream].quiet = None
        if state.activated and state.extreme is not None:
            tset.add_active(fresh, state.extreme)
        elif fresh.activation_key is not None:
            tset.add_waiting(fresh)
        else:
            tset.add_pending(fresh)
        self._maybe_compact()

    # -- housekeeping ------------------------------------------------------------------
    def _maybe_compact(self) -> None:
        if self._dead.dead > self._compact_min and self._dead.dead > len(self._entries):
            self._compact()

    def _compact(self) -> None:
        """Drop every dead entry from every structure: O(n), after ≥ n removals."""
        for key in list(self._books):
            book = self._books[key]
            book.quiet = None
            for heap in (book.above, book.below):
                heap[:] = [item for item in heap if item[2].alive]
                heapq.heapify(heap)
            book.expiry[:] = [item for item in book.expiry if item[2].alive]
            heapq.heapify(book.expiry)
            for tset in book.sets.values():
                tset.compact()
            if not (book.above or book.below or book.expiry or any(book.sets.values())):
                del self._books[key]
                if STREAM_SEP in key:
                    symbol = key.split(STREAM_SEP, 1)[0]
                    self._streams[symbol].remove(key)
                    if not self._streams[symbol]:
                        del self._streams[symbol]
        self._dead.dead = 0

    def _stored_entries(self) -> int:
        """References held by all structures, live or dead (a memory measure for tests)."""
        return sum(book.stored() for book in self._books.values())


def _merge(parts: list[TickResult]) -> TickResult:
    """The results of one symbol's books as one, in the same deterministic order."""
    parts = [p for p in parts if p is not _NOTHING]
    if len(parts) < 2:
        return parts[0] if parts else _NOTHING
    fired = sorted(
        (f for p in parts for f in p.fired),
        key=lambda f: (f.trigger_price, f.created_at, f.client_order_id),
    )
    return TickResult(fired=tuple(fired), expired=tuple(c for p in parts for c in p.expired))
