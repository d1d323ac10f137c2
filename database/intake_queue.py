"""Claiming intake rows: urgent commands first, junk rejected set-wise.

One claim is one transaction over a batch of ``new`` rows locked ``FOR UPDATE SKIP
LOCKED``. Every row in the batch that the shared check refuses (``screen``: the pure
check of core/request_check.py, through the handler) is ``rejected`` in the same
transaction by one ``UPDATE ... FROM unnest(...)``, with the words the handler would
have used; of the rows that pass, the first in line becomes ``processing`` and is
returned; the others stay ``new``, untouched. So a flood of malformed rows costs one
round trip per batch instead of two per row, and the guarantee the daemon's crash
recovery rests on still holds: only the request in hand is ever ``processing``.

The line: ``close_position`` and ``cancel_order`` commands (they take risk off) before
anything else, oldest first; then signals and the other commands, oldest first across
both tables. A batch that came back full bounds how far the merged line may be trusted
(rows past its last one were not looked at), so a passing row beyond that bound waits
for the next claim rather than jumping the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from core.intake import Outcome
from core.request_check import URGENT_KINDS

log = structlog.get_logger("intake")

BATCH = 256
Screen = Callable[[str, Mapping[str, Any]], Outcome | None]

_MINE = "status = 'new' AND (account = $1 OR account IS NULL)"
# Spelled out (not a parameter) so the planner uses the partial index of migration 0010.
_URGENT = "kind IN ({})".format(", ".join(f"'{k}'" for k in URGENT_KINDS))


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim's work: the rows rejected on the way, and the row taken (if any)."""

    rejected: list[tuple[str, int, str]]  # (kind, id, reason)
    taken: tuple[str, dict[str, Any]] | None


def _key(kind: str, row: Mapping[str, Any]) -> tuple[Any, int, int]:
    return (row["created_at"], 0 if kind == "signal" else 1, int(row["id"]))


async def claim(
    conn: asyncpg.Connection, account: str, screen: Screen, batch: int = BATCH
) -> Claim:
    """Reject what the batch's junk is, take the next good request (see the module)."""
    async with conn.transaction():
        urgent = await conn.fetch(
            f"SELECT * FROM monitoring.commands WHERE {_MINE} AND {_URGENT} "
            "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            account,
            batch,
        )
        rejected, taken = _sift([("command", dict(r)) for r in urgent], None, screen)
        if taken is None and len(urgent) < batch:
            signals = await conn.fetch(
                f"SELECT * FROM monitoring.signals WHERE {_MINE} "
                "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                account,
                batch,
            )
            commands = await conn.fetch(
                f"SELECT * FROM monitoring.commands WHERE {_MINE} AND NOT {_URGENT} "
                "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                account,
                batch,
            )
            rows = [("signal", dict(r)) for r in signals] + [("command", dict(r)) for r in commands]
            rows.sort(key=lambda item: _key(*item))
            bounds = [_key(kind, rs[-1]) for kind, rs in _full(signals, commands, batch)]
            more, taken = _sift(rows, min(bounds) if bounds else None, screen)
            rejected += more
        await _reject(conn, account, rejected)
        if taken is not None:
            kind, row = taken
            table = "monitoring.signals" if kind == "signal" else "monitoring.commands"
            claimed = await conn.fetchrow(
                f"UPDATE {table} SET status = 'processing', claimed_at = now(), account = $2 "
                "WHERE id = $1 RETURNING *",
                row["id"],
                account,
            )
            taken = (kind, dict(claimed))
    return Claim(rejected, taken)


def _full(
    signals: list[asyncpg.Record], commands: list[asyncpg.Record], batch: int
) -> list[tuple[str, list[asyncpg.Record]]]:
    return [(k, rs) for k, rs in (("signal", signals), ("command", commands)) if len(rs) >= batch]


def _sift(
    rows: list[tuple[str, dict[str, Any]]], bound: Any, screen: Screen
) -> tuple[list[tuple[str, int, str]], tuple[str, dict[str, Any]] | None]:
    """Screen every row (in line order); the refused ones, and the first that passed
    within ``bound`` (None: no bound)."""
    rejected: list[tuple[str, int, str]] = []
    taken: tuple[str, dict[str, Any]] | None = None
    for kind, row in rows:
        refusal = screen(kind, row)
        if refusal is not None:
            rejected.append((kind, int(row["id"]), refusal.reason or "rejected"))
        elif taken is None and (bound is None or _key(kind, row) <= bound):
            taken = (kind, row)
    return rejected, taken


async def _reject(
    conn: asyncpg.Connection, account: str, rejected: list[tuple[str, int, str]]
) -> None:
    """Write every refusal of the batch, one statement per table."""
    for kind, table in (("signal", "monitoring.signals"), ("command", "monitoring.commands")):
        ids = [row_id for k, row_id, _ in rejected if k == kind]
        if not ids:
            continue
        reasons = [reason for k, _, reason in rejected if k == kind]
        await conn.execute(
            f"UPDATE {table} AS t SET status = 'rejected', reason = r.reason, "
            "claimed_at = now(), processed_at = now(), account = $3 "
            "FROM unnest($1::bigint[], $2::text[]) AS r(id, reason) "
            "WHERE t.id = r.id AND t.status = 'new'",
            ids,
            reasons,
            account,
        )
