"""``core.positions.mark`` builds its snapshot with a copier generated from Position's
fields (it runs for every open position on every tick); it must give exactly what the
generic ``Position.evolve`` gives, field for field."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.models import PositionSide
from core.position_model import Position, PositionStatus
from core.positions import mark

T0 = datetime(2026, 1, 1, tzinfo=UTC)
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100000), places=2)


@given(
    side=st.sampled_from(list(PositionSide)),
    entry=prices,
    path=st.lists(prices, min_size=1, max_size=12),
    quantity=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100), places=3),
)
def test_mark_equals_the_generic_evolve_on_any_path(
    side: PositionSide, entry: Decimal, path: list[Decimal], quantity: Decimal
) -> None:
    """Along a random price path, each marked snapshot equals evolve() with the same
    price, water marks and drawdown (only updated_at, a clock reading, may differ)."""
    position = Position(
        1,
        "main",
        "paper",
        "BTC/USDT:USDT",
        side,
        quantity=quantity,
        entry_price=entry,
        status=PositionStatus.ACTIVE,
        opened_at=T0,
        updated_at=T0,
    )
    seen: list[Decimal] = []
    for price in path:
        seen.append(price)
        marked = mark(position, price)
        assert (max(seen), min(seen)) == (marked.high_water_mark, marked.low_water_mark)
        if marked is position:
            assert price == position.current_price
            continue
        expected = position.evolve(
            current_price=price,
            high_water_mark=marked.high_water_mark,
            low_water_mark=marked.low_water_mark,
            max_drawdown=marked.max_drawdown,
        )
        best = marked.high_water_mark if side is PositionSide.LONG else marked.low_water_mark
        assert best is not None
        assert max(position.max_drawdown, abs(best - price) * quantity) == marked.max_drawdown
        for f in fields(Position):
            if f.name != "updated_at":
                assert getattr(expected, f.name) == getattr(marked, f.name), f.name
        assert marked.updated_at >= position.updated_at
        position = marked
