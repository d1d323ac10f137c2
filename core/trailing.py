"""Trailing stops whose cost per tick does not grow with the number of resting orders.

A trailing sell stop remembers the highest price (its *peak*) seen since it activated and
fires when the price falls to ``peak × (1 − pct/100)`` (or ``peak − amount``). Updating
every order's peak on every tick would cost O(n) per tick. The idea that avoids it:

**Orders activated earlier have seen every price a later one has seen**, so an older
order's peak is never below a younger one's. Orders activated on the same tick share a
peak; and once a new high ``p`` exceeds several peaks, all of those orders now share the
peak ``p``. So the active orders form a few *groups*, each with one shared peak, kept on a
*stack* ordered by peak: highest (oldest) at the bottom, lowest (youngest) on top.

- A newly activated order joins the group whose peak is the current price, on top
  (creating it if needed).
- A new high ``p`` pops every group on top whose peak is below ``p`` and merges them into
  one group with peak ``p`` (the smaller heap is poured into the larger one, so each order
  moves O(log n) times over its life and merges are amortised cheap).
- Within a group all orders share the peak, so the tightest stop is the order with the
  smallest percent (or amount): each group keeps a min-heap by that parameter.
- An *index* heap over the groups, keyed by each group's tightest stop, tells in O(1)
  whether anything fires on this tick; it is lazy (an entry whose group version changed
  is skipped and dropped) and rebuilt when stale entries outnumber the live groups.

A tick that fires nothing therefore costs a few comparisons, whatever the book's size.

Buy trailing stops are the exact mirror (trough, stop above it). Rather than writing the
mirror twice, a :class:`TrailingSet` works in a *signed price space*: sells see ``q = p``
and buys see ``q = −p``, so "trough" becomes "peak of −p" and every comparison is the
same. Stop levels themselves are always computed in real prices, with exactly the
formulas of docs/architecture.md ('Trigger semantics'), so the results equal a naive
evaluator's to the digit.

Rules shared with the book (core/triggers.py) and the reference (tests/trigger_reference.py):
an order with an activation price activates on the first tick that reaches it, one without
activates on the first tick it sees (or at arming, with a caller-given initial extreme);
the activating tick sets the extreme to its price; the fire check uses the extreme after
updating it with the tick's price, so an order never fires on the tick it activates.

The entries, the groups and the set's bookkeeping live in core/trailing_groups.py; this
module adds the tick.
"""

from __future__ import annotations

import heapq
from decimal import Decimal

from core.trailing_groups import Armed, Group, TrailingGroups


class TrailingSet(TrailingGroups):
    """The trailing stops of one symbol, one side and one kind (percent or amount)."""

    __slots__ = ()

    # -- the tick --------------------------------------------------------------------
    def on_tick(self, q: Decimal, negq: Decimal) -> list[tuple[Decimal, Armed]] | None:
        """Process one tick at signed price ``q`` (``negq`` = −q); return what fired.

        Returns ``(trigger level, entry)`` pairs, or None when nothing fired (the common
        case, which allocates nothing).
        """
        activation = self.activation
        if self.pending or (activation and activation[0][0] <= q):
            self._activate(q)
        else:
            stack = self.stack
            if stack and stack[-1].peak < q:
                self._raise_to(q)
        index = self.index
        if index and index[0][0] <= negq:
            return self._fire(q if self.sell else negq, negq)
        return None

    def _activate(self, q: Decimal) -> None:
        newly: list[Armed] = [e for e in self.pending if e.alive]
        self.counter.dead -= len(self.pending) - len(newly)
        self.pending.clear()
        activation = self.activation
        while activation and activation[0][0] <= q:
            entry = heapq.heappop(activation)[2]
            if entry.alive:
                newly.append(entry)
            else:
                self.counter.dead -= 1
        self._raise_to(q)
        if not newly:
            return
        stack = self.stack
        top = stack[-1] if stack else None
        if top is None or top.dead or top.peak != q:
            top = self._new_group(q)
            stack.append(top)
        self._join(top, newly)

    def _raise_to(self, q: Decimal) -> None:
        """A new extreme ``q``: every group on top with a lower peak now has peak ``q``."""
        stack = self.stack
        merged: Group | None = None
        while stack and stack[-1].peak < q:
            group = stack.pop()
            if group.dead:
                self.dead_groups -= 1
            elif merged is None:
                merged = group
            else:
                merged = self._merge(merged, group)
        if merged is not None:
            merged.peak = q
            stack.append(merged)
            self._reindex(merged)

    def _merge(self, a: Group, b: Group) -> Group:
        big, small = (a, b) if len(a.heap) >= len(b.heap) else (b, a)
        heap = big.heap
        for item in small.heap:
            entry = item[2]
            if entry.alive:
                entry.group = big
                heapq.heappush(heap, item)
            else:
                self.counter.dead -= 1
        small.heap = []
        small.version += 1  # its index entries are now stale
        return big

    def _fire(self, price: Decimal, negq: Decimal) -> list[tuple[Decimal, Armed]]:
        fired: list[tuple[Decimal, Armed]] = []
        index = self.index
        sell = self.sell
        while index and index[0][0] <= negq:
            _, _, version, group = heapq.heappop(index)
            if version != group.version:
                continue
            heap = group.heap
            while heap:
                entry = heap[0][2]
                if not entry.alive:
                    heapq.heappop(heap)
                    self.counter.dead -= 1
                    continue
                stop = self._stop(group.peak, entry)
                if (price > stop) if sell else (price < stop):
                    break
                heapq.heappop(heap)
                entry.alive = False
                fired.append((stop, entry))
            self._reindex(group)
        return fired
