"""What the log says about an order: the venue's answers at INFO, our requests (create,
send, cancel) at DEBUG, a request the venue never answered at WARNING, and every step in
the audit trail whatever its log level."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import structlog

from config.logging import configure_logging
from core.records import RecordKind
from core.venue import OrderRequest, RequestTimeout
from tests.trading_harness import BTC, build_stack, long_signal


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", "DEBUG", out)
    yield out
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def order_lines(stream: io.StringIO, client_order_id: str) -> list[tuple[str, str]]:
    return [
        (line["event"], line["level"])
        for line in lines(stream)
        if line.get("client_order_id") == client_order_id
    ]


async def test_a_stop_move_logs_the_venues_answers_at_info_and_our_requests_at_debug(
    stream: io.StringIO,
) -> None:
    """A trailing move: the new stop's 'accepted' and the old one's 'cancelled' are INFO,
    their 'created', 'submitted' and 'cancelling' DEBUG; the trail keeps all five."""
    stack = build_stack()
    stack.tick(BTC, "60000")
    position = await stack.apm.open_position_atomic(long_signal())
    live = stack.book.get(position.id)
    assert live is not None and live.stop is not None
    old = live.stop.client_order_id
    await stack.lifecycle.move_stop(position.id, Decimal("59500"))
    new = live.stop.client_order_id
    assert new != old
    assert [
        ("order_created", "debug"),
        ("order_submitted", "debug"),
        ("order_accepted", "info"),
    ] == order_lines(stream, new)
    assert [("order_cancelling", "debug"), ("order_cancelled", "info")] == order_lines(stream, old)[
        -2:
    ]
    moved = [line for line in lines(stream) if line["event"] == "position_stop_moved"]
    assert [("info", "59500")] == [(line["level"], line["stop_loss_price"]) for line in moved]
    kinds = {(row["client_order_id"], row["kind"]) for row in stack.rows(RecordKind.ORDER_EVENT)}
    assert {(new, "created"), (new, "submitted"), (new, "accepted")} <= kinds
    assert {(old, "cancelling"), (old, "cancelled")} <= kinds


async def test_a_submit_the_venue_never_answers_is_a_warning_naming_the_order(
    stream: io.StringIO,
) -> None:
    """The stop's reply is lost: an 'order_unanswered' WARNING names the order and the
    error, although its 'submitted' line is DEBUG; the trail has the submit."""

    class LosesStopReplies:
        def __init__(self, venue: Any) -> None:
            self.v = venue

        def __getattr__(self, name: str) -> Any:
            return getattr(self.v, name)

        async def create_order(self, request: OrderRequest) -> Any:
            if request.reduce_only and request.trigger_price is not None:
                raise RequestTimeout("no reply within 10 s")
            return await self.v.create_order(request)

    stack = build_stack(wrap=LosesStopReplies, stop_tries=1)
    stack.tick(BTC, "60000")
    await stack.apm.open_position_atomic(long_signal())
    unanswered = [line for line in lines(stream) if line["event"] == "order_unanswered"]
    assert unanswered, "a lost stop reply left no warning"
    first = unanswered[0]
    assert ("warning", "SUBMITTED", "no reply within 10 s") == (
        first["level"],
        first["status"],
        first["error"],
    )
    assert "-sl-" in first["client_order_id"]
    history = [
        row["kind"]
        for row in stack.rows(RecordKind.ORDER_EVENT)
        if row["client_order_id"] == first["client_order_id"]
    ]
    assert ["created", "submitted"] == history[:2]
