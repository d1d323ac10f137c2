"""How audit rows map to tables, and how the writer sorts out errors (no database)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from core.models import PositionSide, Side
from core.order_model import Fill, Order, OrderStatus, OrderType
from core.position_model import Position
from core.records import (
    AuditRecord,
    RecordKind,
    event_record,
    order_event_record,
    order_record,
    position_record,
    position_update_record,
    trade_record,
)
from database.audit_tables import TABLES, WRITE_ORDER, BadRecord, group_rows, is_poison
from database.errors import DatabaseUnavailable, is_unavailable, safe_url, translate


def _order(cid: str = "td-main-p1-en-1", version: int = 1) -> Order:
    return Order(
        cid,
        "main",
        "paper",
        "BTC/USDT:USDT",
        Side.BUY,
        OrderType.MARKET,
        Decimal(1),
        position_id=1,
        status=OrderStatus.NEW,
        version=version,
    )


def _samples() -> list[AuditRecord]:
    order = _order()
    position = Position(1, "main", "paper", "BTC/USDT:USDT", PositionSide.LONG)
    return [
        order_record(order),
        order_event_record(order, "created", None),
        trade_record(order, Fill("t1", Decimal(1), Decimal(1))),
        position_record(position),
        position_update_record(position),
        event_record("start", "hello"),
    ]


def test_table_columns_are_exactly_the_builders_keys() -> None:
    """Every row builder's keys are the columns its table spec writes, and no more."""
    samples = {rec.kind: rec for rec in _samples()}
    assert set(samples) == set(TABLES)
    for kind, rec in samples.items():
        assert set(TABLES[kind].columns) == set(rec.row), kind


def test_positions_are_written_first() -> None:
    """Within a batch positions go first, so rows pointing at them follow."""
    assert WRITE_ORDER[0] is RecordKind.POSITION
    assert set(WRITE_ORDER) == set(RecordKind)


def test_group_keeps_the_newest_version_once() -> None:
    """Several snapshots of one order in a batch become one row: the highest version."""
    recs = [
        order_record(_order(version=3)),
        order_record(_order(version=5)),
        order_record(_order(version=4)),
    ]
    known: dict[RecordKind, set[Any]] = {}
    [(spec, fresh, old)] = group_rows(recs, known, 1000)
    assert spec.kind is RecordKind.ORDER
    version_at = spec.columns.index("version")
    assert [row[version_at] for row in fresh] == [5]
    assert old == []


def test_group_sends_known_keys_to_the_merge() -> None:
    """A key written before is merged (upsert); an unseen one is copied straight in."""
    known: dict[RecordKind, set[Any]] = {}
    group_rows([order_record(_order("a"))], known, 1000)
    [(_, fresh, old)] = group_rows(
        [order_record(_order("a", 2)), order_record(_order("b"))], known, 1000
    )
    cid_at = TABLES[RecordKind.ORDER].columns.index("client_order_id")
    assert [r[cid_at] for r in fresh] == ["b"]
    assert [r[cid_at] for r in old] == ["a"]


def test_group_refuses_a_row_without_its_key() -> None:
    """A malformed row is a bad record (isolated, dead-lettered), not a database outage."""
    bad = AuditRecord(RecordKind.ORDER, {"status": "NEW"})
    with pytest.raises(BadRecord):
        group_rows([bad], {}, 1000)
    assert is_poison(BadRecord("x"))


def test_group_jsonb_detail_becomes_text() -> None:
    """jsonb values are sent as JSON text, Decimal as a string inside."""
    rec = event_record("e", "m", detail={"p": Decimal("1.5")}, event_key="k")
    [(spec, fresh, _)] = group_rows([rec], {}, 1000)
    assert fresh[0][spec.columns.index("detail")] == '{"p":"1.5"}'


def test_poison_versus_unavailable() -> None:
    """Data and constraint errors are the rows' fault; connection errors are the server's."""
    assert is_poison(asyncpg.exceptions.CheckViolationError("bad"))
    assert is_poison(asyncpg.exceptions.ForeignKeyViolationError("bad"))
    assert is_poison(asyncpg.exceptions.NumericValueOutOfRangeError("bad"))
    assert is_poison(TypeError("bad"))
    assert not is_poison(ConnectionRefusedError())
    assert not is_poison(TimeoutError())
    assert not is_poison(asyncpg.exceptions.AdminShutdownError("bye"))
    assert not is_poison(asyncpg.exceptions.UndefinedTableError("no schema"))
    assert is_unavailable(ConnectionRefusedError())
    assert is_unavailable(asyncpg.exceptions.CannotConnectNowError("starting"))
    assert not is_unavailable(asyncpg.exceptions.UniqueViolationError("dup"))


def test_safe_url_masks_the_password() -> None:
    """A URL shown in a message keeps host and user but never the password."""
    shown = safe_url("postgresql://trader:s3cr3t-pw@db.example:6432/trader?sslmode=require")
    assert "s3cr3t-pw" not in shown
    assert shown == "postgresql://trader:***@db.example:6432/trader?sslmode=require"
    assert safe_url("postgresql://postgres@/trader?host=/tmp") == (
        "postgresql://postgres@/trader?host=/tmp"
    )


def test_translated_errors_never_hold_the_password() -> None:
    """Even an error whose text quotes the URL comes out without the password."""
    url = "postgresql://trader:s3cr3t-pw@db.example/trader"
    error = translate(OSError(f"cannot reach {url}"), url)
    assert isinstance(error, DatabaseUnavailable)
    assert "s3cr3t-pw" not in str(error)
    assert "db.example" in str(error)
