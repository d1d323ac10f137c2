"""Listing output: aligned tables a person scans, and JSON a program reads losslessly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from cli.listings import (
    ORDER_HEADERS,
    POSITION_HEADERS,
    age,
    order_cells,
    plain_number,
    position_cells,
    render_table,
    to_json,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("60012.50000"), "60012.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("0E-8"), "0"),
        (Decimal("-15.88875165"), "-15.88875165"),
        (Decimal("0.00000123"), "0.00000123"),
        (None, "-"),
    ],
)
def test_plain_number_drops_trailing_zeros_and_never_uses_exponents(
    value: Decimal | None, text: str
) -> None:
    """Numbers print as typed by a person: no ``E+2``, no ``.00000``."""
    assert text == plain_number(value)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(minutes=12, seconds=59), "12m"),
        (timedelta(hours=3, minutes=5), "3h05m"),
        (timedelta(days=2, hours=4, minutes=30), "2d04h"),
        (timedelta(seconds=-3), "0s"),
    ],
)
def test_age_is_short_and_coarse(delta: timedelta, text: str) -> None:
    """Ages round down to the two largest units."""
    assert text == age(NOW - delta, NOW)


def test_table_columns_align_and_numbers_are_right_aligned() -> None:
    """Every line has its cells at the same offsets; numeric columns end together."""
    table = render_table(("ID", "NAME", "PNL"), [("1", "alpha", "-1.5"), ("12", "b", "100")])
    assert ["ID  NAME    PNL", " 1  alpha  -1.5", "12  b       100"] == table.splitlines()


def _position(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 7,
        "symbol": "BTC/USDT:USDT",
        "side": "long",
        "status": "active",
        "quantity": Decimal("0.010"),
        "entry_price": Decimal("60012.0"),
        "current_price": Decimal("60100"),
        "exit_price": None,
        "stop_loss_price": Decimal("58811.7"),
        "take_profit_price": None,
        "unrealized_pnl": Decimal("0.88"),
        "realized_pnl": Decimal("0"),
        "fees": Decimal("0.330066"),
        "opened_at": NOW - timedelta(minutes=3),
        "closed_at": None,
        "exit_reason": None,
    }
    row.update(changes)
    return row


def test_position_line_shows_current_price_when_open_and_exit_price_when_closed() -> None:
    """PRICE is the last price of an open position and the exit price of a closed one."""
    open_cells = dict(zip(POSITION_HEADERS, position_cells(_position(), NOW), strict=True))
    assert ("60100", "3m", "-", "-") == (
        open_cells["PRICE"],
        open_cells["OPENED"],
        open_cells["CLOSED"],
        open_cells["EXIT"],
    )
    closed = _position(
        status="closed",
        exit_price=Decimal("58488.3"),
        closed_at=NOW - timedelta(seconds=30),
        exit_reason="stop_loss",
        realized_pnl=Decimal("-15.88875165"),
    )
    cells = dict(zip(POSITION_HEADERS, position_cells(closed, NOW), strict=True))
    assert ("58488.3", "30s", "stop_loss", "-15.88875165", "0.01") == (
        cells["PRICE"],
        cells["CLOSED"],
        cells["EXIT"],
        cells["RPNL"],
        cells["QTY"],
    )


def test_order_line_shows_trigger_or_trailing_distance() -> None:
    """A stop shows its trigger price; a trailing stop its distance; mode is spelled out."""
    base: dict[str, Any] = {
        "id": 3,
        "client_order_id": "td-main-p7-sl-1",
        "position_id": 7,
        "symbol": "BTC/USDT:USDT",
        "side": "sell",
        "type": "STOP_MARKET",
        "purpose": "stop_loss",
        "status": "NEW",
        "size": Decimal("0.010"),
        "filled": Decimal("0"),
        "price": None,
        "limit_price": None,
        "trigger_price": Decimal("58811.7"),
        "trail_percent": None,
        "trail_amount": None,
        "average_price": None,
        "emulated": False,
        "created_at": NOW - timedelta(hours=1),
    }
    stop = dict(zip(ORDER_HEADERS, order_cells(base, NOW), strict=True))
    assert ("58811.7", "native", "1h00m", "7") == (
        stop["TRIGGER"],
        stop["MODE"],
        stop["AGE"],
        stop["POS"],
    )
    trailing = dict(
        base,
        type="TRAILING_STOP",
        trigger_price=None,
        trail_percent=Decimal("1.50"),
        emulated=True,
        position_id=None,
    )
    cells = dict(zip(ORDER_HEADERS, order_cells(trailing, NOW), strict=True))
    assert ("trail 1.5%", "emulated", "-") == (cells["TRIGGER"], cells["MODE"], cells["POS"])


def test_json_keeps_decimals_exact_and_times_in_utc() -> None:
    """Decimals become strings (not floats); any timezone becomes ISO-8601 UTC."""
    plus_two = timezone(timedelta(hours=2))
    text = to_json(
        [{"price": Decimal("0.1000"), "at": datetime(2026, 5, 1, 14, 0, tzinfo=plus_two)}]
    )
    assert [{"price": "0.1000", "at": "2026-05-01T12:00:00+00:00"}] == json.loads(text)
