"""Every SQL statement the daemon runs, parameterised (never a value pasted into SQL).

:class:`Repository` holds the reads and writes for the rest of the daemon and the CLI:
single audit rows, listings, position ids and the intake queues.
How each audit record kind maps to its table (and the batch writes) is
database/audit_tables.py.

``jsonb`` values are sent as JSON text (``$n::text::jsonb``), encoded by
:func:`database.codec.dumps_json`, so the SQL works whatever codecs a connection has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from core.records import RecordKind
from database.audit_tables import TABLES
from database.codec import dumps_json

INTAKE_CHANNEL = "trader_intake"
FINAL_INTAKE_STATUSES = frozenset({"done", "rejected", "failed"})
TERMINAL_ORDER_STATUSES = ("FILLED", "CANCELLED", "REJECTED", "EXPIRED", "FAILED")
TERMINAL_POSITION_STATUSES = ("closed", "rolled_back", "failed")
# The intake queues, in the order a tie on created_at is broken.
_INTAKE_TABLES = (("signal", "monitoring.signals"), ("command", "monitoring.commands"))


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
