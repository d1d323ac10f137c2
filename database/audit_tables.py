"""How an audit record becomes rows: the table of each record kind and its write rules.

:data:`TABLES` gives, for each audit :class:`~core.records.RecordKind`, the target table,
its columns (exactly the keys the row builders of core/records.py emit) and its
idempotency rule. The append-only tables are partitioned by time (migration 0012), so
their keys hold the record's time as well: a unique key of a partitioned table must.
The audit writer stages a batch with ``COPY`` into a per-session temporary table and
moves it with one ``INSERT ... SELECT ... ON CONFLICT``; the same rules serve single-row
writes. ``orders`` / ``positions`` keep the newest ``version``
(an older snapshot arriving late changes nothing); the others insert once per key.

``jsonb`` values are sent as JSON text (``$n::text::jsonb``), encoded by
:func:`database.codec.dumps_json`, so the SQL works whatever codecs a connection has.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from core.records import AuditRecord, RecordKind
from database.codec import dumps_json


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How one record kind lands in its table."""

    kind: RecordKind
    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    versioned: bool = False
    json_columns: frozenset[str] = frozenset()
    to_tuple: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        getter = operator.itemgetter(*self.columns)
        json_at = [i for i, c in enumerate(self.columns) if c in self.json_columns]

        def to_tuple(row: Mapping[str, Any]) -> tuple[Any, ...]:
            try:
                values: tuple[Any, ...] = getter(row)
            except KeyError:
                # A row without some column: NULL there (the table decides if that's ok).
                values = tuple(row.get(c) for c in self.columns)
            if json_at:
                items = list(values)
                for i in json_at:
                    items[i] = None if items[i] is None else dumps_json(items[i])
                values = tuple(items)
            return values

        object.__setattr__(self, "to_tuple", to_tuple)

    @property
    def stage(self) -> str:
        """The session's temporary staging table for this kind."""
        return f"audit_stage_{self.kind.value}"

    def _select_list(self) -> str:
        return ", ".join(f"{c}::jsonb" if c in self.json_columns else c for c in self.columns)

    def _conflict(self) -> str:
        target = ", ".join(self.key)
        if not self.versioned:
            return f"ON CONFLICT ({target}) DO NOTHING"
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns if c not in self.key)
        return (
            f"ON CONFLICT ({target}) DO UPDATE SET {sets}, recorded_at = now() "
            f"WHERE t.version < EXCLUDED.version"
        )

    @property
    def stage_ddl(self) -> str:
        """Create the staging table (same column types; ``jsonb`` as text). Idempotent."""
        cols = ", ".join(f"{c}::text AS {c}" if c in self.json_columns else c for c in self.columns)
        return (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {cols} FROM {self.table} WITH NO DATA"
        )

    @property
    def insert_from_stage(self) -> str:
        # The stage is emptied at every commit, so a plain scan returns the rows in the
        # order they were copied: ids are assigned in record order.
        return (
            f"INSERT INTO {self.table} AS t ({', '.join(self.columns)}) "
            f"SELECT {self._select_list()} FROM {self.stage} {self._conflict()}"
        )

    def insert_from_json(self, types: Mapping[str, str]) -> str:
        """The rows as one JSON array of arrays (``$1``), each value cast to its column's
        type (``types[c]``; ``jsonb`` columns arrive as JSON text), taken in order, with
        the same conflict rule."""
        values = ", ".join(
            f"(r.e->>{i})::{'text' if c in self.json_columns else types[c]} AS {c}"
            for i, c in enumerate(self.columns)
        )
        return (
            f"INSERT INTO {self.table} AS t ({', '.join(self.columns)}) "
            f"SELECT {self._select_list()} FROM (SELECT {values} "
            f"FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS r(e, n) "
            f"ORDER BY r.n) AS s {self._conflict()}"
        )

    @property
    def insert_one(self) -> str:
        """A single-row, parameterised insert with the same conflict rule."""
        params = ", ".join(
            f"${i}::text::jsonb" if c in self.json_columns else f"${i}"
            for i, c in enumerate(self.columns, start=1)
        )
        return (
            f"INSERT INTO {self.table} AS t ({', '.join(self.columns)}) "
            f"VALUES ({params}) {self._conflict()}"
        )


def _spec(kind: RecordKind, columns: str, key: tuple[str, ...], **kw: Any) -> TableSpec:
    return TableSpec(kind, f"monitoring.{kind.value}", tuple(columns.split()), key, **kw)


TABLES: Mapping[RecordKind, TableSpec] = {
    spec.kind: spec
    for spec in (
        _spec(
            RecordKind.POSITION,
            """id signal_id account exchange symbol side quantity entry_price current_price
            stop_loss_price take_profit_price status exchange_order_id realized_pnl
            unrealized_pnl fees open_entry_fees high_water_mark low_water_mark max_drawdown
            exit_price exit_reason opened_at closed_at updated_at version traded_quantity""",
            ("id",),
            versioned=True,
        ),
        _spec(
            RecordKind.ORDER,
            """client_order_id position_id account exchange symbol order_id type side purpose
            size price trigger_price limit_price trail_percent trail_amount activation_price
            reduce_only emulated price_source status filled remaining average_price fee
            fee_currency error_message expires_at created_at updated_at triggered_at
            filled_at cancelled_at version""",
            ("client_order_id",),
            versioned=True,
        ),
        _spec(
            RecordKind.ORDER_EVENT,
            """event_key client_order_id position_id kind previous_status new_status version
            detail created_at""",
            ("event_key", "created_at"),
            json_columns=frozenset({"detail"}),
        ),
        _spec(
            RecordKind.TRADE,
            """signal_id position_id account exchange symbol side order_type quantity
            price executed_qty average_price order_id client_order_id trade_id status fee
            fee_currency realized_pnl executed_at""",
            ("account", "exchange", "symbol", "trade_id", "executed_at"),
        ),
        _spec(
            RecordKind.POSITION_UPDATE,
            """position_id ts price quantity unrealized_pnl realized_pnl stop_loss_price
            high_water_mark low_water_mark max_drawdown unrealized_pnl_pct held_s risk_pct""",
            ("position_id", "ts"),
        ),
        _spec(
            RecordKind.EVENT,
            """event_key kind severity account position_id client_order_id message detail
            created_at""",
            ("event_key", "created_at"),
            json_columns=frozenset({"detail"}),
        ),
    )
}
# Write order inside one batch: positions first, so rows pointing at a position follow it.
WRITE_ORDER: tuple[RecordKind, ...] = tuple(TABLES)


async def prepare_staging(conn: asyncpg.Connection) -> None:
    """Create this session's staging tables (once per connection)."""
    for spec in TABLES.values():
        await conn.execute(spec.stage_ddl)


# A table's rows up to this many go in as one statement (write_merged); more, by COPY.
MERGE_MAX_ROWS = 200

_COLUMN_TYPES = """
SELECT t.name, a.attname, format_type(a.atttypid, NULL)
FROM unnest($1::text[]) AS t(name)
JOIN pg_attribute a ON a.attrelid = t.name::regclass
WHERE a.attnum > 0 AND NOT a.attisdropped
"""


async def merge_statements(conn: asyncpg.Connection) -> dict[RecordKind, str]:
    """Per kind, one ``INSERT ... SELECT FROM jsonb_array_elements($1) ... ON CONFLICT``
    with the table's own rule, typed from the tables as the server has them (one catalog
    query per connection). See :func:`write_merged`.

    A table that lacks one of its columns (a schema drifted under a running daemon) gets
    none: its rows go through COPY, whose refusal names the column (batch_writer.py
    schema_refusal), so the trail degrades with a clear reason and keeps the records."""
    types: dict[str, dict[str, str]] = {spec.table: {} for spec in TABLES.values()}
    for table, column, type_name in await conn.fetch(_COLUMN_TYPES, list(types)):
        types[table][column] = type_name
    return {
        spec.kind: spec.insert_from_json(types[spec.table])
        for spec in TABLES.values()
        if all(c in types[spec.table] for c in spec.columns)
    }


def _json_value(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)  # exact: the server reads it back as numeric text
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def write_merged(
    conn: asyncpg.Connection, sql: str, rows: Sequence[tuple[Any, ...]], timeout_s: float | None
) -> bool:
    """Write ``rows`` (one per key, in the order given) with one statement from
    :func:`merge_statements`: the rows travel as one JSON text. False, and nothing
    written, when a value has no JSON form (the caller takes the COPY path).

    Why: a small batch spends its time in round trips, not in encoding. The COPY path
    costs four per table (savepoint, COPY start, COPY data, release) and the merge of
    known rows three; this is one, with the same conflict rule, so its outcome is the
    COPY path's, fallback included. Rows are taken in order: updates placed before new
    rows are applied first. JSON rather than one array per column: asyncpg checks every
    array element against three abstract base classes, which cost the event loop about
    a millisecond per hundred rows; orjson encodes the same rows in a tenth of that.
    """
    try:
        payload = orjson.dumps(rows, default=_json_value).decode()
    except TypeError:
        return False
    await conn.execute(sql, payload, timeout=timeout_s)
    return True


# asyncpg encodes a COPY's rows on the event loop, all in one step for a list: about
# 3 us a row here, so a 5,000-row batch held the loop (and every tick behind it) for
# ~15 ms. Past this many rows they are handed over in chunks, the loop free in between.
COPY_CHUNK_ROWS = 256


def copy_source(rows: Sequence[tuple[Any, ...]]) -> Iterable[Any] | AsyncIterator[Any]:
    """What to give ``copy_records_to_table``: the rows, chunked when they are many."""
    return rows if len(rows) <= COPY_CHUNK_ROWS else _chunked(rows)


async def _chunked(rows: Sequence[tuple[Any, ...]]) -> AsyncIterator[tuple[Any, ...]]:
    for start in range(0, len(rows), COPY_CHUNK_ROWS):
        if start:
            await asyncio.sleep(0)
        for row in rows[start : start + COPY_CHUNK_ROWS]:
            yield row


async def write_fresh(
    conn: asyncpg.Connection,
    spec: TableSpec,
    rows: Sequence[tuple[Any, ...]],
    *,
    timeout_s: float | None = None,
) -> bool:
    """COPY ``rows`` straight into the table, for rows believed new (the fast path).

    Runs under a savepoint: if any key exists already (an update, a replayed duplicate),
    the COPY is rolled back and the rows are merged through the stage instead, with the
    table's conflict rule. Returns False when it had to fall back. The connection must
    encode ``jsonb`` from text (asyncpg's default codec), as the audit writer's does.
    """
    schema, table = spec.table.split(".", 1)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                table,
                schema_name=schema,
                records=copy_source(rows),
                columns=spec.columns,
                timeout=timeout_s,
            )
        return True
    except asyncpg.UniqueViolationError:
        await write_staged(conn, spec, rows, timeout_s=timeout_s)
        return False


async def write_staged(
    conn: asyncpg.Connection,
    spec: TableSpec,
    rows: Sequence[tuple[Any, ...]],
    *,
    timeout_s: float | None = None,
) -> None:
    """COPY ``rows`` (from :attr:`TableSpec.to_tuple`) into the stage, then merge them.

    Must run inside a transaction (the stage empties at commit). For versioned kinds the
    caller passes at most one row per key (``ON CONFLICT DO UPDATE`` may not touch a row
    twice in one statement).
    """
    await conn.copy_records_to_table(
        spec.stage, records=copy_source(rows), columns=spec.columns, timeout=timeout_s
    )
    await conn.execute(spec.insert_from_stage, timeout=timeout_s)


# -- batches of audit records ----------------------------------------------------
class BadRecord(Exception):
    """A record that could not even be turned into a row (wrong type, missing key)."""


def is_poison(exc: BaseException) -> bool:
    """True when the rows are at fault (retrying them cannot help), not the database."""
    if isinstance(exc, asyncpg.PostgresError):
        # Class 22: data exception; class 23: integrity constraint violation.
        return (getattr(exc, "sqlstate", None) or "")[:2] in ("22", "23")
    return isinstance(exc, BadRecord | TypeError | ValueError | ArithmeticError)


WRITE_RANK = {kind: i for i, kind in enumerate(WRITE_ORDER)}


def write_rank(rec: AuditRecord) -> int:
    """A record's place in the write order (something not a record goes last)."""
    try:
        return WRITE_RANK[rec.kind]
    except (AttributeError, KeyError):
        return len(WRITE_RANK)  # not a record: last, to be refused on its own


Rows = list[tuple[Any, ...]]


def group_rows(
    records: Sequence[AuditRecord], known: dict[RecordKind, set[Any]], known_cap: int
) -> list[tuple[TableSpec, Rows, Rows]]:
    """Rows per table in write order, as ``(spec, fresh, known)``.

    Versioned kinds keep one row per key (the newest version, at its first position)
    and are split by whether this writer has written the key before: a row believed new
    is COPY'd straight in, a known one merged. The split is only a hint: a "new" row that
    exists after all (a restart, a replay) makes the COPY fall back to the merge.
    """
    try:
        by_kind: dict[RecordKind, list[Any]] = {}
        for rec in records:
            by_kind.setdefault(rec.kind, []).append(rec.row)
        groups: list[tuple[TableSpec, Rows, Rows]] = []
        for kind in WRITE_ORDER:
            rows = by_kind.pop(kind, None)
            if not rows:
                continue
            spec = TABLES[kind]
            to_tuple = spec.to_tuple
            if not spec.versioned:
                groups.append((spec, [to_tuple(row) for row in rows], []))
                continue
            seen = known.setdefault(kind, set())
            if len(seen) > known_cap:
                seen.clear()
            key = spec.key[0]
            latest: dict[Any, Any] = {}
            for row in rows:
                current = latest.get(row[key])
                if current is None or row["version"] > current["version"]:
                    latest[row[key]] = row
            fresh, old = [], []
            for k, row in latest.items():
                if k in seen:
                    old.append(to_tuple(row))
                else:
                    fresh.append(to_tuple(row))
                    seen.add(k)
            groups.append((spec, fresh, old))
        if by_kind:
            raise BadRecord(f"unknown record kinds {sorted(map(str, by_kind))}")
        return groups
    except BadRecord:
        raise
    except Exception as exc:
        raise BadRecord(f"{type(exc).__name__}: {exc}") from exc
