"""Every SQL statement the daemon runs, parameterised (never a value pasted into SQL).

Two parts:

- :data:`TABLES`: for each audit :class:`~core.records.RecordKind`, the target table,
  its columns (exactly the keys the row builders of core/records.py emit) and its
  idempotency rule. The audit writer stages a batch with ``COPY`` into a per-session
  temporary table and moves it with one ``INSERT ... SELECT ... ON CONFLICT``; the same
  rules serve single-row writes. ``orders`` / ``positions`` keep the newest ``version``
  (an older snapshot arriving late changes nothing); the others insert once per key.
- :class:`Repository`: reads and writes for the rest of the daemon and the CLI: single
  audit rows, listings, position ids, the intake queues and the retention purge.

``jsonb`` values are sent as JSON text (``$n::text::jsonb``), encoded by
:func:`database.codec.dumps_json`, so the SQL works whatever codecs a connection has.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg

from core.records import AuditRecord, RecordKind
from database.codec import dumps_json

INTAKE_CHANNEL = "trader_intake"
FINAL_INTAKE_STATUSES = frozenset({"done", "rejected", "failed"})
TERMINAL_ORDER_STATUSES = ("FILLED", "CANCELLED", "REJECTED", "EXPIRED", "FAILED")
TERMINAL_POSITION_STATUSES = ("closed", "rolled_back", "failed")
# The intake queues, in the order a tie on created_at is broken.
_INTAKE_TABLES = (("signal", "monitoring.signals"), ("command", "monitoring.commands"))


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
            ("event_key",),
            json_columns=frozenset({"detail"}),
        ),
        _spec(
            RecordKind.TRADE,
            """signal_id position_id account exchange symbol side order_type quantity
            price executed_qty average_price order_id client_order_id trade_id status fee
            fee_currency realized_pnl executed_at""",
            ("account", "exchange", "symbol", "trade_id"),
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
            ("event_key",),
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
                table, schema_name=schema, records=rows, columns=spec.columns, timeout=timeout_s
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
        spec.stage, records=rows, columns=spec.columns, timeout=timeout_s
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


def _status_count(status: str) -> int:
    """The row count of an ``INSERT 0 n`` / ``UPDATE n`` / ``DELETE n`` status."""
    return int(status.rsplit(" ", 1)[-1])


class Repository:
    """Queries over a pool. Methods return plain dicts (column name -> value)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- audit rows, one at a time ---------------------------------------------------
    async def write(self, kind: RecordKind, row: Mapping[str, Any]) -> bool:
        """Write one audit row with its idempotency rule; True if a row changed."""
        spec = TABLES[kind]
        status = await self.pool.execute(spec.insert_one, *spec.to_tuple(row))
        return _status_count(status) > 0

    async def upsert_order(self, row: Mapping[str, Any]) -> bool:
        """Insert or update by ``client_order_id``; an older ``version`` changes nothing."""
        return await self.write(RecordKind.ORDER, row)

    async def append_order_event(self, row: Mapping[str, Any]) -> bool:
        return await self.write(RecordKind.ORDER_EVENT, row)

    async def insert_trade(self, row: Mapping[str, Any]) -> bool:
        """Insert one execution; a trade already known (account, exchange, symbol, trade_id)
        is kept."""
        return await self.write(RecordKind.TRADE, row)

    async def upsert_position(self, row: Mapping[str, Any]) -> bool:
        return await self.write(RecordKind.POSITION, row)

    async def insert_event(self, row: Mapping[str, Any]) -> bool:
        return await self.write(RecordKind.EVENT, row)

    async def insert_position_update(self, row: Mapping[str, Any]) -> bool:
        return await self.write(RecordKind.POSITION_UPDATE, row)

    # -- positions and orders --------------------------------------------------------
    async def reserve_position_ids(self, n: int = 1) -> list[int]:
        """``n`` fresh position ids from the sequence (ids are never reused)."""
        rows = await self.pool.fetch(
            "SELECT nextval('monitoring.positions_id_seq') AS id FROM generate_series(1, $1)", n
        )
        return [r["id"] for r in rows]

    async def get_position(self, position_id: int) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM monitoring.positions WHERE id = $1", position_id
        )
        return dict(row) if row else None

    async def open_positions(self, account: str | None = None) -> list[dict[str, Any]]:
        """Non-terminal positions (of ``account``, or of all), oldest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM monitoring.positions WHERE status <> ALL($1::text[]) "
            "AND ($2::text IS NULL OR account = $2) ORDER BY id",
            TERMINAL_POSITION_STATUSES,
            account,
        )
        return [dict(r) for r in rows]

    async def positions(self, account: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` positions, any status, newest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM monitoring.positions WHERE ($1::text IS NULL OR account = $1) "
            "ORDER BY id DESC LIMIT $2",
            account,
            limit,
        )
        return [dict(r) for r in rows]

    async def get_order(self, client_order_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM monitoring.orders WHERE client_order_id = $1", client_order_id
        )
        return dict(row) if row else None

    async def find_order(self, order_ref: str) -> dict[str, Any] | None:
        """An order by client id, or else by exchange id (the CLI accepts both)."""
        row = await self.pool.fetchrow(
            "SELECT * FROM monitoring.orders WHERE client_order_id = $1 OR order_id = $1 "
            "ORDER BY (client_order_id = $1) DESC, id DESC LIMIT 1",
            order_ref,
        )
        return dict(row) if row else None

    async def live_orders(self, account: str | None = None) -> list[dict[str, Any]]:
        """Orders in a non-terminal status (of ``account``, or of all), oldest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM monitoring.orders WHERE status <> ALL($1::text[]) "
            "AND ($2::text IS NULL OR account = $2) ORDER BY id",
            TERMINAL_ORDER_STATUSES,
            account,
        )
        return [dict(r) for r in rows]

    async def orders(self, account: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` orders, any status, newest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM monitoring.orders WHERE ($1::text IS NULL OR account = $1) "
            "ORDER BY id DESC LIMIT $2",
            account,
            limit,
        )
        return [dict(r) for r in rows]

    async def orders_of_position(self, position_id: int) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM monitoring.orders WHERE position_id = $1 ORDER BY id", position_id
        )
        return [dict(r) for r in rows]

    async def order_events(self, client_order_id: str) -> list[dict[str, Any]]:
        """An order's history in version order."""
        rows = await self.pool.fetch(
            "SELECT * FROM monitoring.order_events WHERE client_order_id = $1 ORDER BY version, id",
            client_order_id,
        )
        return [dict(r) for r in rows]

    async def trades_of_position(self, position_id: int) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM monitoring.trades WHERE position_id = $1 ORDER BY executed_at, id",
            position_id,
        )
        return [dict(r) for r in rows]

    async def purge_position_updates(self, retention: timedelta = timedelta(days=7)) -> int:
        """Delete position samples older than ``retention``; return how many went."""
        count = await self.pool.fetchval(
            "SELECT monitoring.purge_position_updates($1::interval)", retention
        )
        return int(count or 0)

    # -- intake ----------------------------------------------------------------------
    async def insert_signal(self, **fields: Any) -> int:
        """Insert a signal row (column=value) and return its id."""
        return await self._insert_returning_id("monitoring.signals", fields)

    async def insert_command(
        self, kind: str, payload: Mapping[str, Any], account: str | None = None
    ) -> int:
        """Insert a command row and return its id."""
        return await self._insert_returning_id(
            "monitoring.commands", {"kind": kind, "payload": dict(payload), "account": account}
        )

    async def claim_signals(
        self, account: str, limit: int = 10, *, include_unassigned: bool = True
    ) -> list[dict[str, Any]]:
        """Take up to ``limit`` new signals of ``account`` (and, by default, those without
        an account, which become ``account``'s). Concurrent claimers never get the same row.
        """
        return await self._claim("monitoring.signals", account, limit, include_unassigned)

    async def claim_commands(
        self, account: str, limit: int = 10, *, include_unassigned: bool = True
    ) -> list[dict[str, Any]]:
        """As :meth:`claim_signals`, for ``monitoring.commands``."""
        return await self._claim("monitoring.commands", account, limit, include_unassigned)

    async def claim_next_request(
        self, account: str, *, include_unassigned: bool = True
    ) -> tuple[str, dict[str, Any]] | None:
        """Take the oldest new request of ``account``, signal or command: ``("signal",
        row)``, ``("command", row)``, or None when both queues are empty.

        One row at a time, on purpose: a row is ``processing`` only while it is being
        handled, so after a crash the one row in hand is the only one a restart must
        treat as interrupted; everything else is still ``new`` and simply runs.
        Concurrent claimers never get the same row (``FOR UPDATE SKIP LOCKED``).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            heads: list[tuple[Any, int, str, int]] = []
            for rank, (kind, table) in enumerate(_INTAKE_TABLES):
                head = await conn.fetchrow(
                    f"SELECT id, created_at FROM {table} "
                    "WHERE status = 'new' AND (account = $1 OR ($2 AND account IS NULL)) "
                    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    account,
                    include_unassigned,
                )
                if head is not None:
                    heads.append((head["created_at"], rank, kind, int(head["id"])))
            if not heads:
                return None
            # Oldest first across both queues; the row not taken is unlocked at commit.
            _, rank, kind, row_id = min(heads)
            row = await conn.fetchrow(
                f"UPDATE {_INTAKE_TABLES[rank][1]} SET status = 'processing', "
                "claimed_at = now(), account = $2 WHERE id = $1 RETURNING *",
                row_id,
                account,
            )
        return kind, dict(row)

    async def finish_signal(
        self,
        signal_id: int,
        status: str,
        reason: str | None = None,
        position_id: int | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record the outcome of a claimed signal. False if it was not ``processing``."""
        _check_final(status)
        outcome = await self.pool.execute(
            "UPDATE monitoring.signals SET status = $2, reason = $3, "
            "position_id = coalesce($4, position_id), result = $5::text::jsonb, "
            "processed_at = now() WHERE id = $1 AND status = 'processing'",
            signal_id,
            status,
            reason,
            position_id,
            None if not result else dumps_json(dict(result)),
        )
        return _status_count(outcome) == 1

    async def finish_command(
        self,
        command_id: int,
        status: str,
        reason: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record the outcome of a claimed command. False if it was not ``processing``."""
        _check_final(status)
        outcome = await self.pool.execute(
            "UPDATE monitoring.commands SET status = $2, reason = $3, "
            "result = $4::text::jsonb, processed_at = now() "
            "WHERE id = $1 AND status = 'processing'",
            command_id,
            status,
            reason,
            None if result is None else dumps_json(dict(result)),
        )
        return _status_count(outcome) == 1

    async def get_signal(self, signal_id: int) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM monitoring.signals WHERE id = $1", signal_id)
        return dict(row) if row else None

    async def get_command(self, command_id: int) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM monitoring.commands WHERE id = $1", command_id
        )
        return dict(row) if row else None

    async def _claim(
        self, table: str, account: str, limit: int, include_unassigned: bool
    ) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"UPDATE {table} SET status = 'processing', claimed_at = now(), account = $1 "
            f"WHERE id IN (SELECT id FROM {table} "
            f"WHERE status = 'new' AND (account = $1 OR ($3 AND account IS NULL)) "
            f"ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING *",
            account,
            limit,
            include_unassigned,
        )
        return sorted((dict(r) for r in rows), key=lambda r: int(r["id"]))

    async def _insert_returning_id(self, table: str, fields: Mapping[str, Any]) -> int:
        names = list(fields)
        if not names or not all(n.isidentifier() for n in names):
            raise ValueError(f"bad column names for {table}: {names!r}")
        values = [dumps_json(v) if isinstance(v, Mapping) else v for v in fields.values()]
        params = ", ".join(
            f"${i}::text::jsonb" if isinstance(v, Mapping) else f"${i}"
            for i, v in enumerate(fields.values(), start=1)
        )
        row_id = await self.pool.fetchval(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({params}) RETURNING id", *values
        )
        return int(row_id)


def _check_final(status: str) -> None:
    if status not in FINAL_INTAKE_STATUSES:
        raise ValueError(f"outcome status must be one of {sorted(FINAL_INTAKE_STATUSES)}")
