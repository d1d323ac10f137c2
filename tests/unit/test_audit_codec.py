"""The JSON encodings of audit rows: lossless on disk, readable in jsonb."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.models import Side
from core.order_model import Fill, Order, OrderStatus, OrderType
from core.records import AuditRecord, RecordKind, event_record, order_record, trade_record
from database.codec import decode_record, dumps_json, encode_record


def _order() -> Order:
    return Order(
        "td-main-p1-en-1",
        "main",
        "paper",
        "BTC/USDT:USDT",
        Side.BUY,
        OrderType.MARKET,
        Decimal("0.0100"),
        position_id=1,
        status=OrderStatus.NEW,
    )


def test_order_record_round_trips_exactly() -> None:
    """An order row read back from its spool line equals the row that was written."""
    order = _order().with_fill(Fill("t1", Decimal("65000.10"), Decimal("0.0100"), Decimal("0.65")))
    rec = order_record(order)
    back = decode_record(encode_record(rec))
    assert back == rec
    assert back.row["average_price"] == Decimal("65000.10")
    assert str(back.row["size"]) == "0.0100"  # the exponent survives, not just the value


def test_datetime_keeps_its_offset_and_decimal_its_form() -> None:
    """Datetimes come back aware with their offset; Decimals keep NaN and exponents."""
    tz = timezone(timedelta(hours=5, minutes=30))
    row = {
        "at": datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=tz),
        "utc": datetime(2024, 1, 2, tzinfo=UTC),
        "n": Decimal("1E+3"),
        "nan": Decimal("NaN"),
        "day": date(2024, 2, 29),
    }
    back = dict(decode_record(encode_record(AuditRecord(RecordKind.EVENT, row))).row)
    assert back.pop("nan").is_nan()  # NaN never equals itself, so checked apart
    assert back == {k: v for k, v in row.items() if k != "nan"}
    assert back["at"].utcoffset() == timedelta(hours=5, minutes=30)
    assert str(back["n"]) == "1E+3"


def test_user_dicts_that_look_like_tags_stay_dicts() -> None:
    """A detail dict shaped like an encoding tag is data, not a Decimal or a datetime."""
    detail = {"$dec": "1.5", "nested": [{"$ts": "x"}, {"$$a": 1}], "price": Decimal("2")}
    rec = event_record("test", "msg", detail=detail, event_key="k1")
    back = decode_record(encode_record(rec))
    assert back.row["detail"] == detail


def test_trade_record_round_trips() -> None:
    """A trade row (None values, Decimals, a datetime) survives the spool encoding."""
    order = _order()
    fill = Fill("t-9", Decimal("1.5"), Decimal("0.01"), ts=datetime(2024, 5, 1, tzinfo=UTC))
    rec = trade_record(order, fill, realized_pnl=Decimal("-0.25"))
    assert decode_record(encode_record(rec)) == rec


def test_unencodable_value_raises_type_error() -> None:
    """A value JSON cannot hold is refused loudly (the writer dead-letters it)."""
    with pytest.raises(TypeError):
        encode_record(AuditRecord(RecordKind.EVENT, {"x": object()}))


def test_decode_rejects_a_line_that_is_not_a_record() -> None:
    """Garbage and foreign JSON are refused, never turned into a record."""
    with pytest.raises(ValueError):
        decode_record(b'{"k": "orders"}')
    with pytest.raises(ValueError):
        decode_record(b'{"k": "nonsense", "r": {}}')
    with pytest.raises(ValueError):
        decode_record(b"{torn")


def test_dumps_json_writes_decimal_as_string() -> None:
    """jsonb gets Decimal as a string (no float rounding) and datetime as ISO-8601."""
    text = dumps_json({"p": Decimal("0.1"), "t": datetime(2024, 1, 1, tzinfo=UTC)})
    assert json.loads(text) == {"p": "0.1", "t": "2024-01-01T00:00:00+00:00"}


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.decimals(allow_nan=False, allow_infinity=True)
    | st.datetimes(timezones=st.timezones())
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _instants(value: object) -> object:
    """``value`` with every datetime as its UTC instant. Python never calls an aware time
    equal to one in another zone when either falls in a DST gap or fold (1938-03-26 23:00
    in Paris, say), even when both name the same instant: compare instants instead."""
    if isinstance(value, datetime):
        # As a timedelta from year 1, UTC: astimezone(UTC) overflows for the first hours
        # of year 1 in a zone east of UTC, which the codec itself handles.
        offset = value.utcoffset() or timedelta(0)
        return value.replace(tzinfo=UTC) - datetime(1, 1, 1, tzinfo=UTC) - offset
    if isinstance(value, dict):
        return {k: _instants(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_instants(v) for v in value]
    return value


@given(st.dictionaries(st.text(min_size=1), _values, max_size=8))
def test_any_row_round_trips(row: dict[str, object]) -> None:
    """Property: every row of JSON-like values, Decimals and datetimes decodes to itself
    (datetimes to the same instant)."""
    rec = AuditRecord(RecordKind.EVENT, row)
    assert _instants(decode_record(encode_record(rec)).row) == _instants(row)
