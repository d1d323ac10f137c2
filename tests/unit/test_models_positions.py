"""Position P&L (long and short, partial exits, fees, no leverage factor), the stop-move
decisions of core/positions.py, and the metrics of a position sample."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from core.errors import ValidationError
from core.models import PositionSide
from core.position_model import Position, PositionStatus, gross_pnl
from core.positions import StopRules, breakeven_level, stop_target
from core.records import position_update_record


def opened(side: PositionSide, price: str = "100", qty: str = "2", fee: str = "0.2") -> Position:
    pos = Position(id=1, account="main", exchange="paper", symbol="X/USDT:USDT", side=side)
    return pos.with_entry_fill(D(price), D(qty), D(fee)).evolve(status=PositionStatus.ACTIVE)


def test_long_and_short_gross_pnl_have_opposite_signs() -> None:
    """Long earns (exit − entry) × qty, short (entry − exit) × qty."""
    assert D("20") == gross_pnl(PositionSide.LONG, D("100"), D("110"), D("2"))
    assert D("-20") == gross_pnl(PositionSide.SHORT, D("100"), D("110"), D("2"))


def test_long_partial_exits_realise_pnl_on_the_part_closed_with_fees() -> None:
    """Closing a long in two parts realises each part net of its exit fee and entry-fee share."""
    pos = opened(PositionSide.LONG)
    pos, first = pos.with_exit_fill(D("110"), D("0.5"), D("0.05"))
    # 10 × 0.5 − 0.05 exit fee − 0.2 × 0.5/2 entry share
    assert D("4.90") == first
    assert D("1.5") == pos.quantity
    pos, second = pos.with_exit_fill(D("90"), D("1.5"), D("0.1"))
    # −10 × 1.5 − 0.1 − 0.15
    assert D("-15.25") == second
    assert D("-10.35") == pos.realized_pnl
    assert D("0") == pos.quantity
    assert D("0.35") == pos.fees


def test_short_pnl_is_mirrored_and_sums_to_a_single_close() -> None:
    """A short closed in pieces realises exactly what one close at the same prices would."""
    pieces = opened(PositionSide.SHORT)
    pieces, _ = pieces.with_exit_fill(D("95"), D("1"), D("0.05"))
    pieces, _ = pieces.with_exit_fill(D("95"), D("1"), D("0.05"))
    whole, realised = opened(PositionSide.SHORT).with_exit_fill(D("95"), D("2"), D("0.1"))
    assert D("9.7") == realised
    assert whole.realized_pnl == pieces.realized_pnl


def test_pnl_has_no_leverage_factor() -> None:
    """P&L is price move × quantity only: a position has no leverage in its arithmetic."""
    _, realised = opened(PositionSide.LONG, fee="0").with_exit_fill(D("101"), D("2"), D("0"))
    assert D("2") == realised


def test_entry_price_is_quantity_weighted_over_entry_fills() -> None:
    """Two entry fills average by quantity."""
    pos = Position(id=1, account="a", exchange="paper", symbol="X", side=PositionSide.LONG)
    pos = pos.with_entry_fill(D("100"), D("1"), D("0")).with_entry_fill(D("106"), D("2"), D("0"))
    assert D("104") == pos.entry_price
    assert D("3") == pos.quantity


def test_unrealised_pnl_follows_current_price() -> None:
    """Unrealised P&L of a short rises when the price falls."""
    pos = opened(PositionSide.SHORT).evolve(current_price=D("90"))
    assert D("20") == pos.unrealized_pnl


def test_exit_larger_than_position_is_refused() -> None:
    """Closing more than is open is an error, never a flip."""
    with pytest.raises(ValidationError):
        opened(PositionSide.LONG).with_exit_fill(D("100"), D("3"), D("0"))


def test_absurd_magnitudes_are_refused_naming_the_field() -> None:
    """A 1e30 amount is a ValidationError naming the field, not a Decimal crash."""
    from core.money import round_to_step, to_decimal

    with pytest.raises(ValidationError) as err:
        to_decimal("1e30", "amount")
    assert "amount" == err.value.field
    with pytest.raises(ValidationError):
        round_to_step(D("1e40"), D("1e-30"))


# -- stop moves: core/positions.py ------------------------------------------------------
T0 = datetime(2024, 6, 1, tzinfo=UTC)
TICK = D("0.1")


def with_stop(side: PositionSide, stop: str) -> Position:
    """A position at entry 100 (fee 0.2 on qty 2) with its stop at ``stop``."""
    return opened(side).evolve(stop_loss_price=D(stop), opened_at=T0)


def test_trailing_move_waits_for_the_rate_limit() -> None:
    """A trailing stop is not moved again before ``min_interval`` since the last move."""
    rules = StopRules(trailing_callback_pct=D("1"), min_interval=timedelta(seconds=5))
    pos = with_stop(PositionSide.LONG, "95")
    moved_at = T0
    assert stop_target(pos, D("110"), rules, TICK, moved_at, T0 + timedelta(seconds=4)) is None
    assert D("108.9") == stop_target(
        pos, D("110"), rules, TICK, moved_at, T0 + timedelta(seconds=5)
    )


def test_improvement_smaller_than_the_minimum_ticks_is_ignored() -> None:
    """A move that improves the stop by fewer than ``min_move_ticks`` ticks is ignored; one
    of exactly that many is made (long up, short down)."""
    rules = StopRules(trailing_callback_pct=D("1"), min_move_ticks=5)
    long = with_stop(PositionSide.LONG, "108.5")
    assert stop_target(long, D("110"), rules, TICK, None, T0) is None  # 108.9: +4 ticks
    assert D("109.0") == stop_target(long, D("110.1"), rules, TICK, None, T0)  # +5 ticks
    short = with_stop(PositionSide.SHORT, "91.3")
    assert stop_target(short, D("90"), rules, TICK, None, T0) is None  # 90.9: −4 ticks
    assert D("90.8") == stop_target(short, D("89.91"), rules, TICK, None, T0)  # −5 ticks


@pytest.mark.parametrize("side", [PositionSide.LONG, PositionSide.SHORT])
def test_break_even_level_covers_entry_fee_and_the_exit_fee(side: PositionSide) -> None:
    """A stop-out at the break-even level realises exactly zero: the entry fee still open
    and the exit fee the stop's own fill pays (at the rate given) are both covered."""
    pos = opened(side)  # entry 100, qty 2, entry fee 0.2
    rate = D("0.0005")
    level = breakeven_level(pos, rate)
    _, realized = pos.with_exit_fill(level, D("2"), level * D("2") * rate)
    assert D(0) == realized.quantize(D("1e-20"))
    assert (level > D(100)) == (side is PositionSide.LONG)


def test_break_even_assumes_the_entry_fee_rate_for_the_exit() -> None:
    """Without a configured exit rate, the exit is assumed to pay the entry's fee rate."""
    pos = opened(PositionSide.LONG)  # fee 0.2 on 200 notional: 0.1 %
    assert breakeven_level(pos, D("0.001")) == breakeven_level(pos)


def test_break_even_move_rounds_to_the_safe_side_of_the_level() -> None:
    """stop_target's break-even candidate is the level rounded up for a long (a stop-out
    there never loses), and only once profit reaches the percent."""
    rules = StopRules(breakeven_pct=D("5"))
    pos = with_stop(PositionSide.LONG, "95")
    assert stop_target(pos, D("104.9"), rules, TICK, None, T0) is None
    level = breakeven_level(pos)
    target = stop_target(pos, D("105"), rules, TICK, None, T0)
    assert target is not None and level <= target < level + TICK


# -- samples: core/records.py -------------------------------------------------------------
def test_sample_carries_pnl_percent_time_held_and_risk() -> None:
    """A position_updates sample: unrealised P&L in percent of entry, seconds held, and
    the distance from the price to the stop in percent of the price."""
    pos = with_stop(PositionSide.LONG, "95").evolve(current_price=D("104"))
    row = position_update_record(pos, T0 + timedelta(minutes=2, milliseconds=500)).row
    assert (D("4"), D("120.5"), D("8.653846")) == (
        row["unrealized_pnl_pct"],
        row["held_s"],
        row["risk_pct"],
    )
    short = with_stop(PositionSide.SHORT, "105").evolve(current_price=D("104"))
    row = position_update_record(short, T0).row
    assert (D("-4"), D("0"), D("0.961538")) == (
        row["unrealized_pnl_pct"],
        row["held_s"],
        row["risk_pct"],
    )


def test_sample_without_price_or_stop_leaves_the_metrics_empty() -> None:
    """No price yet: no P&L percent and no risk; no stop: no risk level."""
    row = position_update_record(opened(PositionSide.LONG).evolve(opened_at=T0), T0).row
    assert (None, D("0"), None) == (row["unrealized_pnl_pct"], row["held_s"], row["risk_pct"])


def test_traded_quantity_keeps_the_largest_size_after_the_close() -> None:
    """A position grown then closed in parts keeps the most it held as traded_quantity,
    while quantity falls to what is still open (0 once closed)."""
    position = Position(1, "main", "paper", "BTC/USDT:USDT", PositionSide.LONG)
    position = position.with_entry_fill(D(100), D("0.1"), D(0))
    position = position.with_entry_fill(D(100), D("0.05"), D(0))
    position, _ = position.with_exit_fill(D(110), D("0.1"), D(0))
    position = position.with_entry_fill(D(100), D("0.02"), D(0))
    position, _ = position.with_exit_fill(D(110), D("0.07"), D(0))
    assert (D(0), D("0.15")) == (position.quantity, position.traded_quantity)
