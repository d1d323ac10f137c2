"""The stop gate (core/stop_gate.py) skips stop_target only on ticks where it would have
said "leave it": gated answers equal computing it on every tick, long and short, with
break-even and trailing, moves applied and the minimum interval between moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import PositionSide
from core.position_book import LivePosition
from core.position_model import Position, PositionStatus
from core.positions import StopRules, mark, stop_target
from core.stop_gate import StopGate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TICK = Decimal("0.01")
pcts = st.sampled_from([None, Decimal(0), Decimal("0.1"), Decimal("0.35"), Decimal(1)])
rules_st = st.builds(
    StopRules,
    breakeven_pct=pcts,
    trailing_activation_pct=pcts,
    trailing_callback_pct=st.sampled_from([None, Decimal("0.2"), Decimal("0.5"), Decimal(2)]),
    min_move_ticks=st.integers(min_value=0, max_value=5),
    min_interval=st.sampled_from([timedelta(0), timedelta(seconds=1), timedelta(seconds=3)]),
    exit_fee_rate=st.sampled_from([None, Decimal(0), Decimal("0.0006")]),
)
# One tick: a move in ticks, the time since the last tick, and whether a due move is made.
steps = st.tuples(
    st.integers(min_value=-30, max_value=30),
    st.sampled_from(
        [timedelta(milliseconds=10), timedelta(milliseconds=500), timedelta(seconds=1)]
    ),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(
    side=st.sampled_from(list(PositionSide)),
    entry=st.decimals(min_value=Decimal(1), max_value=Decimal(1000), places=2),
    fee=st.sampled_from([Decimal(0), Decimal("0.05"), Decimal("1.3")]),
    stop_pct=st.sampled_from([Decimal("0.3"), Decimal(2)]),
    rules=rules_st,
    path=st.lists(steps, min_size=1, max_size=80),
)
def test_gated_stop_target_equals_every_tick(
    side: PositionSide,
    entry: Decimal,
    fee: Decimal,
    stop_pct: Decimal,
    rules: StopRules,
    path: list[tuple[int, timedelta, bool]],
) -> None:
    """On every tick of a random path, the gate plus stop_target gives stop_target's answer."""
    sign = side.sign
    position = Position(
        3,
        "main",
        "paper",
        "X/USDT:USDT",
        side,
        status=PositionStatus.ACTIVE,
        quantity=Decimal(2),
        entry_price=entry,
        open_entry_fees=fee,
        stop_loss_price=(entry * (1 - sign * stop_pct / 100)).quantize(TICK),
        opened_at=T0,
        updated_at=T0,
    )
    live = LivePosition(position=position, rules=rules)
    price, now, last_move = entry, T0, None
    for move, elapsed, apply in path:
        price = max(TICK, price + move * TICK)
        now += elapsed
        position = mark(position, price)
        expected = stop_target(position, price, rules, TICK, last_move, now)
        live.marks.mark(price)
        gate = live.gate
        if gate is None or not gate.fits(live.marks, rules):
            gate = live.gate = StopGate(live.marks, rules, TICK)
        got = (
            stop_target(live.position, price, rules, TICK, last_move, now)
            if gate.due(price) and not gate.waiting(last_move, now)
            else None
        )
        assert got == expected
        if expected is not None and apply:
            position = position.evolve(stop_loss_price=expected)
            live.position = live.position.evolve(stop_loss_price=expected)
            last_move = now


def test_the_gate_is_shut_far_from_every_level() -> None:
    """A long in a small loss, trailing not yet activated: the tick needs no stop_target."""
    position = Position(
        1,
        "main",
        "paper",
        "X/USDT:USDT",
        PositionSide.LONG,
        status=PositionStatus.ACTIVE,
        quantity=Decimal(1),
        entry_price=Decimal(100),
        stop_loss_price=Decimal(98),
    )
    rules = StopRules(
        breakeven_pct=Decimal(1),
        trailing_activation_pct=Decimal("0.5"),
        trailing_callback_pct=Decimal(1),
    )
    live = LivePosition(position=position, rules=rules)
    live.marks.mark(Decimal("99.5"))
    gate = StopGate(live.marks, rules, TICK)
    assert not gate.due(Decimal("99.5"))
    live.marks.mark(Decimal("100.6"))  # past the activation: 100.6 × 0.99 = 99.594 > 98
    assert gate.due(Decimal("100.6"))
