"""TriggerBook agrees with the naive reference evaluator on random paths and books."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import Side
from core.order_model import Order, OrderType
from core.triggers import TriggerBook
from tests.trigger_reference import ReferenceBook

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOLS = ("AAA/USDT:USDT", "BBB/USDT:USDT")
STEP = Decimal("0.5")  # the tick grid
START_UNITS = 200  # 100.0 on the grid
# Tight trails fire within a tick or two; wide ones live long enough to build many groups.
PERCENTS = [Decimal(x) for x in ("0.5", "1", "2.5", "7", "15", "33.3", "0.125", "20")]
AMOUNTS = [Decimal(x) for x in ("0.5", "1", "3", "12.5", "25", "0.25", "40")]


@dataclass(frozen=True)
class Tick:
    symbol: int
    move: int  # grid units
    seconds: int


@dataclass(frozen=True)
class Arm:
    symbol: int
    type_: OrderType
    side: Side
    offset: int  # level relative to the symbol's current price, grid units
    trail_by_percent: bool
    trail_index: int  # into PERCENTS or AMOUNTS
    activation: int | None
    initial: int | None
    expires_in: int | None
    created: int


@dataclass(frozen=True)
class Remove:
    pick: int


TYPES = [t for t in OrderType if t is not OrderType.MARKET] + [OrderType.TRAILING_STOP] * 3


def decode(code: int) -> Tick | Arm | Remove:
    """One operation from one integer (mixed radix), so hypothesis draws a script cheaply.

    Drawing a list of plain integers is several times faster than a list of composite
    strategies. Hypothesis favours small integers, which would leave the high digits 0,
    so the code is first scrambled by an odd multiplier (a bijection; 0 stays 0).
    """
    code = code * 0x9E3779B97F4A7C15 % 2**64

    def take(radix: int) -> int:
        nonlocal code
        code, digit = divmod(code, radix)
        return digit

    kind = take(6)
    if kind < 3:
        symbol = take(len(SYMBOLS))
        move = take(81) - 40 if take(5) == 4 else take(7) - 3  # sometimes a gap
        return Tick(symbol, move, take(4))
    if kind == 5:
        return Remove(take(10**6))
    return Arm(
        symbol=take(len(SYMBOLS)),
        type_=TYPES[take(len(TYPES))],
        side=(Side.BUY, Side.SELL)[take(2)],
        offset=take(13) - 6,  # a narrow band: equal levels, hence ties in a tick, are common
        trail_by_percent=take(2) == 0,
        trail_index=take(len(PERCENTS) * len(AMOUNTS)),
        activation=None if take(2) == 0 else take(25) - 12,
        initial=None if take(2) == 0 else take(61) - 30,
        expires_in=None if take(3) else take(31),
        created=(0, 0, 0, 1, 5)[take(5)],  # many created_at ties: the client id decides
    )


scripts = st.lists(st.integers(0, 2**64).map(decode), min_size=40, max_size=150)


class Runner:
    """Plays one script on several books at once, building identical orders for each."""

    def __init__(self) -> None:
        self.units = [START_UNITS] * len(SYMBOLS)
        self.now = T0
        self.cids: list[str] = []
        self.orders: dict[str, tuple[Order, Decimal | None]] = {}

    def price(self, symbol: int, offset: int = 0) -> Decimal:
        return max(1, self.units[symbol] + offset) * STEP

    def step(self, op: Tick | Arm | Remove, books: list[Any]) -> list[Any]:
        """Apply ``op`` to every book; return each book's answer."""
        if isinstance(op, Tick):
            self.units[op.symbol] = max(1, self.units[op.symbol] + op.move)
            self.now += timedelta(seconds=op.seconds)
            args = (SYMBOLS[op.symbol], self.price(op.symbol), self.now)
            return [book.on_tick(*args) for book in books]
        if isinstance(op, Remove):
            if not self.cids:
                return []
            cid = self.cids[op.pick % len(self.cids)]
            return [book.remove(cid) for book in books]
        order, initial = self.build(op)
        for book in books:
            book.arm(order, initial_price=initial)
        return [len(book) for book in books]

    def build(self, op: Arm) -> tuple[Order, Decimal | None]:
        cid = f"o{len(self.cids)}"
        self.cids.append(cid)
        level = self.price(op.symbol, op.offset)
        fields: dict[str, Any] = {}
        initial = None
        if op.type_ is OrderType.LIMIT:
            fields["price"] = level
        elif op.type_ is OrderType.TRAILING_STOP:
            if op.trail_by_percent:
                fields["trail_percent"] = PERCENTS[op.trail_index % len(PERCENTS)]
            else:
                fields["trail_amount"] = AMOUNTS[op.trail_index % len(AMOUNTS)]
            if op.activation is not None:
                fields["activation_price"] = self.price(op.symbol, op.activation)
            elif op.initial is not None:
                initial = self.price(op.symbol, op.initial)
        else:
            fields["trigger_price"] = level
            fields["limit_price"] = level
        if op.expires_in is not None:
            fields["expires_at"] = self.now + timedelta(seconds=op.expires_in)
        order = Order(
            client_order_id=cid,
            account="main",
            exchange="paper",
            symbol=SYMBOLS[op.symbol],
            side=op.side,
            type=op.type_,
            amount=Decimal(1),
            emulated=True,
            created_at=T0 + timedelta(seconds=op.created),
            **fields,
        )
        self.orders[cid] = (order, initial)
        return order, initial


def assert_all_equal(answers: list[Any]) -> None:
    assert answers[1:] == answers[:-1]


@settings(max_examples=300, deadline=None)
@given(scripts)
def test_book_matches_reference(script: list[Tick | Arm | Remove]) -> None:
    """Same fires (ids, order, fire and trigger prices), expiries and states as the reference."""
    # compact_min=0 compacts and rebuilds trailing indexes at every opportunity.
    books: list[Any] = [ReferenceBook(), TriggerBook(), TriggerBook(compact_min=0)]
    runner = Runner()
    for op in script:
        assert_all_equal(runner.step(op, books))
        assert_all_equal([len(book) for book in books])
        assert_all_equal([book.trailing_states() for book in books])


@settings(max_examples=200, deadline=None)
@given(scripts, st.integers(0, 120))
def test_restart_resumes_trailing_from_saved_state(
    script: list[Tick | Arm | Remove], cut: int
) -> None:
    """Export states, re-arm the live orders in a new book, restore: it fires as if never cut."""
    cut = min(cut, len(script))
    runner = Runner()
    book = TriggerBook()
    for op in script[:cut]:
        runner.step(op, [book])
    restarted = TriggerBook()
    for cid, (order, _) in runner.orders.items():
        if cid in book:
            restarted.arm(order)
    restarted.restore_trailing(book.trailing_states())
    assert book.trailing_states() == restarted.trailing_states()
    for op in script[cut:]:
        assert_all_equal(runner.step(op, [book, restarted]))


def test_churn_keeps_memory_bounded_and_results_right() -> None:
    """Arm/remove churn is compacted: stored entries stay proportional to live orders."""
    rng = random.Random(7)
    runner = Runner()
    book, reference = TriggerBook(compact_min=64), ReferenceBook()
    live = 300
    worst = 0.0  # stored entries per live order (+ the tolerated slack)
    fired = 0
    for i in range(30_000):
        op: Tick | Arm | Remove
        if i % 50 == 0:
            op = Tick(rng.randrange(2), rng.randint(-2, 2), 1)
        elif len(book) < live or rng.random() < 0.5:
            near = rng.random() < 0.2  # far orders are never crossed: only compaction frees them
            far = rng.choice([-1, 1]) * rng.randint(100, 190)
            op = Arm(
                rng.randrange(2),
                rng.choice([t for t in OrderType if t is not OrderType.MARKET]),
                rng.choice(list(Side)),
                rng.randint(-30, 30) if near else far,
                rng.random() < 0.5,
                rng.randrange(10),
                rng.choice([None, rng.randint(-5, 5)]) if near else far,
                None,
                rng.choice([None, rng.randint(0, 100), 10**6]),
                0,
            )
        else:  # a live order, found among the recent ones
            pick = rng.randrange(len(runner.cids))
            for _ in range(50):
                if runner.cids[pick] in book:
                    break
                pick = len(runner.cids) - 1 - rng.randrange(min(len(runner.cids), 4 * live))
            op = Remove(pick)
        answers = runner.step(op, [book, reference])
        assert_all_equal(answers)
        if isinstance(op, Tick):
            fired += len(answers[0].fired)
        worst = max(worst, book._stored_entries() / (len(book) + 64))
    assert len(runner.cids) > 10_000  # real churn happened
    assert fired > 0
    assert worst <= 4
