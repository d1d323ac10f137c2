"""The parts of the trailing-stop structure that hold state: the armed entries, the
groups of active orders sharing one extreme, and a set's stack and index of groups with
arming, re-indexing, persistence and compaction. The tick itself (activating, raising
the extreme, firing) is in core/trailing.py, which explains the algorithm.

Removal is lazy: :class:`Armed` entries carry an ``alive`` flag and dead ones are skipped
when met; the shared :class:`DeadCount` lets the book compact when they pile up.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal

# Heap items: (sort key, unique sequence, payload); the sequence keeps payloads uncompared.
ArmedItem = tuple[Decimal, int, "Armed"]
_ZERO = Decimal(0)


# Stale entries a set's group index may hold beyond twice its groups before it is rebuilt
# (an O(groups) pass, so rebuilding at 2x + this stays O(1) per new peak). At most this,
# whatever the book's compact_min: a book holds a set per market, side and kind, and at
# 1,024 each the load world's sets gained ~19,000 stale entries per 20 s of new peaks
# (tests/bench/fanout_bench.py): its memory growth, and what full collections walked.
INDEX_SLACK = 16


class DeadCount:
    """How many lazily deleted entries the book's structures still hold (shared counter)."""

    __slots__ = ("dead",)

    def __init__(self) -> None:
        self.dead = 0


class Armed:
    """One armed order as the book keeps it (book-internal, mutable, never handed out).

    ``level`` is a simple trigger's price; trailing orders use ``param`` (percent or
    amount: the group heap key), ``factor`` (``1 ∓ pct/100``, precomputed), ``amount``,
    ``activation_key`` (the activation price in signed space) and ``group`` (None until
    active).
    """

    __slots__ = (
        "activation_key",
        "alive",
        "amount",
        "cid",
        "created_at",
        "expires_at",
        "factor",
        "group",
        "level",
        "param",
        "seq",
        "stream",
        "symbol",
        "tset",
    )

    def __init__(
        self,
        cid: str,
        symbol: str,
        seq: int,
        created_at: datetime,
        expires_at: datetime | None,
    ) -> None:
        self.cid = cid
        self.symbol = symbol
        self.seq = seq
        self.created_at = created_at
        self.expires_at = expires_at
        self.stream = symbol  # the key of the book holding it (see TriggerBook._stream)
        self.alive = True
        # Unused numeric fields stay 0 so the hot paths need no None checks.
        self.level = _ZERO
        self.param = _ZERO
        self.factor = _ZERO
        self.amount = _ZERO
        self.activation_key: Decimal | None = None
        self.tset: TrailingGroups | None = None
        self.group: Group | None = None

    def clone(self, seq: int) -> Armed:
        """A fresh live copy (used to move an order: the old entry is then killed)."""
        copy = Armed(self.cid, self.symbol, seq, self.created_at, self.expires_at)
        copy.level = self.level
        copy.param = self.param
        copy.factor = self.factor
        copy.amount = self.amount
        copy.activation_key = self.activation_key
        copy.tset = self.tset
        copy.stream = self.stream
        return copy


class Group:
    """Active trailing orders sharing one extreme (``peak``, in signed space)."""

    __slots__ = ("dead", "gid", "heap", "peak", "version")

    def __init__(self, gid: int, peak: Decimal) -> None:
        self.gid = gid
        self.peak = peak
        self.heap: list[ArmedItem] = []
        self.version = 0
        self.dead = False


class TrailingGroups:
    """The state of one trailing set: pending, waiting and active orders, their groups and
    the index over the groups; see :class:`core.trailing.TrailingSet` for the tick."""

    __slots__ = (
        "_gids",
        "_slack",
        "activation",
        "counter",
        "dead_groups",
        "index",
        "pending",
        "percent",
        "sell",
        "stack",
    )

    def __init__(self, *, sell: bool, percent: bool, counter: DeadCount, slack: int) -> None:
        self.sell = sell
        self.percent = percent
        self.counter = counter
        self._slack = min(slack, INDEX_SLACK)
        self._gids = 0
        # Armed without activation price and not yet seen a tick.
        self.pending: list[Armed] = []
        # Waiting for their activation price: min-heap of the activation in signed space.
        self.activation: list[ArmedItem] = []
        # Active groups, peaks non-increasing from bottom to top.
        self.stack: list[Group] = []
        # (−tightest stop in signed space, gid, version, group): fires while key ≤ −q.
        self.index: list[tuple[Decimal, int, int, Group]] = []
        self.dead_groups = 0

    # -- arming --------------------------------------------------------------------
    def add_pending(self, entry: Armed) -> None:
        """Arm an order that activates on the next tick (no activation price)."""
        self.pending.append(entry)

    def add_waiting(self, entry: Armed) -> None:
        """Arm an order that activates when the price reaches its activation price."""
        assert entry.activation_key is not None
        heapq.heappush(self.activation, (entry.activation_key, entry.seq, entry))

    def add_active(self, entry: Armed, extreme: Decimal) -> None:
        """Arm an order already active with ``extreme`` (a real price: peak or trough).

        The extreme may lie anywhere among the existing groups (a restored state), so the
        group is found, or inserted, by binary search in the ordered stack.
        """
        peak = extreme if self.sell else extreme.copy_negate()
        stack = self.stack
        pos = bisect_right(stack, peak.copy_negate(), key=_neg_peak)
        for j in range(pos - 1, -1, -1):
            group = stack[j]
            if group.peak != peak:
                break
            if not group.dead:
                self._join(group, (entry,))
                return
        group = self._new_group(peak)
        stack.insert(pos, group)
        self._join(group, (entry,))

    # -- groups and the index ----------------------------------------------------------
    def _stop(self, peak: Decimal, entry: Armed) -> Decimal:
        """The real stop price of ``entry`` in a group whose signed extreme is ``peak``."""
        if self.sell:
            if self.percent:
                return peak * entry.factor
            return peak - entry.amount
        trough = peak.copy_negate()
        if self.percent:
            return trough * entry.factor
        return trough + entry.amount

    def _new_group(self, peak: Decimal) -> Group:
        self._gids += 1
        return Group(self._gids, peak)

    def _join(self, group: Group, entries: Sequence[Armed]) -> None:
        heap = group.heap
        for entry in entries:
            entry.group = group
            heapq.heappush(heap, (entry.param, entry.seq, entry))
        self._reindex(group)

    def _key(self, group: Group) -> Decimal | None:
        """The index key of ``group`` (its tightest stop, signed and negated), None if empty."""
        heap = group.heap
        while heap and not heap[0][2].alive:
            heapq.heappop(heap)
            self.counter.dead -= 1
        if not heap:
            return None
        stop = self._stop(group.peak, heap[0][2])
        return stop.copy_negate() if self.sell else stop

    def _reindex(self, group: Group) -> None:
        """Publish ``group``'s current key (older index entries become stale)."""
        group.version += 1
        key = self._key(group)
        if key is None:
            group.dead = True
            self.dead_groups += 1
            if self.dead_groups > self._slack and 2 * self.dead_groups > len(self.stack):
                self.rebuild_index()
            return
        index = self.index
        heapq.heappush(index, (key, group.gid, group.version, group))
        if len(index) > 2 * len(self.stack) + self._slack:
            self.rebuild_index()

    def rebuild_index(self) -> None:
        """Drop dead groups and stale index entries (in place: callers hold the lists)."""
        live: list[Group] = []
        keys: list[tuple[Decimal, int, int, Group]] = []
        for group in self.stack:
            if group.dead:
                continue
            key = self._key(group)
            if key is None:
                group.dead = True
                continue
            group.version += 1
            live.append(group)
            keys.append((key, group.gid, group.version, group))
        self.stack[:] = live
        self.dead_groups = 0
        heapq.heapify(keys)
        self.index[:] = keys

    # -- persistence and housekeeping ----------------------------------------------------
    def extreme_of(self, entry: Armed) -> Decimal | None:
        """The real peak / trough of an active entry, None while not active."""
        group = entry.group
        if group is None:
            return None
        return group.peak if self.sell else group.peak.copy_negate()

    def live_entries(self) -> Iterator[Armed]:
        """Every live entry, wherever it waits."""
        for entry in self.pending:
            if entry.alive:
                yield entry
        for item in self.activation:
            if item[2].alive:
                yield item[2]
        for group in self.stack:
            for item in group.heap:
                if item[2].alive:
                    yield item[2]

    def compact(self) -> None:
        """Physically drop every dead entry (the caller resets the dead count)."""
        self.pending[:] = [e for e in self.pending if e.alive]
        self.activation[:] = [item for item in self.activation if item[2].alive]
        heapq.heapify(self.activation)
        for group in self.stack:
            if not group.dead:
                group.heap[:] = [item for item in group.heap if item[2].alive]
                heapq.heapify(group.heap)
        self.rebuild_index()

    def stored(self) -> int:
        """How many references this set holds (live or dead): a memory measure for tests."""
        return (
            len(self.pending)
            + len(self.activation)
            + sum(len(g.heap) for g in self.stack)
            + len(self.stack)
            + len(self.index)
        )

    def __bool__(self) -> bool:
        return bool(self.pending or self.activation or self.stack)


def _neg_peak(group: Group) -> Decimal:
    return group.peak.copy_negate()
