"""The audit trail when the database refuses: one bad record, dead letters and their
replay, a schema that refuses every row, schema drift at start. Real PostgreSQL; every
test compares the rows in the database with the records given: nothing lost or doubled."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from cli.audit_replay import replay_dead_letters
from cli.systemd import audit_status
from core.audit_gate import require_trail
from core.errors import AuditUnavailable
from core.records import AuditRecord, RecordKind, event_record
from database.audit import AuditWriter
from database.audit_tables import TABLES, merge_statements
from database.dead_letters import ARCHIVE_FILE, DEAD_LETTER_FILE
from database.embedded import EmbeddedPostgres
from database.migrate import migrate
from database.pool import create_pool
from database.schema_check import (
    SchemaDrift,
    refuse_mismatch,
    refuse_newer,
    schema_mismatches,
)
from tests.integration.audit_helpers import until


def events(n: int, tag: str) -> list[AuditRecord]:
    return [event_record(tag, f"{tag} {i}", event_key=f"{tag}-{i}") for i in range(n)]


async def count(pool: asyncpg.Pool, tag: str) -> tuple[int, int]:
    """(rows of kind ``tag``, distinct keys among them)."""
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT event_key) AS keys FROM monitoring.events "
        "WHERE kind = $1",
        tag,
    )
    return row["n"], row["keys"]


async def test_one_bad_record_never_condemns_its_batch(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A batch of 500 with one record the database refuses: 499 written, 1 dead-lettered
    (with an audit_record_refused event, and its count and age exposed)."""
    tag = f"batch-{uuid.uuid4().hex[:8]}"
    records = events(500, tag)
    bad = AuditRecord(records[250].kind, {**records[250].row, "severity": "bogus"})
    records[250] = bad
    async with AuditWriter(pool, tmp_path, batch_size=500) as audit:
        for rec in records:
            audit.record(rec)
        await audit.drain(timeout_s=30)
        assert audit.dead_letters == 1
        assert audit.dead_letter_count == 1
        assert audit.dead_letter_oldest_age_s is not None
        assert "dead_letters=1" in audit_status(audit)
        assert not audit.degraded
    assert await count(pool, tag) == (499, 499)
    dead = [json.loads(x) for x in (tmp_path / DEAD_LETTER_FILE).read_text().splitlines()]
    assert [d["r"]["event_key"] for d in dead] == [f"{tag}-250"]
    refused = await pool.fetchval(
        "SELECT count(*) FROM monitoring.events WHERE kind = 'audit_record_refused' "
        "AND detail->>'event_key' = $1",
        f"{tag}-250",
    )
    assert refused == 1


@pytest.mark.slow
async def test_dead_letters_replay_after_the_fix_idempotently(
    embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Dead letters stay (and say why) while the cause is there, go in once it is fixed,
    are archived, never doubled by a second replay, and their count follows."""
    await migrate(embedded_pg.url)
    pool = await create_pool(embedded_pg.url, min_size=1, max_size=4)
    try:
        await pool.execute(
            "ALTER TABLE monitoring.events ADD CONSTRAINT no_poison "
            "CHECK (message NOT LIKE '%poison%')"
        )
        records = events(100, "replay")
        for i in (3, 50, 97):
            records[i] = AuditRecord(records[i].kind, {**records[i].row, "message": "poison"})
        async with AuditWriter(pool, tmp_path, batch_size=40) as audit:
            for rec in records:
                audit.record(rec)
            await audit.drain(timeout_s=30)
            assert audit.dead_letter_count == 3
            assert await count(pool, "replay") == (97, 97)

            written, why = await replay_dead_letters(pool, tmp_path)
            assert (written, len(why)) == (0, 3)
            assert all("no_poison" in line for line in why)
            assert audit.dead_letter_count == 3  # still there, never deleted

            await pool.execute("ALTER TABLE monitoring.events DROP CONSTRAINT no_poison")
            written, why = await replay_dead_letters(pool, tmp_path)
            assert (written, why) == (3, [])
            assert audit.dead_letter_count == 0
            assert audit.dead_letter_oldest_age_s is None
            assert await replay_dead_letters(pool, tmp_path) == (0, [])
        assert await count(pool, "replay") == (100, 100)
        assert len((tmp_path / ARCHIVE_FILE).read_text().splitlines()) == 3
        assert (tmp_path / DEAD_LETTER_FILE).read_text() == ""
    finally:
        await pool.close()


@pytest.mark.slow
async def test_a_schema_that_refuses_every_row_degrades_and_resumes(
    embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    """A NOT NULL column the writer does not fill: no dead letters; records held in the
    spool, the trail degraded (new risk refused); back by itself once the column is
    nullable again, with all 2,000 records written once."""
    await migrate(embedded_pg.url)
    pool = await create_pool(embedded_pg.url, min_size=1, max_size=4)
    try:
        async with AuditWriter(
            pool, tmp_path, batch_size=500, retry_min_s=0.05, retry_max_s=0.2
        ) as audit:
            await pool.execute("TRUNCATE monitoring.events")
            await pool.execute("ALTER TABLE monitoring.events ADD COLUMN host text NOT NULL")
            for rec in events(2000, "drift"):
                audit.record(rec)
            await until(lambda: audit.degraded)
            await audit.flush(timeout_s=20)
            assert "host" in (audit.degraded_reason or "")
            assert audit.dead_letters == 0 and audit.dead_letter_count == 0
            assert audit.spool_bytes > 0
            assert "AUDIT DEGRADED" in audit_status(audit)
            with pytest.raises(AuditUnavailable, match="audit trail unavailable"):
                require_trail(audit)
            assert not (tmp_path / DEAD_LETTER_FILE).exists()

            await pool.execute("ALTER TABLE monitoring.events ALTER COLUMN host DROP NOT NULL")
            await until(lambda: not audit.degraded)
            await audit.drain(timeout_s=30)
            require_trail(audit)  # new risk accepted again
        assert await count(pool, "drift") == (2000, 2000)
        kinds = {r["kind"] for r in await pool.fetch("SELECT kind FROM monitoring.events")}
        assert {"audit_degraded", "audit_recovered"} <= kinds
        assert not (tmp_path / DEAD_LETTER_FILE).exists()
    finally:
        await pool.close()


async def test_a_table_missing_a_column_gets_no_one_statement_write(
    embedded_pg: EmbeddedPostgres,
) -> None:
    """A table that lost a column the writer fills (renamed under a running daemon) gets
    no one-statement (JSON) write, so its rows take the COPY path whose refusal names the
    column; the other tables keep theirs."""
    await migrate(embedded_pg.url)
    conn = await asyncpg.connect(embedded_pg.url)
    try:
        await conn.execute("ALTER TABLE monitoring.events RENAME COLUMN severity TO level")
        statements = await merge_statements(conn)
    finally:
        await conn.close()
    assert set(TABLES) - {RecordKind.EVENT} == set(statements)


@pytest.mark.slow
async def test_schema_drift_is_refused_at_start(embedded_pg: EmbeddedPostgres) -> None:
    """A migration this version does not ship, a column the writer needs gone, or a NOT
    NULL column it does not fill: each named in one line."""
    await migrate(embedded_pg.url)
    pool = await create_pool(embedded_pg.url, min_size=1, max_size=2)
    try:
        await refuse_newer(pool)
        await refuse_mismatch(pool)
        await pool.execute(
            "INSERT INTO monitoring.schema_migrations (name, checksum) VALUES "
            "('9998_from_the_future.sql', 'x'), ('9999_newest.sql', 'y')"
        )
        with pytest.raises(SchemaDrift, match=r"migration 9999_newest\.sql is not known"):
            await refuse_newer(pool)
        await pool.execute("ALTER TABLE monitoring.trades RENAME COLUMN fee_currency TO fee_ccy")
        await pool.execute("ALTER TABLE monitoring.orders ADD COLUMN host text NOT NULL")
        problems = await schema_mismatches(pool)
        assert problems == [
            "monitoring.orders.host is NOT NULL without a default and the writer does not fill it",
            "monitoring.trades lacks column fee_currency the writer needs",
        ]
        with pytest.raises(SchemaDrift, match="fee_currency"):
            await refuse_mismatch(pool)
    finally:
        await pool.close()
