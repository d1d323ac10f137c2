"""When a position's stop can move at all: the prices below which (for a long; above, for a
short) :func:`core.positions.stop_target` is certain to say "leave it".

``stop_target`` costs about a microsecond (percentages, a division, a rounding), and on
almost every tick it answers None: the break-even level is not reached, or the best price
has not moved far enough for the trailing stop to improve by ``min_move_ticks``. Its
answer can only change when the price crosses one of a few levels that follow from the
position, its stop and its rules alone, so a :class:`StopGate` computes them once (per
position snapshot, rules and tick size) and the tick path compares one or two prices:

- break-even: the price where the profit reaches ``breakeven_pct`` and the price is clear
  of the break-even level; only if the rounded level improves the stop by
  ``min_move_ticks`` at all;
- trailing: the best price (high water for a long) beyond which ``best × (1 ∓ callback)``,
  rounded, can improve the stop by ``min_move_ticks`` (a rounded target ``r`` with
  ``|r − stop| ≥ m·tick`` needs the raw one past ``stop ± (m − 1)·tick``), and the price
  where the profit reaches ``trailing_activation_pct``.

Each level is moved towards the current price by a relative 1e-9, far more than Decimal
rounding can differ between the level and ``stop_target``'s own arithmetic: the gate only
ever opens early, never late, and when it is open ``stop_target`` decides exactly as
before. So the answers on every tick are the same as computing them on every tick
(tests/unit/test_stop_gate_property.py).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from core.models import PositionSide
from core.money import HUNDRED, ONE, round_to_step
from core.positions import Marks, StopRules, breakeven_level

_INF = Decimal("Infinity")
_MARGIN = Decimal("1e-9")


class StopGate:
    """The levels of one position snapshot under one set of rules and one tick size."""

    __slots__ = (
        "_activation",
        "_best",
        "_last_move",
        "_long",
        "_price",
        "_resume",
        "marks",
        "rules",
        "tick",
    )

    def __init__(self, marks: Marks, rules: StopRules, tick: Decimal) -> None:
        # What the levels were computed for: the position as ``marks`` started from (a new
        # snapshot assigned to the live position starts new marks), the rules, the tick.
        self.marks, self.rules, self.tick = marks, rules, tick
        self._last_move: datetime | None = None
        self._resume: datetime | None = None
        position = marks.base
        self._long = long = position.side is PositionSide.LONG
        never = _INF if long else -_INF
        # _price: the price the tick must reach; _best: the best price that, once reached,
        # brings in _activation (the trailing stop's price level) as well.
        self._price = self._best = self._activation = never
        entry, stop = position.entry_price, position.stop_loss_price
        if entry is None or not entry or position.quantity == 0 or stop is None:
            return  # stop_target never moves such a stop
        sign = position.side.sign
        step = tick * rules.min_move_ticks
        if rules.breakeven_pct is not None:
            level = breakeven_level(position, rules.exit_fee_rate)
            rounded = round_to_step(level, tick, "ROUND_UP" if long else "ROUND_DOWN")
            if (rounded - stop) * sign >= step:
                reach = _toward(entry + entry * rules.breakeven_pct * sign / HUNDRED, long)
                clear = _toward(level, long)
                self._price = max(reach, clear) if long else min(reach, clear)
        callback = rules.trailing_callback_pct
        if callback is not None:
            factor = ONE - callback / HUNDRED if long else ONE + callback / HUNDRED
            activation = rules.trailing_activation_pct
            self._activation = (
                (-_INF if long else _INF)
                if activation is None
                else _toward(entry + entry * activation * sign / HUNDRED, long)
            )
            if factor <= 0:
                self._best = -_INF if long else _INF
            else:
                self._best = _toward((stop + (step - tick) * sign) / factor, long)

    def fits(self, marks: Marks, rules: StopRules) -> bool:
        """Whether these levels are still the ones for ``marks`` and ``rules`` (a market's
        tick size does not change under a running daemon: markets are loaded once)."""
        return marks is self.marks and rules is self.rules

    def due(self, price: Decimal) -> bool:
        """Whether ``stop_target`` may answer other than None at ``price``, the best price
        so far being the marks' high water (a long) or low water (a short)."""
        if self._long:
            if price >= self._price:
                return True
            best = self.marks.high
            if best is not None and best >= self._best:
                self._open_trailing()
                return price >= self._price
            return False
        if price <= self._price:
            return True
        best = self.marks.low
        if best is not None and best <= self._best:
            self._open_trailing()
            return price <= self._price
        return False

    def waiting(self, last_move: datetime | None, now: datetime) -> bool:
        """Whether the last move is younger than ``min_interval`` (``stop_target``'s own
        rule, ``now − last_move < min_interval``, as one comparison per tick)."""
        if last_move is None:
            return False
        if last_move is not self._last_move:
            self._last_move = last_move
            self._resume = last_move + self.rules.min_interval
        assert self._resume is not None
        return now < self._resume

    def _open_trailing(self) -> None:
        """The best price has gone far enough for the trailing stop to improve: from now
        on (the best never goes back) only the activation price is left to reach."""
        if self._long:
            self._price = min(self._price, self._activation)
            self._best = _INF
        else:
            self._price = max(self._price, self._activation)
            self._best = -_INF


def _toward(level: Decimal, long: bool) -> Decimal:
    """``level`` moved by a relative 1e-9 to the side where the gate opens earlier."""
    margin = abs(level) * _MARGIN
    return level - margin if long else level + margin
