"""A live position's lazy marks (core.positions.Marks behind LivePosition.position) give,
whenever read, exactly the snapshot that marking a frozen Position on every tick gave."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import PositionSide
from core.position_book import LivePosition
from core.position_model import Position, PositionStatus
from core.positions import mark

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# One step of the path: a move in ticks of 0.01 (0: the same price again), whether the
# snapshot is read after it, and whether the position is then replaced by a changed one
# (a fill that grows or shrinks it: the live position's setter).
steps = st.tuples(
    st.integers(min_value=-40, max_value=40),
    st.booleans(),
    st.sampled_from([None, Decimal("0.5"), Decimal(3)]),
)


def opened(side: PositionSide, entry: Decimal, quantity: Decimal, restored: bool) -> Position:
    position = Position(
        7,
        "main",
        "paper",
        "BTC/USDT:USDT",
        side,
        status=PositionStatus.ACTIVE,
        quantity=quantity,
        entry_price=entry,
        stop_loss_price=entry * Decimal("0.98"),
        opened_at=T0,
        updated_at=T0,
    )
    if restored:  # marks carried over from the database, as restore.py gives them
        position = position.evolve(
            current_price=entry,
            high_water_mark=entry + Decimal("0.5"),
            low_water_mark=entry - Decimal("0.5"),
            max_drawdown=Decimal("1.25"),
        )
    return position


def same(live: Position, reference: Position) -> None:
    for f in fields(Position):
        if f.name != "updated_at":  # a clock reading: when the snapshot was made
            got, want = getattr(live, f.name), getattr(reference, f.name)
            # Equal and the same digits (Decimal('1.0') == Decimal('1.00') would pass ==).
            assert (got, str(got)) == (want, str(want)), f.name


@settings(max_examples=400, deadline=None)
@given(
    side=st.sampled_from(list(PositionSide)),
    entry=st.decimals(min_value=Decimal(1), max_value=Decimal(50000), places=2),
    quantity=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100), places=3),
    restored=st.booleans(),
    path=st.lists(steps, min_size=1, max_size=60),
)
def test_lazy_marks_equal_marking_every_tick(
    side: PositionSide,
    entry: Decimal,
    quantity: Decimal,
    restored: bool,
    path: list[tuple[int, bool, Decimal | None]],
) -> None:
    """On random tick paths, long and short, fresh or restored, with reads and replacements
    at random points, every field but updated_at (version included) equals mark()'s."""
    reference = opened(side, entry, quantity, restored)
    live = LivePosition(position=reference)
    price = entry
    for move, read, resize in path:
        price = max(Decimal("0.01"), price + Decimal(move) / 100)
        reference = mark(reference, price)
        live.marks.mark(price)
        if read:
            same(live.position, reference)
        if resize is not None:
            reference = reference.evolve(quantity=reference.quantity * resize)
            live.position = live.position.evolve(quantity=live.position.quantity * resize)
            same(live.position, reference)
    same(live.position, reference)
    assert live.marks.base is live.position  # read twice, built once


def test_a_tick_at_the_same_price_changes_nothing() -> None:
    """A repeated price neither builds a new snapshot nor bumps the version."""
    live = LivePosition(position=opened(PositionSide.LONG, Decimal(100), Decimal(1), False))
    live.marks.mark(Decimal(101))
    first = live.position
    live.marks.mark(Decimal(101))
    assert live.position is first
    assert first.version == 2
