"""The structures behind the TriggerBook (core/triggers.py): the key of the book an order
lives in, one book's heaps and trailing sets with the price band where a tick changes
nothing, and the levels an order is armed at (validated before anything is touched).
"""

from __future__ import annotations

import heapq
from datetime import datetime
from decimal import Decimal

from core.errors import ValidationError
from core.models import PriceSource, Side
from core.money import HUNDRED, ONE, ZERO
from core.order_model import Order, OrderType
from core.trailing import TrailingSet
from core.trailing_groups import Armed, ArmedItem, DeadCount

# Separates a symbol from the price it is watched by in a book key. Orders on the last
# trade (nearly all) are keyed by the bare symbol, so the common tick needs no other key.
STREAM_SEP = "\x1f"


def stream_key(order: Order) -> str:
    """The key of the book an order lives in: its symbol and the price it watches."""
    source = order.price_source
    if source is PriceSource.LAST:
        return order.symbol
    if source is PriceSource.MARK:
        return f"{order.symbol}{STREAM_SEP}mark"
    return f"{order.symbol}{STREAM_SEP}{'ask' if order.side == Side.BUY else 'bid'}"


_INFINITY = Decimal("Infinity")
_NEVER_QUIET = (_INFINITY, -_INFINITY, _INFINITY, -_INFINITY)


def usable(value: Decimal | None) -> bool:
    """A price a tick can be evaluated at: finite and above zero."""
    return value is not None and value.is_finite() and value > ZERO


class SymbolBook:
    """The structures of one symbol."""

    __slots__ = ("above", "below", "buys", "expiry", "quiet", "sells", "sets")

    def __init__(self) -> None:
        # Where a tick changes nothing here (see quiet_band); None: to be computed. Every
        # change to the structures (arming, a tick that does work, compaction) drops it.
        self.quiet: tuple[Decimal, Decimal, Decimal, Decimal] | None = None
        self.above: list[ArmedItem] = []  # (level, seq, entry): fires when p ≥ level
        self.below: list[ArmedItem] = []  # (−level, seq, entry): fires when p ≤ level
        self.expiry: list[tuple[datetime, int, Armed]] = []
        self.sets: dict[tuple[bool, bool], TrailingSet] = {}  # (sell, percent) → set
        self.sells: list[TrailingSet] = []
        self.buys: list[TrailingSet] = []

    def trailing_set(
        self, sell: bool, percent: bool, counter: DeadCount, slack: int
    ) -> TrailingSet:
        tset = self.sets.get((sell, percent))
        if tset is None:
            tset = TrailingSet(sell=sell, percent=percent, counter=counter, slack=slack)
            self.sets[(sell, percent)] = tset
            (self.sells if sell else self.buys).append(tset)
        return tset

    def quiet_band(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """``(low, high, floor, cap)``: a price ``p`` with ``low < p < high`` and
        ``floor ≤ p ≤ cap`` fires nothing, activates nothing and raises no trailing peak.

        The exact complement of the tick path's own tests, heap top by heap top: a simple
        trigger above fires at ``p ≥ level``, below at ``p ≤ level``; a trailing set works
        when it has pending orders, when the price reaches its next activation, when it
        passes its top group's peak (trough) or reaches its tightest stop.
        """
        low, high, floor, cap = -_INFINITY, _INFINITY, -_INFINITY, _INFINITY
        if self.above:
            high = self.above[0][0]
        if self.below:
            low = -self.below[0][0]
        for tset in self.sells:  # signed price q = p
            if tset.pending:
                return _NEVER_QUIET
            if tset.activation:
                high = min(high, tset.activation[0][0])
            if tset.stack:
                cap = min(cap, tset.stack[-1].peak)
            if tset.index:
                low = max(low, -tset.index[0][0])
        for tset in self.buys:  # signed price q = −p
            if tset.pending:
                return _NEVER_QUIET
            if tset.activation:
                low = max(low, -tset.activation[0][0])
            if tset.stack:
                floor = max(floor, -tset.stack[-1].peak)
            if tset.index:
                high = min(high, tset.index[0][0])
        return low, high, floor, cap

    def stored(self) -> int:
        trailing = sum(t.stored() for t in self.sets.values())
        return len(self.above) + len(self.below) + len(self.expiry) + trailing


def pop_levels(
    heap: list[ArmedItem],
    bound: Decimal,
    fired: list[tuple[Decimal, Armed]] | None,
    dead: DeadCount,
) -> list[tuple[Decimal, Armed]] | None:
    """Pop every entry whose key is ≤ ``bound`` (it fires); skip dead ones."""
    while heap and heap[0][0] <= bound:
        entry = heapq.heappop(heap)[2]
        if not entry.alive:
            dead.dead -= 1
            continue
        entry.alive = False
        if fired is None:
            fired = []
        fired.append((entry.level, entry))
    return fired


def prepare_level(entry: Armed, order: Order, sell: bool) -> bool:
    """Set a simple trigger's level; return True if it fires when ``p ≥ level``."""
    if order.type == OrderType.LIMIT:
        entry.level = positive(order.price, "price")
        return sell
    entry.level = positive(order.trigger_price, "trigger_price")
    if order.type == OrderType.TAKE_PROFIT_MARKET:
        return sell
    if order.type == OrderType.STOP_LIMIT:
        positive(order.limit_price, "limit_price")
    return not sell  # stops: a buy stop fires on the way up, a sell stop on the way down


def prepare_trailing(
    entry: Armed, order: Order, sell: bool, initial_price: Decimal | None
) -> Decimal | None:
    """Set a trailing order's parameters; return its initial extreme, if any."""
    pct, amount = order.trail_percent, order.trail_amount
    if (pct is None) == (amount is None):
        raise ValidationError("trail_percent", "give exactly one of trail_percent, trail_amount")
    if pct is not None:
        pct = positive(pct, "trail_percent")
        if pct >= HUNDRED:
            raise ValidationError("trail_percent", "must be a percentage below 100", pct)
        entry.param = pct
        entry.factor = ONE - pct / HUNDRED if sell else ONE + pct / HUNDRED
    else:
        entry.param = entry.amount = positive(amount, "trail_amount")
    activation = order.activation_price
    if activation is not None:
        activation = positive(activation, "activation_price")
        entry.activation_key = activation if sell else activation.copy_negate()
        if initial_price is not None:
            raise ValidationError(
                "initial_price", "is not allowed with an activation_price", initial_price
            )
        return None
    if initial_price is not None:
        return positive(initial_price, "initial_price")
    return None


def positive(value: Decimal | None, field: str) -> Decimal:
    """``value`` as a finite Decimal > 0, else a ValidationError naming ``field``."""
    if value is None:
        raise ValidationError(field, "is required for this order type")
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValidationError(field, "must be a finite Decimal greater than 0", value)
    return value
