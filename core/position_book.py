"""The live positions of one account on one venue, and the orders that belong to each.

One daemon trades one account on one venue, so a market is identified by its symbol. The
book enforces the rule that matters most: at most one non-terminal position per market,
checked and claimed under the market's lock (failure mode 7). The database's partial
unique index is the second line of defence, not the first: trading never awaits it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.errors import PositionConflict
from core.ids import client_order_id, position_owner
from core.models import Signal
from core.order_model import Order, OrderPurpose, OrderType
from core.position_model import Position
from core.positions import Marks, StopRules
from core.stop_gate import StopGate


class LivePosition:
    """A position and its orders. Mutable holder of immutable snapshots: each field is
    replaced as a whole when the venue tells us something new.

    The position's marks (price, water marks, drawdown) follow every tick in ``marks``
    (:class:`core.positions.Marks`: no allocation per tick); ``position`` is the snapshot
    with them, built when read. Assigning ``position`` replaces the snapshot and starts
    the marks from it, as assigning the marked snapshot did.
    """

    __slots__ = (
        "_seq",
        "busy",
        "entry",
        "entry_from_venue",
        "gate",
        "last_sample",
        "last_stop_move",
        "linked",
        "marks",
        "next_sample",
        "retired",
        "rules",
        "signal",
        "stop",
        "take_profit",
    )

    def __init__(
        self,
        position: Position,
        signal: Signal | None = None,
        entry: Order | None = None,
        stop: Order | None = None,
        take_profit: Order | None = None,
        retired: list[Order] | None = None,
        linked: dict[str, Order] | None = None,
        rules: StopRules | None = None,
        last_stop_move: datetime | None = None,
        last_sample: datetime | None = None,
        busy: bool = False,
        entry_from_venue: bool = False,
    ) -> None:
        self.marks = Marks(position)
        self.signal = signal
        self.entry = entry
        self.stop = stop
        self.take_profit = take_profit
        self.retired: list[Order] = [] if retired is None else retired
        # Manual orders placed for this position (``--position``) that have filled, newest
        # snapshot by client id: their fills grew or reduced it, and reconciliation must
        # count them with the position's own orders.
        self.linked: dict[str, Order] = {} if linked is None else linked
        self.rules = rules
        self.last_stop_move = last_stop_move
        self.last_sample = last_sample
        # When the next sample is due: last_sample plus the sample interval, kept by the
        # tick path beside last_sample (None: on the next tick).
        self.next_sample: datetime | None = None
        self.busy = busy  # a stop move or sync is in flight; ticks do not start another
        # The entry's fill was taken from the venue position (the order could not say): its
        # own fills, when they surface, are the same execution and must not be added again.
        self.entry_from_venue = entry_from_venue
        self._seq: dict[OrderPurpose, itertools.count[int]] = {}
        # When the stop can move at all (core/stop_gate.py), built by the tick path.
        self.gate: StopGate | None = None

    @property
    def position(self) -> Position:
        """The position as of the last tick (the snapshot is built once per change)."""
        return self.marks.snapshot()

    @position.setter
    def position(self, position: Position) -> None:
        self.marks = Marks(position)

    def __repr__(self) -> str:
        return f"LivePosition({self.position!r}, stop={self.stop!r})"

    @property
    def id(self) -> int:
        return self.marks.base.id

    @property
    def symbol(self) -> str:
        return self.marks.base.symbol

    def next_client_id(self, purpose: OrderPurpose) -> str:
        """A fresh deterministic client id for this position and purpose."""
        counter = self._seq.setdefault(purpose, itertools.count(1))
        return client_order_id(
            self.position.account, position_owner(self.id), purpose, next(counter)
        )

    def note_client_id(self, client_id: str, purpose: OrderPurpose) -> None:
        """Continue the sequence after a restored order's number, so a new order never
        reuses a client id the venue has already seen (venues refuse duplicates)."""
        tail = client_id.rsplit("-", 1)[-1]
        if not tail.isdigit():
            return
        counter = self._seq.get(purpose)
        nxt = next(counter) if counter is not None else 1
        self._seq[purpose] = itertools.count(max(nxt, int(tail) + 1))

    def new_order(
        self, purpose: OrderPurpose, type: OrderType, amount: Decimal, **fields: Any
    ) -> Order:
        """An order of this position: its account, venue, market, id and a fresh client id.

        Protective and closing orders are reduce-only on the side that closes the
        position, derived from the position itself (never from a venue echo).
        """
        closing = purpose is not OrderPurpose.ENTRY
        fields.setdefault(
            "side", self.position.side.exit_side if closing else self.position.side.entry_side
        )
        fields.setdefault("reduce_only", closing)
        return Order(
            client_order_id=self.next_client_id(purpose),
            account=self.position.account,
            exchange=self.position.exchange,
            symbol=self.symbol,
            type=type,
            amount=amount,
            purpose=purpose,
            position_id=self.id,
            **fields,
        )

    def skip_sequences(self, past: int) -> None:
        """Start every purpose's client-id sequence after ``past`` (an adopted position
        whose earlier orders we no longer know)."""
        for purpose in OrderPurpose:
            self._seq[purpose] = itertools.count(past + 1)

    @property
    def unprotected(self) -> bool:
        """Holding a quantity without a working stop that covers all of it."""
        held = self.position.quantity
        stop = self.stop
        if held <= 0:
            return False
        return stop is None or stop.status.is_terminal or stop.remaining < held

    def live_orders(self) -> list[Order]:
        """Orders of this position that may still rest on the venue."""
        return [o for o in self.all_orders() if not o.status.is_terminal]

    def all_orders(self) -> list[Order]:
        """Every order of this position we know: entry, stop, take-profit, and the rest
        (moved or lost stops, closes and rollbacks, exits the venue made without us)."""
        orders = [self.entry, self.stop, self.take_profit, *self.retired]
        return [o for o in orders if o is not None]

    def replace_order(self, old: Order, new: Order) -> None:
        """Put ``new`` (a later snapshot of ``old``) in ``old``'s place."""
        if self.stop is old:
            self.stop = new
        elif self.take_profit is old:
            self.take_profit = new
        elif self.entry is old:
            self.entry = new
        else:
            self.retired = [new if o is old else o for o in self.retired]


class PositionBook:
    """Open positions by market and id, with a lock per market."""

    def __init__(self) -> None:
        self._by_symbol: dict[str, LivePosition] = {}
        self._by_id: dict[int, LivePosition] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # The open position on a market, or None. The tick path asks it for every tick:
        # the dict's own lookup, without a method frame around it.
        self.on_symbol: Callable[[str], LivePosition | None] = self._by_symbol.get

    def lock(self, symbol: str) -> asyncio.Lock:
        """The lock serialising every change to positions on ``symbol``."""
        lock = self._locks.get(symbol)
        if lock is None:
            lock = self._locks[symbol] = asyncio.Lock()
        return lock

    def claim(self, position: Position, signal: Signal | None = None) -> LivePosition:
        """Register a new position; refuse a second one on the same market.

        The caller must hold ``lock(position.symbol)``.
        """
        existing = self._by_symbol.get(position.symbol)
        if existing is not None:
            raise PositionConflict(
                f"position {existing.id} is already open on {position.symbol}"
                f" ({existing.position.status.value})"
            )
        live = LivePosition(position=position, signal=signal)
        self._by_symbol[position.symbol] = live
        self._by_id[position.id] = live
        return live

    def release(self, live: LivePosition) -> None:
        """Forget a position that reached a terminal status."""
        if self._by_symbol.get(live.symbol) is live:
            del self._by_symbol[live.symbol]
        self._by_id.pop(live.id, None)

    def get(self, position_id: int) -> LivePosition | None:
        return self._by_id.get(position_id)

    def __iter__(self) -> Iterator[LivePosition]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
