"""Position P&L: long and short, partial exits, fees, no leverage factor."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from core.errors import ValidationError
from core.models import Position, PositionSide, PositionStatus, gross_pnl


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
