"""The trigger table (docs/architecture.md, 'Trigger semantics'), row by row, on hand-made
price paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.errors import ValidationError
from core.models import Side
from core.order_model import Order, OrderType
from core.triggers import Fired, TickResult, TrailingState, TriggerBook

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SYM = "BTC/USDT:USDT"
OTHER = "ETH/USDT:USDT"
D = Decimal


def order(cid: str, type_: OrderType, side: Side, **fields: Any) -> Order:
    """An emulated order with the given trigger fields."""
    fields.setdefault("symbol", SYM)
    fields.setdefault("created_at", T0)
    return Order(
        client_order_id=cid,
        account="main",
        exchange="paper",
        side=side,
        type=type_,
        amount=D("1"),
        emulated=True,
        **fields,
    )


def run(
    book: TriggerBook, prices: list[str], symbol: str = SYM, start: int = 0
) -> list[TickResult]:
    """Feed ``prices`` as ticks one second apart (from ``T0 + start`` s)."""
    return [
        book.on_tick(symbol, D(p), T0 + timedelta(seconds=start + i)) for i, p in enumerate(prices)
    ]


def fires(results: list[TickResult]) -> list[tuple[int, str, Decimal, Decimal]]:
    """(tick index, client id, fire price, trigger price) of every fire, in order."""
    return [
        (i, f.client_order_id, f.fire_price, f.trigger_price)
        for i, r in enumerate(results)
        for f in r.fired
    ]


B, S = Side.BUY, Side.SELL
LIMIT, STOP, STOP_LIMIT, TP, TRAIL = (
    OrderType.LIMIT,
    OrderType.STOP_MARKET,
    OrderType.STOP_LIMIT,
    OrderType.TAKE_PROFIT_MARKET,
    OrderType.TRAILING_STOP,
)

SIMPLE_ROWS = [
    # (type, side, fields, path, index of the firing tick)
    (LIMIT, B, {"price": D(100)}, ["103", "101", "100.5", "100", "99"], 3),
    (LIMIT, S, {"price": D(100)}, ["97", "99", "99.5", "100", "101"], 3),
    (STOP, B, {"trigger_price": D(100)}, ["97", "99", "99.5", "100", "101"], 3),
    (STOP, S, {"trigger_price": D(100)}, ["103", "101", "100.5", "100", "99"], 3),
    (
        STOP_LIMIT,
        B,
        {"trigger_price": D(100), "limit_price": D(101)},
        ["97", "99", "99.5", "100", "101"],
        3,
    ),
    (
        STOP_LIMIT,
        S,
        {"trigger_price": D(100), "limit_price": D(99)},
        ["103", "101", "100.5", "100", "99"],
        3,
    ),
    (TP, S, {"trigger_price": D(100)}, ["97", "99", "99.5", "100", "101"], 3),
    (TP, B, {"trigger_price": D(100)}, ["103", "101", "100.5", "100", "99"], 3),
]


@pytest.mark.parametrize(("type_", "side", "fields", "path", "at"), SIMPLE_ROWS)
def test_simple_row_fires_exactly_when_the_level_is_reached(
    type_: OrderType, side: Side, fields: dict[str, Any], path: list[str], at: int
) -> None:
    """Each simple row fires once, on the first tick at its level, and then leaves the book."""
    book = TriggerBook()
    book.arm(order("o1", type_, side, **fields))
    assert [(at, "o1", D(path[at]), D(100))] == fires(run(book, path))
    assert len(book) == 0


@pytest.mark.parametrize(("type_", "side", "fields", "path", "at"), SIMPLE_ROWS)
def test_simple_row_does_not_fire_moving_away(
    type_: OrderType, side: Side, fields: dict[str, Any], path: list[str], at: int
) -> None:
    """The same order on the mirrored path (moving away from its level) never fires."""
    book = TriggerBook()
    book.arm(order("o1", type_, side, **fields))
    start = D(path[0])
    away = [str(2 * start - D(p)) for p in path]  # reflected about the first price
    assert fires(run(book, away)) == []
    assert "o1" in book


@pytest.mark.parametrize(
    ("type_", "side", "fields", "gap_to"),
    [
        (LIMIT, B, {"price": D(100)}, "90"),
        (LIMIT, S, {"price": D(100)}, "110"),
        (STOP, B, {"trigger_price": D(100)}, "112"),
        (STOP, S, {"trigger_price": D(100)}, "80"),
        (TP, S, {"trigger_price": D(100)}, "130"),
        (TP, B, {"trigger_price": D(100)}, "70"),
    ],
)
def test_gap_fires_at_the_tick_price_not_the_level(
    type_: OrderType, side: Side, fields: dict[str, Any], gap_to: str
) -> None:
    """A gap through the level fires on that tick with fire_price = tick price."""
    book = TriggerBook()
    book.arm(order("o1", type_, side, **fields))
    start = "105" if D(gap_to) < 100 else "95"
    assert [(1, "o1", D(gap_to), D(100))] == fires(run(book, [start, gap_to]))


TRAILING_ROWS = [
    # (side, fields, path, expected (index, fire, trigger))
    (S, {"trail_percent": D(10)}, ["100", "110", "105", "99.5", "99"], (4, "99", "99.0")),
    (S, {"trail_amount": D(5)}, ["100", "104", "99.5", "99.1", "99"], (4, "99", "99")),
    (B, {"trail_percent": D(10)}, ["100", "90", "95", "98.5", "99"], (4, "99", "99.0")),
    (B, {"trail_amount": D(5)}, ["100", "96", "100.5", "100.9", "101"], (4, "101", "101")),
    (
        S,
        {"trail_percent": D(10), "activation_price": D(110)},
        ["100", "89", "110", "120", "108.5", "108"],
        (5, "108", "108.0"),
    ),
    (
        B,
        {"trail_percent": D(10), "activation_price": D(90)},
        ["100", "120", "90", "80", "87.5", "88"],
        (5, "88", "88.0"),
    ),
    (
        S,
        {"trail_amount": D(13), "activation_price": D(110)},
        ["100", "130", "117.5", "117"],
        (3, "117", "117"),
    ),
    (
        B,
        {"trail_amount": D(2), "activation_price": D(90)},
        ["100", "70", "71.5", "72.5"],
        (3, "72.5", "72"),
    ),
]


@pytest.mark.parametrize(("side", "fields", "path", "expected"), TRAILING_ROWS)
def test_trailing_row_fires_at_the_trailed_stop(
    side: Side, fields: dict[str, Any], path: list[str], expected: tuple[int, str, str]
) -> None:
    """Trailing stops follow the peak / trough since activation and fire once crossed."""
    book = TriggerBook()
    book.arm(order("t1", TRAIL, side, **fields))
    at, fire, trigger = expected
    assert [(at, "t1", D(fire), D(trigger))] == fires(run(book, path))


def test_trailing_sell_gap_reports_tick_price_and_stop_level() -> None:
    """A crash through a trailing stop fires at the crash price, reporting the stop level."""
    book = TriggerBook()
    book.arm(order("t1", TRAIL, S, trail_percent=D(10)))
    assert [(2, "t1", D(50), D("99.0"))] == fires(run(book, ["100", "110", "50"]))


def test_trailing_without_activation_starts_from_the_first_tick_seen() -> None:
    """Without activation price the first tick after arming sets the peak, not earlier prices."""
    book = TriggerBook()
    run(book, ["200"])  # a tick before arming is not seen by the order
    book.arm(order("t1", TRAIL, S, trail_percent=D(10)))
    results = run(book, ["100", "95", "90.5"], start=1)
    assert fires(results) == []
    assert [TrailingState("t1", True, D(100))] == book.trailing_states()


def test_initial_price_activates_at_arming_with_that_extreme() -> None:
    """With initial_price the peak is that price at once, so the first tick can fire."""
    book = TriggerBook()
    book.arm(order("t1", TRAIL, S, trail_percent=D(10)), initial_price=D(200))
    assert [TrailingState("t1", True, D(200))] == book.trailing_states()
    assert [(0, "t1", D(100), D("180.0"))] == fires(run(book, ["100"]))


def test_trailing_does_not_trail_before_activation() -> None:
    """Before activation no extreme is tracked, so the state reports inactive with none."""
    book = TriggerBook()
    book.arm(order("t1", TRAIL, B, trail_amount=D(1), activation_price=D(90)))
    run(book, ["100", "95", "130"])
    assert [TrailingState("t1", False, None)] == book.trailing_states()


def test_expiry_beats_a_crossing_on_the_same_tick() -> None:
    """An order whose expiry is reached on a crossing tick is expired, not fired."""
    book = TriggerBook()
    book.arm(order("o1", LIMIT, B, price=D(100), expires_at=T0 + timedelta(seconds=2)))
    results = run(book, ["105", "104", "90", "80"])
    assert [TickResult(), TickResult(), TickResult(expired=("o1",)), TickResult()] == results
    assert len(book) == 0


def test_expiry_without_crossing_and_before_it() -> None:
    """Orders expire on the first tick of their symbol at or after expires_at, in order."""
    book = TriggerBook()
    book.arm(order("late", TP, S, trigger_price=D(200), expires_at=T0 + timedelta(seconds=5)))
    book.arm(order("b", STOP, S, trigger_price=D(50), expires_at=T0 + timedelta(seconds=3)))
    book.arm(order("a", TRAIL, S, trail_amount=D(9), expires_at=T0 + timedelta(seconds=3)))
    book.arm(order("keep", LIMIT, B, price=D(1)))
    assert TickResult() == book.on_tick(OTHER, D(100), T0 + timedelta(seconds=9))
    results = run(book, ["100", "100"], start=4)
    assert [TickResult(expired=("a", "b")), TickResult(expired=("late",))] == results
    assert [cid for cid in ("a", "b", "late", "keep") if cid in book] == ["keep"]


def test_remove_disarms_once() -> None:
    """remove() is True once, then False; a removed order never fires."""
    book = TriggerBook()
    book.arm(order("o1", LIMIT, B, price=D(100)))
    book.arm(order("t1", TRAIL, S, trail_percent=D(1)))
    assert (book.remove("o1"), book.remove("t1"), book.remove("o1")) == (True, True, False)
    assert False is book.remove("never")
    assert fires(run(book, ["110", "90", "80"])) == []
    assert (len(book), "o1" in book) == (0, False)


def test_symbols_are_isolated() -> None:
    """Ticks of one symbol neither fire nor move the trailing extremes of another's orders."""
    book = TriggerBook()
    book.arm(order("a-limit", LIMIT, B, price=D(90)))
    book.arm(order("a-trail", TRAIL, S, trail_percent=D(10)))
    book.arm(order("b-limit", LIMIT, B, price=D(100), symbol=OTHER))
    assert fires(run(book, ["100"])) == []  # a-trail activates at 100
    assert [(0, "b-limit", D(90), D(100))] == fires(run(book, ["1000", "90"], symbol=OTHER)[1:])
    assert fires(run(book, ["101", "95"])) == []  # peak 101 (not 1000): stop 90.9
    assert {"a-limit", "a-trail"} == {c for c in ("a-limit", "a-trail", "b-limit") if c in book}


def test_fire_order_within_a_tick_is_deterministic() -> None:
    """Several fires on one tick come sorted by trigger price, created_at, client id."""
    t1 = T0 + timedelta(seconds=1)
    orders = [
        order("z-limit", LIMIT, B, price=D(100), created_at=T0),
        order("y-tp", TP, B, trigger_price=D(100), created_at=T0),
        order("a-limit-later", LIMIT, B, price=D(100), created_at=t1),
        order("stop", STOP, S, trigger_price=D(95), created_at=t1),
        order("trail", TRAIL, S, trail_amount=D(3)),  # peak 101 → stop 98
        order("sl", STOP_LIMIT, S, trigger_price=D("100.5"), limit_price=D(100)),
    ]
    expected = ["stop", "trail", "y-tp", "z-limit", "a-limit-later", "sl"]
    for arm_order in (orders, orders[::-1]):
        book = TriggerBook()
        for o in arm_order:
            book.arm(o)
        results = run(book, ["101", "90"])
        assert TickResult() == results[0]
        assert expected == [f.client_order_id for f in results[1].fired]
        assert [D(95), D(98), D(100), D(100), D(100), D("100.5")] == [
            f.trigger_price for f in results[1].fired
        ]
        assert {D(90)} == {f.fire_price for f in results[1].fired}


def test_fired_carries_symbol_and_tick_time() -> None:
    """A Fired names the symbol and the tick's timestamp."""
    book = TriggerBook()
    book.arm(order("o1", LIMIT, S, price=D(100), symbol=OTHER))
    ts = T0 + timedelta(minutes=3)
    assert TickResult(fired=(Fired("o1", OTHER, D(101), D(100), ts),)) == book.on_tick(
        OTHER, D(101), ts
    )


def test_restore_resumes_from_the_saved_extreme() -> None:
    """A re-armed trailing stop restored from its state fires where the old book would."""
    trail = order("t1", TRAIL, S, trail_percent=D(10))
    old = TriggerBook()
    old.arm(trail)
    run(old, ["100", "120"])
    states = old.trailing_states()
    assert [TrailingState("t1", True, D(120))] == states
    new = TriggerBook()
    new.arm(trail)
    new.restore_trailing([*states, TrailingState("gone", True, D(1))])
    assert [(1, "t1", D(108), D("108.0"))] == fires(run(new, ["110", "108"], start=2))


@pytest.mark.parametrize(
    ("type_", "fields", "field"),
    [
        (OrderType.MARKET, {}, "type"),
        (LIMIT, {}, "price"),
        (LIMIT, {"price": D(0)}, "price"),
        (LIMIT, {"price": D("NaN")}, "price"),
        (STOP, {"price": D(100)}, "trigger_price"),
        (STOP_LIMIT, {"trigger_price": D(100)}, "limit_price"),
        (TP, {"trigger_price": D(-1)}, "trigger_price"),
        (TRAIL, {}, "trail_percent"),
        (TRAIL, {"trail_percent": D(1), "trail_amount": D(1)}, "trail_percent"),
        (TRAIL, {"trail_percent": D(100)}, "trail_percent"),
        (TRAIL, {"trail_percent": D(0)}, "trail_percent"),
        (TRAIL, {"trail_amount": D(0)}, "trail_amount"),
        (TRAIL, {"trail_amount": D(1), "activation_price": D(0)}, "activation_price"),
        (LIMIT, {"price": D(1), "expires_at": datetime(2024, 1, 1)}, "expires_at"),  # noqa: DTZ001
        (LIMIT, {"price": D(1), "created_at": datetime(2024, 1, 1)}, "created_at"),  # noqa: DTZ001
    ],
)
def test_arm_rejects_what_cannot_trigger(
    type_: OrderType, fields: dict[str, Any], field: str
) -> None:
    """arm() raises ValidationError naming the bad field and leaves the book empty."""
    book = TriggerBook()
    with pytest.raises(ValidationError) as err:
        book.arm(order("o1", type_, S, **fields))
    assert field == err.value.field
    assert len(book) == 0


@pytest.mark.parametrize(
    ("type_", "fields", "initial"),
    [
        (LIMIT, {"price": D(100)}, D(100)),
        (TRAIL, {"trail_percent": D(1), "activation_price": D(110)}, D(100)),
        (TRAIL, {"trail_percent": D(1)}, D(0)),
    ],
)
def test_initial_price_only_for_trailing_without_activation(
    type_: OrderType, fields: dict[str, Any], initial: Decimal
) -> None:
    """initial_price is refused on other types, with an activation price, or when not > 0."""
    book = TriggerBook()
    with pytest.raises(ValidationError) as err:
        book.arm(order("o1", type_, S, **fields), initial_price=initial)
    assert err.value.field == "initial_price"


def test_arm_twice_and_restore_of_non_trailing_are_refused() -> None:
    """A client id can be armed once; a trailing state for a non-trailing order is refused."""
    book = TriggerBook()
    book.arm(order("o1", LIMIT, B, price=D(100)))
    with pytest.raises(ValidationError) as err:
        book.arm(order("o1", LIMIT, B, price=D(90)))
    assert err.value.field == "client_order_id"
    with pytest.raises(ValidationError):
        book.restore_trailing([TrailingState("o1", True, D(100))])
    assert [(0, "o1", D(100), D(100))] == fires(run(book, ["100"]))


@pytest.mark.parametrize(
    ("price", "ts", "field"),
    [
        (D(100), datetime(2024, 1, 1), "ts"),  # noqa: DTZ001
        (D(0), T0, "price"),
        (D(-5), T0, "price"),
        (D("NaN"), T0, "price"),
        (D("Infinity"), T0, "price"),
    ],
)
def test_bad_ticks_are_refused_and_fire_nothing(price: Decimal, ts: datetime, field: str) -> None:
    """A naive timestamp or a non-positive / non-finite price is refused; nothing fires."""
    book = TriggerBook()
    book.arm(order("o1", STOP, S, trigger_price=D(100)))
    with pytest.raises(ValidationError) as err:
        book.on_tick(SYM, price, ts)
    assert err.value.field == field
    assert "o1" in book


def test_idle_ticks_return_one_shared_empty_result() -> None:
    """A tick that fires nothing allocates no result: the same empty object comes back."""
    book = TriggerBook()
    book.arm(order("o1", LIMIT, B, price=D(50), expires_at=T0 + timedelta(days=1)))
    book.arm(order("t1", TRAIL, S, trail_percent=D(10)))
    first, second, third = run(book, ["100", "101", "100"])
    assert first == TickResult()
    assert first is second is third


def test_a_trailing_set_rising_for_long_keeps_its_index_small() -> None:
    """Thousands of new peaks leave a trailing set holding a few entries per live order,
    not a stale index entry per peak: with many sets in a book (one per account, market,
    side and kind), stale entries were the daemon's memory growth under load."""
    book = TriggerBook()
    for i in range(3):
        book.arm(order(f"t{i}", TRAIL, S, trail_percent=D(5 + i)), initial_price=D(100))
    run(book, [str(100 + k * D("0.01")) for k in range(5000)])
    assert [] == fires(run(book, ["149.99"], start=5000))
    assert book._stored_entries() <= 3 * 4 + 32
