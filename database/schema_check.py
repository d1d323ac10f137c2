"""Schema drift, caught before trading: is this database one this daemon can write to?

Two questions, asked at start (cli/service.py) and by ``main.py check``:

- :func:`newer_migrations`: migrations applied to the database that this daemon does not
  ship (a newer version migrated it). The sets of names are compared, never a number, so
  any migration files shipped side by side are fine.
- :func:`schema_mismatches`: for every audit table, a column the writer needs that is
  missing, or a ``NOT NULL`` column without a default that the writer does not fill
  (every row it writes would be refused).
"""

from __future__ import annotations

import asyncpg

from database.audit_tables import TABLES
from database.errors import DatabaseError
from database.migrate import discover


class SchemaDrift(DatabaseError):
    """The database's schema is not the one this daemon writes; it refuses to start."""


async def newer_migrations(pool: asyncpg.Pool) -> list[str]:
    """Applied migrations this daemon does not know, oldest first."""
    exists = await pool.fetchval("SELECT to_regclass('monitoring.schema_migrations') IS NOT NULL")
    if not exists:
        return []
    applied = {r["name"] for r in await pool.fetch("SELECT name FROM monitoring.schema_migrations")}
    return sorted(applied - {m.name for m in discover()})


async def schema_mismatches(pool: asyncpg.Pool) -> list[str]:
    """One line per column problem of the audit tables (empty when the writer fits)."""
    rows = await pool.fetch(
        "SELECT table_name, column_name, is_nullable, column_default, is_identity "
        "FROM information_schema.columns WHERE table_schema = 'monitoring'"
    )
    columns: dict[str, dict[str, asyncpg.Record]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], {})[row["column_name"]] = row
    problems = []
    for spec in TABLES.values():
        name = spec.table.split(".", 1)[1]
        present = columns.get(name)
        if present is None:
            problems.append(f"{spec.table} is missing")
            continue
        missing = [c for c in spec.columns if c not in present]
        if missing:
            problems.append(f"{spec.table} lacks column {', '.join(missing)} the writer needs")
        unfilled = [
            c
            for c, r in present.items()
            if c not in spec.columns
            and r["is_nullable"] == "NO"
            and r["column_default"] is None
            and r["is_identity"] != "YES"
        ]
        if unfilled:
            problems.append(
                f"{spec.table}.{', '.join(unfilled)} is NOT NULL without a default and the"
                " writer does not fill it"
            )
    return problems


def newer_line(unknown: list[str]) -> str:
    return (
        f"database was migrated by a newer version: migration {unknown[-1]} is not known"
        " to this daemon"
    )


async def refuse_newer(pool: asyncpg.Pool) -> None:
    """Raise :class:`SchemaDrift` (one line) if a newer version migrated the database."""
    if unknown := await newer_migrations(pool):
        raise SchemaDrift(newer_line(unknown))


async def refuse_mismatch(pool: asyncpg.Pool) -> None:
    """Raise :class:`SchemaDrift` (one line) if the audit tables do not fit the writer."""
    if problems := await schema_mismatches(pool):
        raise SchemaDrift(f"database schema does not fit this daemon: {'; '.join(problems)}")
