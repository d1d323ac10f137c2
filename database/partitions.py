"""Upkeep of the time-partitioned audit tables (migration 0012).

``order_events``, ``trades`` and ``events`` have one partition per UTC month,
``position_updates`` one per UTC day. The database does the work
(``monitoring.maintain_audit_partitions``): it creates the partitions a few steps ahead
and applies each table's retention from ``monitoring.audit_partitioning``, the one
setting every daemon on the database shares. This module runs it a table at a time, in
the audit writer's order (a short transaction each, never two tables' locks at once),
and says what it did.

The daemon runs it at start and hourly. A table whose lock could not be had within the
function's ``lock_timeout`` (a long report holding the table) is left for the next pass:
the partitions are made weeks ahead, and a row whose partition is missing waits in the
table's default partition, so a pass skipped costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from config.logging import get_logger
from database.errors import translate

log = get_logger("database.partitions")

_TABLES = "SELECT table_name FROM monitoring.audit_partitioning ORDER BY write_order"
_MAINTAIN = "SELECT * FROM monitoring.maintain_audit_partitions($1, coalesce($2, now()))"


@dataclass(frozen=True, slots=True)
class PartitionChange:
    """One thing a pass did: a partition ``created`` or ``dropped`` (with the rows it
    held), or the rows past the retention ``deleted`` from the rest of the table."""

    table: str
    action: str
    partition: str | None
    rows: int | None


async def maintain_partitions(
    pool: asyncpg.Pool, *, at: datetime | None = None
) -> list[PartitionChange]:
    """One maintenance pass over every partitioned audit table, as of ``at`` (now)."""
    try:
        tables = [r["table_name"] for r in await pool.fetch(_TABLES)]
    except Exception as exc:
        raise translate(exc) from None
    changes: list[PartitionChange] = []
    for table in tables:
        try:
            rows = await pool.fetch(_MAINTAIN, table, at)
        except asyncpg.LockNotAvailableError:
            log.warning(
                "audit_partitions_deferred",
                table=table,
                reason="its lock was held over 2 s (a long query?); the next pass retries",
            )
            continue
        except Exception as exc:
            raise translate(exc) from None
        for row in rows:
            change = PartitionChange(
                row["table_name"], row["action"], row["partition_name"], row["row_count"]
            )
            log.info(
                f"audit_partition_{change.action}",
                table=change.table,
                partition=change.partition,
                rows=change.rows,
            )
            changes.append(change)
    return changes
