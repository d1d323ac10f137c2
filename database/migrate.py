"""Forward-only schema migrations: ``migrations/*.sql`` applied in filename order, once.

Each applied file is recorded in ``monitoring.schema_migrations`` (name, checksum,
applied_at). The whole run holds a PostgreSQL advisory lock, so two migrators started
together (two daemons, a daemon and ``python main.py migrate``) are safe: the second
waits, then finds nothing left to do. Each file runs in its own transaction, so a
failing migration leaves the schema as the previous one left it.

A file already applied whose content has changed since is refused (its checksum no
longer matches): migrations are history, and a new change is a new file. The one
exception is :data:`EARLIER_CHECKSUMS`: earlier wordings of a file whose SQL comments
alone were reworded, which a database may have recorded and which are the same schema.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from config.logging import get_logger
from database.errors import DatabaseError, translate

log = get_logger("database.migrate")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# An arbitrary constant that names "the trader's schema migration" among advisory locks.
MIGRATION_LOCK_KEY = 0x7472_6164_6D69_67  # "tradmig"

# Checksums of earlier wordings of a migration, accepted as that migration: files whose
# SQL comments alone changed after release. 0001's first line and the intake heading
# named a design file that was never part of the repository; they name
# docs/architecture.md now. Every statement is byte for byte as before.
EARLIER_CHECKSUMS: dict[str, frozenset[str]] = {
    "0001_monitoring.sql": frozenset(
        {"1e5e55dd3f982e9b705306035b8a46a05d0575e8ee0950f72d820410edd307ba"}
    ),
}

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS monitoring;
CREATE TABLE IF NOT EXISTS monitoring.schema_migrations (
    name        text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


class MigrationError(DatabaseError):
    """A migration failed, or an applied one was edited afterwards."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One ``NNNN_name.sql`` file."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def matches(self, recorded: str) -> bool:
        """True when ``recorded`` (a database's checksum of this file) is this file, in its
        current wording or an earlier one of :data:`EARLIER_CHECKSUMS`."""
        return recorded == self.checksum or recorded in EARLIER_CHECKSUMS.get(self.name, ())


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of ``directory`` in filename order."""
    return [
        Migration(path.name, path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.sql"))
    ]


async def migrate(target: asyncpg.Pool | str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations; return the names applied (empty when up to date).

    ``target`` is a pool or a URL. Raises :class:`MigrationError` naming the file.
    """
    migrations = discover(directory)
    if isinstance(target, str):
        try:
            conn = await asyncpg.connect(target, timeout=30)
        except Exception as exc:
            raise translate(exc, target) from None
        try:
            return await _migrate(conn, migrations)
        finally:
            await conn.close()
    async with target.acquire() as pooled:
        return await _migrate(pooled, migrations)


async def _migrate(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    applied: list[str] = []
    try:
        # Session-level lock: held across the per-file transactions below.
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    except Exception as exc:
        raise translate(exc) from None
    try:
        await _run_bootstrap(conn)
        done = {
            r["name"]: r["checksum"]
            for r in await conn.fetch("SELECT name, checksum FROM monitoring.schema_migrations")
        }
        for migration in migrations:
            if migration.name in done:
                if not migration.matches(done[migration.name]):
                    raise MigrationError(
                        f"migration {migration.name} was changed after it was applied"
                    )
                continue
            await _apply(conn, migration)
            applied.append(migration.name)
    finally:
        # If the session is gone, its lock went with it.
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    if applied:
        log.info("migrations_applied", names=applied)
    return applied


async def _run_bootstrap(conn: asyncpg.Connection) -> None:
    try:
        await conn.execute(_BOOTSTRAP)
    except Exception as exc:
        raise translate(exc) from None


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO monitoring.schema_migrations (name, checksum) VALUES ($1, $2)",
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migration {migration.name} failed: {exc}") from None
    except Exception as exc:
        raise translate(exc) from None
    log.info("migration_applied", name=migration.name)
