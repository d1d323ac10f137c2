"""Live tracking of an open position on each price: P&L, water marks, drawdown, risk,
and the decisions to move its stop (break-even, trailing).

Pure functions over values: :func:`mark` gives the position at a new price, and
:func:`stop_target` says where its stop should be now, or None to leave it. Moving the
stop on the venue (new stop first, old one cancelled second) is position_lifecycle.py's
job; this module only decides, so it is exact and fast enough to run on every tick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from core.models import PositionSide
from core.money import HUNDRED, ONE, ZERO, round_to_step, utcnow
from core.position_model import Position


@dataclass(frozen=True, slots=True)
class StopRules:
    """How a position's stop follows the price. Percentages are of the entry price."""

    breakeven_pct: Decimal | None = None
    trailing_activation_pct: Decimal | None = None
    trailing_callback_pct: Decimal | None = None
    min_move_ticks: int = 1
    min_interval: timedelta = timedelta(seconds=1)
    # The fee rate (a fraction of the notional) the stop's own fill will pay at the
    # break-even level; None assumes the rate the entry paid.
    exit_fee_rate: Decimal | None = None


def mark(position: Position, price: Decimal) -> Position:
    """The position at ``price``: current price, water marks and max drawdown.

    Max drawdown is the largest fall of unrealised P&L from its best level so far, in
    quote currency (so it does not depend on leverage either).
    """
    if position.entry_price is None or position.quantity == 0:
        return position
    high_water, low_water = position.high_water_mark, position.low_water_mark
    # Like max() / min(), keep the mark already held when the price equals it.
    high = price if high_water is None or price > high_water else high_water
    low = price if low_water is None or price < low_water else low_water
    if price == position.current_price and high == high_water and low == low_water:
        return position
    best = high if position.side is PositionSide.LONG else low
    drawdown = abs(best - price) * position.quantity
    worst = position.max_drawdown if position.max_drawdown >= drawdown else drawdown
    return _marked(position, price, high, low, worst, 1)


class Marks:
    """The marks of one live position, kept up to date on every tick without allocating:
    what :func:`mark` computes, folded lazily into a snapshot only when one is read.

    A tick costs two or three comparisons and a few attribute stores. The drawdown needs
    no arithmetic per tick either: between two new bests (highs for a long, lows for a
    short) the best is fixed, so the largest drawdown of that stretch is the one at its
    farthest price, and ``|best − far| × quantity`` is computed once, when the next best
    ends the stretch or a snapshot is read. Because rounding is monotonic, that equals
    the running maximum :func:`mark` keeps tick by tick, to the digit (including which of
    two equal values is kept: the first). ``version`` counts every tick that changed a
    mark, as :func:`mark`'s snapshot-per-tick does; ``updated_at`` is the time the
    snapshot was taken.
    """

    __slots__ = (
        "_changes",
        "_far",
        "_high",
        "_long",
        "_low",
        "_markable",
        "_price",
        "_worst",
        "base",
    )

    def __init__(self, position: Position) -> None:
        # The latest snapshot without this tick's marks: every field that marking does not
        # touch (status, side, quantity, stop, entry) is current here, at no cost. A plain
        # attribute, not a property: the tick path reads it on every tick. Read-only.
        self.base = position
        self._price = position.current_price
        self._high = position.high_water_mark
        self._low = position.low_water_mark
        self._long = position.side is PositionSide.LONG
        # The largest drawdown of the stretches already closed by a new best.
        self._worst = position.max_drawdown
        # The farthest price from the best since the best was set (None: no tick since).
        self._far: Decimal | None = None
        self._changes = 0
        self._markable = position.entry_price is not None and position.quantity != 0

    @property
    def price(self) -> Decimal | None:
        return self._price

    @property
    def high(self) -> Decimal | None:
        return self._high

    @property
    def low(self) -> Decimal | None:
        return self._low

    def mark(self, price: Decimal) -> None:
        """Take ``price`` into the marks (what :func:`mark` does, minus the snapshot)."""
        if not self._markable:
            return
        high, low = self._high, self._low
        new_high = high is None or price > high
        new_low = low is None or price < low
        if not (new_high or new_low) and price == self._price:
            return
        self._price = price
        self._changes += 1
        far = self._far
        if self._long:
            if new_high:
                self._close_stretch()
                self._far = price
            elif far is None or price < far:
                self._far = price
        elif new_low:
            self._close_stretch()
            self._far = price
        elif far is None or price > far:
            self._far = price
        if new_high:
            self._high = price
        if new_low:
            self._low = price

    def _close_stretch(self) -> None:
        """The best moves: fold the ending stretch's drawdown into the maximum so far."""
        self._worst = self._stretch_worst()

    def _stretch_worst(self) -> Decimal:
        """The maximum drawdown including the stretch since the last best."""
        worst = self._worst
        far = self._far
        best = self._high if self._long else self._low
        if far is None or best is None:
            return worst
        drawdown = abs(best - far) * self.base.quantity
        return worst if worst >= drawdown else drawdown

    def snapshot(self) -> Position:
        """The position with its marks: equal to :func:`mark` applied tick by tick."""
        if self._changes == 0:
            return self.base
        snap = _marked(
            self.base, self._price, self._high, self._low, self._stretch_worst(), self._changes
        )
        self.base = snap
        self._changes = 0
        return snap


def _compile_marked() -> Callable[[Position, Any, Any, Any, Decimal, int], Position]:
    """``position.evolve(current_price=, high_water_mark=, low_water_mark=, max_drawdown=)``
    as straight-line code over Position's fields, generated here as dataclasses generates
    ``__init__``, with ``version`` raised by ``versions`` (one per changing tick).

    Why: a snapshot of a marked position is taken for every sample and every change, and
    the generic copy (models._evolve: a loop over the 25 slots with a dict lookup each)
    was most of its cost. This one copies the same slots, bumps ``version`` and stamps
    ``updated_at`` exactly as ``evolve`` does, in about half the time.
    """
    changed = {
        "current_price": "price",
        "high_water_mark": "high",
        "low_water_mark": "low",
        "max_drawdown": "drawdown",
        "updated_at": "utcnow()",
        "version": "position.version + versions",
    }
    names: tuple[str, ...] = Position.__slots__
    assert set(changed) <= set(names)
    body = "".join(f"    put(new, {n!r}, {changed.get(n, 'position.' + n)})\n" for n in names)
    source = (
        "def marked(position, price, high, low, drawdown, versions):\n"
        "    new = new_position(Position)\n" + body + "    return new\n"
    )
    namespace: dict[str, Any] = {
        "Position": Position,
        "new_position": object.__new__,
        "put": object.__setattr__,
        "utcnow": utcnow,
    }
    exec(source, namespace)
    marked: Callable[[Position, Any, Any, Any, Decimal, int], Position]
    marked = namespace["marked"]
    return marked


_marked = _compile_marked()


def profit_pct(position: Position, price: Decimal) -> Decimal:
    """Price move in the position's favour, in percent of the entry price."""
    if not position.entry_price:
        return ZERO
    return (price - position.entry_price) * position.side.sign * HUNDRED / position.entry_price


def risk_pct(position: Position, price: Decimal) -> Decimal | None:
    """Distance from ``price`` to the stop, in percent of the price (None without a stop)."""
    if position.stop_loss_price is None or price == 0:
        return None
    return (price - position.stop_loss_price) * position.side.sign * HUNDRED / price


def held_for(position: Position, now: datetime) -> timedelta:
    return now - position.opened_at


def stop_target(
    position: Position,
    price: Decimal,
    rules: StopRules,
    tick: Decimal,
    last_move: datetime | None,
    now: datetime,
) -> Decimal | None:
    """Where the stop should move now, or None.

    Candidates: break-even (:func:`breakeven_level`: entry plus the entry fees and the
    expected exit fee per unit, so a stop-out at that level loses nothing) once profit
    reaches ``breakeven_pct``; trailing (best price × (1 ∓ callback)) once profit reaches
    the activation. The better of the two wins, and only if it improves the current stop
    by ``min_move_ticks`` and the last move is older than ``min_interval`` (a stop is not
    an order to churn).
    """
    entry = position.entry_price
    if entry is None or position.quantity == 0 or position.stop_loss_price is None:
        return None
    if last_move is not None and now - last_move < rules.min_interval:
        return None
    long = position.side is PositionSide.LONG
    gain = profit_pct(position, price)
    candidates: list[Decimal] = []
    if rules.breakeven_pct is not None and gain >= rules.breakeven_pct:
        level = breakeven_level(position, rules.exit_fee_rate)
        # Only once the price is clear of it: a break-even stop must never fire at once.
        if not stop_is_through(position.side, level, price):
            candidates.append(level)
    callback = rules.trailing_callback_pct
    activation = rules.trailing_activation_pct
    if callback is not None and (activation is None or gain >= activation):
        best = (position.high_water_mark or price) if long else (position.low_water_mark or price)
        best = max(best, price) if long else min(best, price)
        factor = ONE - callback / HUNDRED if long else ONE + callback / HUNDRED
        candidates.append(best * factor)
    if not candidates:
        return None
    raw = max(candidates) if long else min(candidates)
    # Up for a long, down for a short: a break-even stop never lands on the losing side
    # of entry plus fees; a trailing stop ends at most one tick tighter than computed.
    target = round_to_step(raw, tick, ROUND_UP if long else ROUND_DOWN)
    improvement = (target - position.stop_loss_price) * position.side.sign
    if improvement < tick * rules.min_move_ticks:
        return None
    return target


def breakeven_level(position: Position, exit_fee_rate: Decimal | None = None) -> Decimal:
    """The stop level at which a stop-out loses nothing: the entry, plus the entry fees
    still open per unit, plus the fee the stop's own fill pays at that level.

    For a long, ``level × (1 − rate) = entry + entry_fees/qty``; for a short,
    ``level × (1 + rate) = entry − entry_fees/qty``. Without a given exit rate the entry's
    own fee rate is assumed (a market entry and a stop-market exit are both taker fills).
    """
    entry = position.entry_price
    assert entry is not None and position.quantity > 0
    entry_fee_per_unit = position.open_entry_fees / position.quantity
    rate = exit_fee_rate
    if rate is None:
        rate = entry_fee_per_unit / entry if entry else ZERO
    if position.side is PositionSide.LONG:
        return (entry + entry_fee_per_unit) / (ONE - rate)
    return (entry - entry_fee_per_unit) / (ONE + rate)


def stop_is_through(side: PositionSide, stop: Decimal, price: Decimal) -> bool:
    """True when ``price`` is already at or beyond ``stop``: placing it would fire at once."""
    return price <= stop if side is PositionSide.LONG else price >= stop
