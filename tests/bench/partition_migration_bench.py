"""Benchmark: upgrading a database from before partitioning (migrations 0012 and 0013).

    python3 tests/bench/partition_migration_bench.py [TRADES]      (default 1,000,000)

On a scratch database of ``TEST_DATABASE_URL``'s server (else 127.0.0.1:5432), dropped
afterwards: the schema at migration 0011, TRADES trades and three times as many order
events over a year (filled server-side), then the remaining migrations, timed; the rows
are counted before and after. The last line printed is exactly::

    trades=<n> order_events=<m> migrate_s=<x> rows_per_s=<y> rows_kept=<true|false>
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from database.migrate import MIGRATIONS_DIR, migrate
from tests.bench.scratch_db import server_url

FILL = """
INSERT INTO monitoring.positions (id, account, exchange, symbol, side, status)
SELECT g, 'acct' || (g % 50), 'paper', 'S' || g, 'long', 'closed'
FROM generate_series(1, $1::int / 4) g;
INSERT INTO monitoring.trades (position_id, account, exchange, symbol, side, order_type,
    price, executed_qty, client_order_id, trade_id, fee, realized_pnl, executed_at)
SELECT g / 4 + 1, 'acct' || ((g / 4 + 1) % 50), 'paper', 'S' || (g / 4 + 1), 'buy',
    'MARKET', 100.5, 0.01, 'td-' || g, 'pt-' || g, 0.0005, CASE WHEN g % 2 = 1 THEN 0.12 END,
    now() - (g::float / $1 * interval '365 days')
FROM generate_series(0, $1::int - 1) g;
INSERT INTO monitoring.order_events (event_key, client_order_id, position_id, kind,
    new_status, version, detail, created_at)
SELECT 'td-' || g || '#1#status', 'td-' || (g / 3), g / 12 + 1, 'status', 'NEW', 1,
    '{"price": "100.5"}', now() - (g::float / (3 * $1) * interval '365 days')
FROM generate_series(0, 3 * $1::int - 1) g;
"""
COUNT = (
    "SELECT (SELECT count(*) FROM monitoring.trades),"
    " (SELECT count(*) FROM monitoring.order_events)"
)


async def main(trades: int) -> None:
    name = f"trader_partition_migration_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(server_url("postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server_url(name)
    try:
        with tempfile.TemporaryDirectory() as older:
            for path in MIGRATIONS_DIR.glob("*.sql"):
                if path.name < "0012":
                    shutil.copy(path, Path(older) / path.name)
            await migrate(url, Path(older))
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SET synchronous_commit = off")
            for statement in FILL.strip().split(";\n"):
                await conn.execute(statement.replace("$1", str(trades)))
            await conn.execute("VACUUM ANALYZE")
            before = tuple(await conn.fetchrow(COUNT))
            started = time.perf_counter()
            await migrate(url)
            elapsed = time.perf_counter() - started
            after = tuple(await conn.fetchrow(COUNT))
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    rows = sum(before)
    print(
        f"trades={before[0]} order_events={before[1]} migrate_s={elapsed:.1f} "
        f"rows_per_s={rows / elapsed:.0f} rows_kept={str(before == after).lower()}"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
