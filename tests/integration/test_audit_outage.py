"""The audit trail survives a database outage: 50,000 records, the server stopped mid-way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.records import RecordKind
from database.audit import AuditWriter
from database.embedded import EmbeddedPostgres
from database.migrate import migrate
from database.pool import create_pool
from tests.integration.audit_helpers import position_story

STORIES = 1516  # x 33 records = 50,028


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [5000, 300])
async def test_outage_loses_nothing_and_keeps_order(
    embedded_pg: EmbeddedPostgres, tmp_path: Path, batch_size: int
) -> None:
    """Records written before, during and after a crash-stop of PostgreSQL all end up in
    their tables exactly once, orders at their newest version, histories in order (with
    big batches, and with small ones that keep the two-batch pipeline busy)."""
    await migrate(embedded_pg.url)
    records = [rec for pid in range(1, STORIES + 1) for rec in position_story(pid)]
    assert len(records) >= 50_000
    third = len(records) // 3
    pool = await create_pool(embedded_pg.url, min_size=1, max_size=4)
    try:
        async with AuditWriter(
            pool,
            tmp_path,
            batch_size=batch_size,
            connect_timeout_s=2,
            retry_min_s=0.05,
            retry_max_s=0.5,
        ) as audit:
            for i, rec in enumerate(records[:third]):
                audit.record(rec)
                if i % 200 == 0:
                    await asyncio.sleep(0)
            # Stop once part of it is committed and the rest still in flight (polling is
            # fine here: the writer has no "n rows written" event to wait on).
            while audit.written < third // 3:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            written_before_stop = audit.written
            await embedded_pg.stop(mode="immediate")  # a crash: connections cut mid-batch
            spooled_during_outage = 0
            for i, rec in enumerate(records[third : 2 * third]):
                audit.record(rec)
                if i % 200 == 0:
                    await asyncio.sleep(0.001)
                    spooled_during_outage = max(spooled_during_outage, audit.spool_bytes)
            await audit.flush(timeout_s=60)  # everything so far is committed or on disk
            spooled_during_outage = max(spooled_during_outage, audit.spool_bytes)
            assert audit.last_error is not None
            await embedded_pg.start()
            for i, rec in enumerate(records[2 * third :]):
                audit.record(rec)
                if i % 200 == 0:
                    await asyncio.sleep(0)
            await audit.drain(timeout_s=90)
            assert audit.dead_letters == 0
            assert audit.spool_bytes == 0
        assert spooled_during_outage > 0  # the outage really sent records to the spool
        print(
            f"outage: {len(records)} records, {written_before_stop} written before the stop, "
            f"spool peaked at {spooled_during_outage} bytes"
        )

        expected = {kind: 0 for kind in RecordKind}
        keys = {
            RecordKind.ORDER: {
                r.row["client_order_id"] for r in records if r.kind is RecordKind.ORDER
            },
            RecordKind.POSITION: {r.row["id"] for r in records if r.kind is RecordKind.POSITION},
        }
        for rec in records:
            expected[rec.kind] += 1
        expected[RecordKind.ORDER] = len(keys[RecordKind.ORDER])
        expected[RecordKind.POSITION] = len(keys[RecordKind.POSITION])
        for kind, count in expected.items():
            query = f"SELECT count(*) FROM monitoring.{kind.value}"
            if kind is RecordKind.EVENT:
                query += " WHERE kind <> 'audit_spool_replayed'"
            assert await pool.fetchval(query) == count, (kind, await pool.fetchval(query), count)
        # Unique keys make "exactly once" a count; the newest version won everywhere.
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM monitoring.orders WHERE version <> 5 OR status <> 'FILLED'"
            )
            == 0
        )
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM monitoring.positions WHERE status <> 'closed'"
            )
            == 0
        )
        out_of_order = await pool.fetchval(
            "SELECT count(*) FROM (SELECT version, lag(version) OVER "
            "(PARTITION BY client_order_id ORDER BY id) AS prev "
            "FROM monitoring.order_events) e WHERE prev >= version"
        )
        assert out_of_order == 0
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM monitoring.events WHERE kind = 'audit_spool_replayed'"
            )
            >= 1
        )
    finally:
        await pool.close()
