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

from core.models import Position, PositionSide
from core.money import HUNDRED, ONE, ZERO, round_to_step, utcnow


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
    return _marked(position, price, high, low, worst)


def _compile_marked() -> Callable[[Position, Decimal, Decimal, Decimal, Decimal], Position]:
    """``position.evolve(current_price=, high_water_mark=, low_water_mark=, max_drawdown=)``
    as straight-line code over Position's fields, generated here as dataclasses generates
    ``__init__``.

    Why: :func:`mark` makes a new snapshot for every open position on (almost) every tick,
    100,000 times a second in the load scenario (tests/chaos/test_chaos_load.py), and the
    generic copy (models._evolve: a loop over the 25 slots with a dict lookup each) was
    most of its cost. This one copies the same slots, bumps ``version`` and stamps
    ``updated_at`` exactly as ``evolve`` does, in about half the time.
    """
    changed = {
        "current_price": "price",
        "high_water_mark": "high",
        "low_water_mark": "low",
        "max_drawdown": "drawdown",
        "updated_at": "utcnow()",
        "version": "position.version + 1",
    }
    names: tuple[str, ...] = Position.__slots__
    assert set(changed) <= set(names)
    body = "".join(f"    put(new, {n!r}, {changed.get(n, 'position.' + n)})\n" for n in names)
    source = (
        "def marked(position, price, high, low, drawdown):\n"
        "    new = new_position(Position)\n" + body + "    return new\n"
    )
    namespace: dict[str, Any] = {
        "Position": Position,
        "new_position": object.__new__,
        "put": object.__setattr__,
        "utcnow": utcnow,
    }
    exec(source, namespace)
    marked: Callable[[Position, Decimal, Decimal, Decimal, Decimal], Position]
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
