"""Intake rows become outcomes: valid ones done, bad ones rejected with a reason, and no
input — however hostile — raises or changes anything."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.intake import DONE, FAILED, REJECTED, IntakeHandler
from tests.trading_harness import BTC, Stack, build_stack


def handler(stack: Stack) -> IntakeHandler:
    return IntakeHandler("main", stack.apm, stack.lifecycle, stack.orders)


async def test_valid_signal_opens_a_position() -> None:
    """A well-formed signal row ends done with the position in the result."""
    stack = build_stack()
    outcome = await handler(stack).signal(
        {"id": 7, "symbol": BTC, "side": "long", "amount": "0.01"}
    )
    assert DONE == outcome.status
    assert "active" == outcome.result["status"]
    assert outcome.position_id is not None


async def test_rolled_back_signal_is_failed_with_the_reason() -> None:
    """A signal whose stop is refused ends failed, saying why."""
    stack = build_stack({"reject_stop": 1})
    outcome = await handler(stack).signal({"symbol": BTC, "side": "short", "amount": "0.01"})
    assert FAILED == outcome.status
    assert "stop-loss could not be placed" == outcome.reason


async def test_commands_place_cancel_and_close() -> None:
    """place_order, cancel_order and close_position each end done."""
    stack = build_stack()
    h = handler(stack)
    opened = await h.signal({"symbol": BTC, "side": "long", "amount": "0.01"})
    placed = await h.command(
        {
            "id": 3,
            "kind": "place_order",
            "payload": {
                "symbol": BTC,
                "side": "buy",
                "type": "limit",
                "amount": "0.01",
                "price": "49000",
            },
        }
    )
    assert DONE == placed.status
    assert placed.result["client_order_id"].startswith("td-main-r3-")
    cancelled = await h.command(
        {"kind": "cancel_order", "payload": {"order_id": placed.result["client_order_id"]}}
    )
    assert (DONE, "CANCELLED") == (cancelled.status, cancelled.result["status"])
    closed = await h.command(
        {"kind": "close_position", "payload": {"position_id": opened.position_id}}
    )
    assert (DONE, "closed") == (closed.status, closed.result["status"])


HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["'; DROP TABLE monitoring.orders; --", "NaN", "-1", "1e400", "Infinity", "\x00", "0"]
    ),
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HOSTILE_TEXT,
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
)
SIGNAL_FIELDS = [
    "symbol",
    "side",
    "amount",
    "quote_amount",
    "entry_type",
    "price",
    "stop_loss_price",
    "stop_loss_percent",
    "take_profit_price",
    "take_profit_percent",
    "trailing_activation_percent",
    "trailing_callback_percent",
    "account",
]


@settings(max_examples=150, deadline=None)
@given(row=st.dictionaries(st.sampled_from(SIGNAL_FIELDS), VALUES, max_size=8))
def test_hostile_signal_rows_are_rejected_and_change_nothing(row: dict[str, Any]) -> None:
    """Random malformed signal rows end rejected with a reason; nothing reaches the venue
    unless the row happens to be a valid signal."""

    async def scenario() -> None:
        stack = build_stack()
        outcome = await handler(stack).signal(row)
        if outcome.status == DONE:  # a random row that is genuinely valid
            return
        assert outcome.status in (REJECTED, FAILED)
        assert outcome.reason
        assert [] == list(await stack.venue.fetch_fills(BTC))
        assert 0 == len(stack.book)

    asyncio.run(scenario())


@settings(max_examples=150, deadline=None)
@given(
    kind=st.one_of(
        st.sampled_from(["place_order", "cancel_order", "close_position"]), HOSTILE_TEXT
    ),
    payload=st.one_of(
        VALUES,
        st.dictionaries(
            st.sampled_from(
                [
                    "symbol",
                    "side",
                    "type",
                    "amount",
                    "price",
                    "trigger_price",
                    "trail_percent",
                    "order_id",
                    "position_id",
                    "expires_in",
                    "native",
                    "reduce_only",
                ]
            ),
            VALUES,
            max_size=6,
        ),
    ),
)
def test_hostile_command_rows_are_rejected(kind: Any, payload: Any) -> None:
    """Random malformed commands end rejected with a reason and never raise."""

    async def scenario() -> None:
        stack = build_stack()
        outcome = await handler(stack).command({"kind": kind, "payload": payload})
        if outcome.status == DONE:
            return
        assert outcome.status in (REJECTED, FAILED)
        assert outcome.reason
        assert [] == list(await stack.venue.fetch_fills(BTC))

    asyncio.run(scenario())


async def test_signal_for_another_account_is_rejected() -> None:
    """A row addressed to another account is not this daemon's to act on."""
    stack = build_stack()
    outcome = await handler(stack).signal(
        {"account": "other", "symbol": BTC, "side": "long", "amount": "0.01"}
    )
    assert (REJECTED, True) == (outcome.status, "account" in (outcome.reason or ""))


async def test_huge_amount_never_opens_a_position() -> None:
    """An absurd amount ends refused with a reason and leaves no position."""
    stack = build_stack()
    outcome = await handler(stack).signal(
        {"symbol": BTC, "side": "long", "amount": str(Decimal("1e12"))}
    )
    assert (True, True, 0) == (
        outcome.status in (REJECTED, FAILED),
        bool(outcome.reason),
        len(stack.book),
    )


async def test_huge_amount_is_rejected_before_any_order() -> None:
    """1e12 BTC is more than the free balance can margin: rejected at validation, naming
    the amount, with no order created or sent."""
    stack = build_stack()
    outcome = await handler(stack).signal({"symbol": BTC, "side": "long", "amount": "1e12"})
    assert (REJECTED, True, {}) == (
        outcome.status,
        (outcome.reason or "").startswith("amount"),
        stack.latest_orders(),
    )


async def test_numbers_in_a_reason_read_as_written() -> None:
    """A numeric value in a reason is shown plainly (150, not Decimal('150'))."""
    outcome = await handler(build_stack()).signal(
        {"symbol": BTC, "side": "long", "amount": Decimal("0.01"),
         "stop_loss_percent": Decimal("150")}
    )  # fmt: skip
    assert (REJECTED, "stop_loss_percent: must be a percentage between 0 and 100 (got 150)") == (
        outcome.status,
        outcome.reason,
    )


async def test_hostile_text_in_a_reason_stays_quoted_and_escaped() -> None:
    """A string value keeps its quotes and escapes, so it cannot pose as the message."""
    outcome = await handler(build_stack()).signal(
        {"symbol": BTC, "side": "long", "amount": "0.01", "entry_type": "x'\n-- ok"}
    )
    assert (REJECTED, "entry_type: must be 'market' or 'limit' (got \"x'\\n-- ok\")") == (
        outcome.status,
        outcome.reason,
    )
