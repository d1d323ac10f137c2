"""Migrations: applied once, in order, safely under concurrency."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import asyncpg
import pytest

from database.embedded import EmbeddedPostgres
from database.migrate import (
    EARLIER_CHECKSUMS,
    MIGRATIONS_DIR,
    MigrationError,
    discover,
    migrate,
)

# The two comment lines of 0001 as released (they named a design file outside the
# repository) and as they read now; nothing else in the file changed.
_REWORDED_0001 = (
    (
        "-- 0001: the monitoring schema (DESIGN.md section 5).",
        "-- 0001: the monitoring schema (docs/architecture.md, 'Schema').",
    ),
    (
        "-- -- intake: signals and commands (DESIGN.md section 7) -------------------------------",
        "-- -- intake: signals and commands (docs/architecture.md, 'Data flow') -----------------",
    ),
)


async def test_migrating_twice_is_a_no_op(migrated_url: str) -> None:
    """A second run applies nothing and leaves one record per migration file."""
    assert await migrate(migrated_url) == []
    conn = await asyncpg.connect(migrated_url)
    try:
        rows = await conn.fetch("SELECT name, checksum FROM monitoring.schema_migrations")
    finally:
        await conn.close()
    expected = {m.name: m.checksum for m in discover()}
    assert {r["name"]: r["checksum"] for r in rows} == expected


async def test_concurrent_migrators_end_with_one_schema(embedded_pg: EmbeddedPostgres) -> None:
    """Two migrators at once: one applies everything, the other waits and finds nothing."""
    results = await asyncio.gather(migrate(embedded_pg.url), migrate(embedded_pg.url))
    names = [m.name for m in discover()]
    assert sorted(results, key=len) == [[], names]
    conn = await asyncpg.connect(embedded_pg.url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM monitoring.schema_migrations")
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'monitoring' AND c.relkind IN ('r', 'p')"
            " AND NOT c.relispartition"
        )
    finally:
        await conn.close()
    assert count == len(names)
    # 8 of migration 0001, daemons (0010), audit_partitioning (0012), the two per-day
    # summaries (0013), schema_migrations; the partitions of the four partitioned tables
    # are not tables of their own.
    assert tables == 13


async def test_changed_migration_is_refused(embedded_pg: EmbeddedPostgres, tmp_path: Path) -> None:
    """Editing a migration after it was applied stops the run with a clear error."""
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE monitoring.a (x int);")
    assert await migrate(embedded_pg.url, tmp_path) == ["0001_a.sql"]
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE monitoring.a (x bigint);")
    with pytest.raises(MigrationError, match=r"0001_a\.sql was changed"):
        await migrate(embedded_pg.url, tmp_path)


async def test_failing_migration_rolls_back_alone(
    embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    """A broken file fails by name; the ones before it stay applied, it leaves no trace."""
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE monitoring.ok (x int);")
    (tmp_path / "0002_bad.sql").write_text(
        "CREATE TABLE monitoring.half (x int); SELECT no_such_function();"
    )
    with pytest.raises(MigrationError, match=r"0002_bad\.sql failed"):
        await migrate(embedded_pg.url, tmp_path)
    conn = await asyncpg.connect(embedded_pg.url)
    try:
        applied = await conn.fetch("SELECT name FROM monitoring.schema_migrations")
        half = await conn.fetchval("SELECT to_regclass('monitoring.half')")
    finally:
        await conn.close()
    assert [r["name"] for r in applied] == ["0001_ok.sql"]
    assert half is None


def test_migrations_are_found_beside_the_package() -> None:
    """The migrations directory is located relative to the code, not the working dir."""
    assert MIGRATIONS_DIR.is_dir()
    assert discover()[0].name == "0001_monitoring.sql"


async def test_a_database_that_applied_0001_in_its_earlier_wording_migrates(
    embedded_pg: EmbeddedPostgres,
) -> None:
    """0001 as released differs from today's file in two comment lines only; a database
    that recorded its checksum then migrates with nothing to do, and a checksum that is
    neither wording is still refused."""
    current = (MIGRATIONS_DIR / "0001_monitoring.sql").read_text(encoding="utf-8")
    released = current
    for old, new in _REWORDED_0001:
        assert current.count(new) == 1
        released = released.replace(new, old)
    earlier = hashlib.sha256(released.encode()).hexdigest()
    assert frozenset({earlier}) == EARLIER_CHECKSUMS["0001_monitoring.sql"]
    assert await migrate(embedded_pg.url) == [m.name for m in discover()]
    conn = await asyncpg.connect(embedded_pg.url)
    try:
        await conn.execute(
            "UPDATE monitoring.schema_migrations SET checksum = $1 WHERE name = $2",
            earlier,
            "0001_monitoring.sql",
        )
        assert await migrate(embedded_pg.url) == []
        await conn.execute(
            "UPDATE monitoring.schema_migrations SET checksum = $1 WHERE name = $2",
            "0" * 64,
            "0001_monitoring.sql",
        )
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match=r"0001_monitoring\.sql was changed"):
        await migrate(embedded_pg.url)
