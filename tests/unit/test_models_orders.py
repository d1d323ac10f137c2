"""The order status machine and fill accounting of core/order_model.py."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.errors import InvalidTransition, ValidationError
from core.models import PositionSide, Side
from core.order_model import TERMINAL_STATUSES, Fill, Order, OrderStatus, OrderType, can_transition

S = OrderStatus

# docs/architecture.md ('Orders'), written out independently of the model's table: the arrows,
# plus the documented venue facts (SUBMITTED may skip NEW; CANCELLING may fall back; a
# triggered conditional order may be REJECTED).
SPEC_EDGES = {
    (S.PENDING, S.SUBMITTED),
    (S.PENDING, S.TRIGGERED),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.EXPIRED),
    (S.PENDING, S.FAILED),
    (S.TRIGGERED, S.SUBMITTED),
    (S.TRIGGERED, S.FAILED),
    (S.TRIGGERED, S.CANCELLED),
    (S.SUBMITTED, S.NEW),
    (S.SUBMITTED, S.REJECTED),
    (S.SUBMITTED, S.FAILED),
    (S.SUBMITTED, S.PARTIALLY_FILLED),
    (S.SUBMITTED, S.FILLED),
    (S.SUBMITTED, S.CANCELLED),
    (S.SUBMITTED, S.EXPIRED),
    (S.NEW, S.PARTIALLY_FILLED),
    (S.NEW, S.FILLED),
    (S.NEW, S.CANCELLING),
    (S.NEW, S.CANCELLED),
    (S.NEW, S.EXPIRED),
    (S.NEW, S.REJECTED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCELLING),
    (S.PARTIALLY_FILLED, S.CANCELLED),
    (S.PARTIALLY_FILLED, S.EXPIRED),
    (S.CANCELLING, S.CANCELLED),
    (S.CANCELLING, S.NEW),
    (S.CANCELLING, S.PARTIALLY_FILLED),
    (S.CANCELLING, S.FILLED),
}


def make_order(status: OrderStatus = S.PENDING, amount: str = "1") -> Order:
    return Order(
        client_order_id="td-main-p1-en-1",
        account="main",
        exchange="paper",
        symbol="BTC/USDT:USDT",
        side=Side.BUY,
        type=OrderType.MARKET,
        amount=Decimal(amount),
        status=status,
    )


ALL_PAIRS = list(itertools.product(OrderStatus, OrderStatus))


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_status_pair_follows_the_design(old: OrderStatus, new: OrderStatus) -> None:
    """Each of the 121 status pairs is allowed exactly when the plain lifecycle has it or
    one of the venue facts above adds it; a disallowed move raises, and a repeated status (a
    venue saying the same thing twice) leaves the snapshot as it was."""
    allowed = (old, new) in SPEC_EDGES
    assert allowed == can_transition(old, new)
    order = make_order(old)
    if allowed:
        assert new == order.with_status(new).status
    elif old != new:
        with pytest.raises(InvalidTransition):
            order.with_status(new)
    else:
        assert order is order.with_status(new)


def test_terminal_statuses_have_no_exit() -> None:
    """FILLED, CANCELLED, REJECTED, EXPIRED and FAILED are terminal and lead nowhere."""
    expected = {S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED, S.FAILED}
    assert expected == set(TERMINAL_STATUSES)
    assert set() == {(a, b) for a, b in SPEC_EDGES if a in expected}


def test_partial_fills_give_weighted_average_remaining_and_fees() -> None:
    """Two partial fills: filled, remaining, quantity-weighted average and fee total."""
    order = make_order(S.NEW, amount="3")
    order = order.with_fill(Fill("t1", Decimal("100"), Decimal("1"), Decimal("0.055"), "USDT"))
    assert S.PARTIALLY_FILLED == order.status
    order = order.with_fill(Fill("t2", Decimal("103"), Decimal("2"), Decimal("0.1133"), "USDT"))
    assert S.FILLED == order.status
    assert Decimal("3") == order.filled
    assert Decimal("0") == order.remaining
    assert Decimal("102") == order.average_price
    assert Decimal("0.1683") == order.fee
    assert "USDT" == order.fee_currency
    assert order.filled_at is not None


def test_a_repeated_fill_is_ignored() -> None:
    """The same trade id applied twice counts once."""
    fill = Fill("t1", Decimal("100"), Decimal("1"), Decimal("0.05"))
    once = make_order(S.NEW, amount="2").with_fill(fill)
    twice = once.with_fill(fill)
    assert once == twice
    assert Decimal("1") == twice.filled


def test_late_fill_on_cancelled_order_is_applied_without_status_change() -> None:
    """A fill reported after the cancel still moves money, and the status stays CANCELLED."""
    order = make_order(S.NEW, amount="2").with_status(S.CANCELLED)
    late = order.with_fill(Fill("t9", Decimal("100"), Decimal("0.5")))
    assert S.CANCELLED == late.status
    assert Decimal("0.5") == late.filled


def test_versions_rise_with_every_change() -> None:
    """Each change bumps the version so the audit trail can keep the newest snapshot."""
    order = make_order(S.PENDING)
    submitted = order.with_status(S.SUBMITTED)
    new = submitted.with_status(S.NEW)
    assert [1, 2, 3] == [order.version, submitted.version, new.version]


def test_average_is_none_before_any_fill() -> None:
    """An order without fills has no average price (never 0: failure mode 1)."""
    assert make_order(S.NEW).average_price is None


def test_status_timestamps_are_set_on_the_move() -> None:
    """TRIGGERED and CANCELLED stamp triggered_at / cancelled_at with the given UTC time."""
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    triggered = make_order(S.PENDING).with_status(S.TRIGGERED, at=at)
    assert at == triggered.triggered_at
    cancelled = triggered.with_status(S.CANCELLED, at=at + timedelta(seconds=1))
    assert at + timedelta(seconds=1) == cancelled.cancelled_at


@pytest.mark.parametrize("raw", ["BUY", "buy", " Buy "])
def test_side_parse_is_case_insensitive(raw: str) -> None:
    """Order sides parse regardless of case and spacing (failure mode 3: case mix-ups)."""
    assert Side.BUY == Side.parse(raw)


@pytest.mark.parametrize("raw", ["long", "LONG", "Long"])
def test_position_side_derives_entry_and_exit_sides(raw: str) -> None:
    """A long enters with buy and exits with sell, whatever the input case."""
    side = PositionSide.parse(raw)
    assert (Side.BUY, Side.SELL) == (side.entry_side, side.exit_side)
    assert (Side.SELL, Side.BUY) == (PositionSide.SHORT.entry_side, PositionSide.SHORT.exit_side)


@pytest.mark.parametrize("raw", ["", "up", "buy", None, 1, "long; DROP TABLE x"])
def test_position_side_rejects_anything_else(raw: object) -> None:
    """Only long/short are position sides; the error names the field."""
    with pytest.raises(ValidationError) as err:
        PositionSide.parse(raw)
    assert "side" == err.value.field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": 50000.0}, "price"),
        ({"amount": 0.1}, "amount"),
        ({"price": Decimal(0)}, "price"),
        ({"amount": Decimal("-0.1")}, "amount"),
        ({"price": Decimal("NaN")}, "price"),
        ({"fee": Decimal("Infinity")}, "fee"),
        ({"ts": datetime(2026, 1, 1)}, "ts"),  # noqa: DTZ001 - the naive time under test
    ],
)
def test_a_fill_refuses_floats_non_positive_values_and_naive_times(
    changes: dict[str, object], field: str
) -> None:
    """A venue fill must carry Decimal price and amount > 0 and an aware time, or it is
    refused where it is built, naming the field (failure mode 10)."""
    values: dict[str, object] = {"trade_id": "t1", "price": Decimal(50000), "amount": Decimal(1)}
    with pytest.raises(ValidationError) as err:
        Fill(**{**values, **changes})  # type: ignore[arg-type]
    assert field == err.value.field


def test_a_maker_rebate_is_a_valid_negative_fee() -> None:
    """A negative fee (a rebate) is accepted and lowers the order's fee total."""
    order = make_order(OrderStatus.NEW)
    rebate = Fill("t1", Decimal(50000), order.amount, fee=Decimal("-0.5"))
    assert Decimal("-0.5") == order.with_fill(rebate).fee


def test_a_status_change_at_a_naive_time_is_refused() -> None:
    """with_status(at=naive datetime) raises instead of mixing naive and aware times."""
    order = make_order(OrderStatus.NEW)
    with pytest.raises(ValidationError):
        order.with_status(OrderStatus.CANCELLING, at=datetime(2026, 1, 1))  # noqa: DTZ001
