"""No new risk while the audit trail cannot be kept: the database down and the spool's
disk full (a small tmpfs) make the writer degraded, with memory bounded; it leaves the
state by itself when the disk or the database returns. On a private embedded PostgreSQL;
the rows in the database are compared with the records given (lost ones counted)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.audit_gate import require_trail
from core.errors import AuditUnavailable
from core.records import event_record
from database.audit import AuditWriter
from database.audit_state import read_state
from database.embedded import EmbeddedPostgres
from database.migrate import migrate
from database.pool import create_pool
from tests.integration.audit_helpers import until

QUEUE = 2000
BATCH = 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs, unmounted after the test (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with one file; return it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"x" * 4096)
    return filler


async def record_slowly(audit: AuditWriter, tag: str, start: int, n: int) -> None:
    for i in range(start, start + n):
        audit.record(event_record(tag, f"{tag} {i}", event_key=f"{tag}-{i}"))
        if i % 100 == 0:
            await asyncio.sleep(0.001)


@pytest.mark.slow
@pytest.mark.parametrize("returns", ["database", "disk"])
async def test_database_down_and_disk_full_degrade_then_recover(
    embedded_pg: EmbeddedPostgres, small_disk: Path, returns: str
) -> None:
    """30,000 records with the database down and the spool disk full: degraded (new risk
    refused, shown in the state file), memory bounded by the queue, the shed ones
    counted; when the database or the disk returns the state ends by itself, and the
    database holds exactly the records not counted as lost, each once."""
    await migrate(embedded_pg.url)
    spool = small_disk / "spool"
    pool = await create_pool(embedded_pg.url, min_size=1, max_size=4)
    try:
        async with AuditWriter(
            pool,
            spool,
            batch_size=BATCH,
            queue_size=QUEUE,
            connect_timeout_s=1,
            retry_min_s=0.05,
            retry_max_s=0.2,
        ) as audit:
            await embedded_pg.stop(mode="immediate")
            filler = fill(small_disk)
            peak = 0
            for part in range(30):
                await record_slowly(audit, "full", part * 1000, 1000)
                peak = max(peak, audit.queue_depth)
            await until(lambda: audit.degraded)
            assert "spool refused" in (audit.degraded_reason or "")
            with pytest.raises(AuditUnavailable):
                require_trail(audit)
            state = read_state(spool)
            assert state is not None and state["degraded"] is True
            assert peak <= QUEUE + 2 * BATCH  # memory bounded
            assert audit.lost > 0  # more than memory could hold: shed, and counted

            if returns == "disk":
                filler.unlink()
                await until(lambda: not audit.degraded)
                await audit.flush(timeout_s=30)  # all held records now on disk
                await embedded_pg.start()
            else:
                await embedded_pg.start()
                await until(lambda: not audit.degraded)
                filler.unlink()
            require_trail(audit)
            lost = audit.lost
            await audit.drain(timeout_s=60)
        row = await pool.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT event_key) AS keys FROM monitoring.events "
            "WHERE kind = 'full'"
        )
        assert (row["n"], row["keys"]) == (30_000 - lost, 30_000 - lost)
        kinds = {r["kind"] for r in await pool.fetch("SELECT DISTINCT kind FROM monitoring.events")}
        assert {"audit_degraded", "audit_recovered"} <= kinds
        print(f"disk full, {returns} returns: {lost} of 30000 shed, peak queue {peak}")
    finally:
        await pool.close()
