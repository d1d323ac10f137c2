"""Benchmark: a close queued behind a flood of malformed intake rows, on a scratch database.

    python tests/bench/intake_bench.py [N]        (default N = 50000)

Uses ``TEST_DATABASE_URL`` (its server) or postgresql://postgres@127.0.0.1:5432, creates a
scratch database and drops it afterwards. The daemon's own intake — database/intake.py's
listener over core/intake.py's handler, on the in-memory paper venue of
tests/trading_harness.py — holds one open BTC position. Then, in one transaction, N junk
rows are inserted (half signals for a market the daemon does not trade, half
``place_order`` commands with an empty payload), followed by one valid ``close_position``
for the position. The listener is started and timed:

- ``close_behind_junk_ms``: from the start until the close's row is ``done``;
- ``junk_rejected_per_s``: N / the time until the last junk row is ``rejected``;
- ``rss_mb``: the process's peak resident set size at the end.

Every rejection is logged as the daemon logs it (one JSON line each, written to
/dev/null). The last line printed is exactly::

    close_behind_junk_ms=<x> junk_rejected_per_s=<y> rss_mb=<z>

Targets: close_behind_junk_ms <= 1000, junk_rejected_per_s >= 2000, rss_mb bounded (the
batch size, not N, sets what is held in memory).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.intake import IntakeHandler
from database.intake import IntakeListener
from database.pool import create_pool
from tests.bench.scratch_db import scratch_database
from tests.trading_harness import BTC, build_stack, long_signal

POLL_S = 0.005


def _quiet_json_logs() -> None:
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the benchmark
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sink),
    )


async def _flood(pool: object, n: int, position_id: int) -> int:
    """N junk rows then one valid close, in one transaction; the close's id."""
    half = n // 2
    async with pool.acquire() as conn, conn.transaction():  # type: ignore[attr-defined]
        await conn.execute(
            "INSERT INTO monitoring.signals (account, symbol, side, amount) "
            "SELECT 'main', 'NOPE/USDT:USDT', 'long', 1 FROM generate_series(1, $1)",
            half,
        )
        await conn.execute(
            "INSERT INTO monitoring.commands (account, kind, payload) "
            "SELECT 'main', 'place_order', '{}'::jsonb FROM generate_series(1, $1)",
            n - half,
        )
        return int(
            await conn.fetchval(
                "INSERT INTO monitoring.commands (account, kind, payload) "
                "VALUES ('main', 'close_position', jsonb_build_object('position_id', $1::int)) "
                "RETURNING id",
                position_id,
            )
        )


async def _until(pool: Any, sql: str, *args: Any) -> None:
    """Poll ``sql`` (a boolean) until true; the database has no event to wait on."""
    while True:
        if await pool.fetchval(sql, *args):
            return
        await asyncio.sleep(POLL_S)


async def run(n: int) -> None:
    _quiet_json_logs()
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal("0.01"))
    handler = IntakeHandler(
        "main", stack.apm, stack.lifecycle, stack.orders, symbols=[BTC], book=stack.book
    )
    async with scratch_database("trader_intake_bench") as url:
        pool = await create_pool(url, min_size=2, max_size=4)
        try:
            close_id = await _flood(pool, n, position.id)
            listener = IntakeListener(pool, handler, "main", poll_interval_s=0.5)
            start = time.perf_counter()
            running = asyncio.create_task(listener.run())
            close = "SELECT status = 'done' FROM monitoring.commands WHERE id = $1"
            await _until(pool, close, close_id)
            close_ms = (time.perf_counter() - start) * 1000
            await _until(
                pool,
                "SELECT NOT EXISTS (SELECT 1 FROM monitoring.signals WHERE status = 'new') "
                "AND NOT EXISTS (SELECT 1 FROM monitoring.commands WHERE status = 'new')",
            )
            junk_s = time.perf_counter() - start
            listener.stop()
            await asyncio.wait_for(running, 30)
            rejected = await pool.fetchval(
                "SELECT (SELECT count(*) FROM monitoring.signals WHERE status = 'rejected') "
                "+ (SELECT count(*) FROM monitoring.commands WHERE status = 'rejected')"
            )
            assert rejected == n, f"{rejected} of {n} junk rows rejected"
        finally:
            await pool.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows={n} rejected={rejected} close_status=done")
    print(
        f"close_behind_junk_ms={close_ms:.0f} junk_rejected_per_s={n / junk_s:.0f} "
        f"rss_mb={rss_mb:.0f}"
    )


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000))
