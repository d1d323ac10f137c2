"""Live tracking of an open position on each price: P&L, water marks, drawdown, risk,
and the decisions to move its stop (break-even, trailing).

Pure functions over values: :func:`mark` gives the position at a new price, and
:func:`stop_target` says where its stop should be now, or None to leave it. Moving the
stop on the venue (new stop first, old one cancelled second) is position_lifecycle.py's
job; this module only decides, so it is exact and fast enough to run on every tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from core.models import Position, PositionSide
from core.money import HUNDRED, ONE, ZERO, round_to_step


@dataclass(frozen=True, slots=True)
class StopRules:
    """How a position's stop follows the price. Percentages are of the entry price."""

    breakeven_pct: Decimal | None = None
    trailing_activation_pct: Decimal | None = None
    trailing_callback_pct: Decimal | None = None
    min_move_ticks: int = 1
    min_interval: timedelta = timedelta(seconds=1)


def mark(position: Position, price: Decimal) -> Position:
    """The position at ``price``: current price, water marks and max drawdown.

    Max drawdown is the largest fall of unrealised P&L from its best level so far, in
    quote currency (so it does not depend on leverage either).
    """
    if position.entry_price is None or position.quantity == 0:
        return position
    high = price if position.high_water_mark is None else max(position.high_water_mark, price)
    low = price if position.low_water_mark is None else min(position.low_water_mark, price)
    best = high if position.side is PositionSide.LONG else low
    drawdown = abs(best - price) * position.quantity
    if (
        price == position.current_price
        and high == position.high_water_mark
        and low == position.low_water_mark
    ):
        return position
    return position.evolve(
        current_price=price,
        high_water_mark=high,
        low_water_mark=low,
        max_drawdown=max(position.max_drawdown, drawdown),
    )


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

    Candidates: break-even (entry plus the fees paid per unit, so a stop-out at that level
    loses nothing) once profit reaches ``breakeven_pct``; trailing (best price × (1 ∓
    callback)) once profit reaches the activation. The better of the two wins, and only if
    it improves the current stop by ``min_move_ticks`` and the last move is older than
    ``min_interval`` (a stop is not an order to churn).
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
        fee_per_unit = position.fees / position.quantity
        level = entry + fee_per_unit if long else entry - fee_per_unit
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


def stop_is_through(side: PositionSide, stop: Decimal, price: Decimal) -> bool:
    """True when ``price`` is already at or beyond ``stop``: placing it would fire at once."""
    return price <= stop if side is PositionSide.LONG else price >= stop
