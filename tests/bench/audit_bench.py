"""Benchmark: the audit writer against raw COPY, on one scratch database.

    python tests/bench/audit_bench.py [N]        (default N = 100000)

Uses ``TEST_DATABASE_URL`` (its server) or postgresql://postgres@127.0.0.1:5432, creates
a scratch database ``trader_bench_<pid>`` and drops it afterwards. In one run:

1. N distinct order records through :class:`database.audit.AuditWriter` (``record()``
   timed one by one, the writer draining concurrently), from the first ``record()`` to
   the moment the last row is committed: ``audit_rows_per_s``;
2. the same N rows, as ready-made tuples, through one asyncpg ``copy_records_to_table``
   into a table built ``LIKE monitoring.orders INCLUDING ALL`` plus the same deferred
   foreign key, in one transaction: ``copy_rows_per_s``.

Five rounds of each, alternating, each scored by its median (the machine may be shared).
The writer runs with its default batch size (``AUDIT_BENCH_BATCH`` overrides it). A line
before the last reports the merge path too (every row an update of a newer version).

The last line printed is exactly::

    audit_rows_per_s=<x> copy_rows_per_s=<y> ratio=<x/y> record_p99_us=<z>

Targets: ratio >= 0.6, record_p99_us <= 20.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.models import PositionSide, Side
from core.order_model import Order, OrderPurpose, OrderStatus, OrderType
from core.position_model import Position
from core.records import AuditRecord, order_record, position_record
from database.audit import AuditWriter
from database.audit_tables import TABLES, RecordKind
from database.migrate import migrate
from database.pool import create_pool

POSITIONS = 100
BATCH = int(os.environ.get("AUDIT_BENCH_BATCH", "5000"))


def server_url(database: str) -> str:
    base = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + database))


def make_orders(n: int, round_no: int = 0, version: int = 2) -> list[AuditRecord]:
    """``n`` distinct orders (a LIMIT order as the order manager records it)."""
    now = datetime.now(UTC)
    records = []
    for i in range(n):
        order = Order(
            client_order_id=f"td-bench-p{i % POSITIONS + 1}-mo-{round_no}-{i}",
            account="bench",
            exchange="paper",
            symbol="BTC/USDT:USDT",
            side=Side.BUY if i % 2 else Side.SELL,
            type=OrderType.LIMIT,
            amount=Decimal("0.125"),
            purpose=OrderPurpose.MANUAL,
            price=Decimal("65000.5") + i,
            position_id=i % POSITIONS + 1,
            exchange_order_id=str(10_000_000 + i),
            status=OrderStatus.NEW,
            created_at=now,
            updated_at=now,
            version=version,
        )
        records.append(order_record(order))
    return records


async def bench_writer(
    pool: asyncpg.Pool, records: list[AuditRecord], durations: list[int]
) -> float:
    """Rows per second through the writer; appends each record() time (ns) to durations."""
    perf = time.perf_counter_ns
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as spool:
        async with AuditWriter(pool, Path(spool), batch_size=BATCH) as writer:
            gc.collect()
            started = time.perf_counter()
            for i, rec in enumerate(records):
                t0 = perf()
                writer.record(rec)
                durations.append(perf() - t0)
                if i % 500 == 499:
                    await asyncio.sleep(0)  # let the writer run, as a trading loop would
            await writer.drain()
            elapsed = time.perf_counter() - started
            if writer.dead_letters or writer.written != len(records):
                raise SystemExit(f"writer lost rows: {writer.written=} {writer.dead_letters=}")
    return len(records) / elapsed


async def bench_copy(conn: asyncpg.Connection, records: list[AuditRecord]) -> float:
    """Rows per second of one raw COPY (tuples ready-made) into an equivalent table."""
    spec = TABLES[RecordKind.ORDER]
    # Equivalent: same columns, defaults, checks and indexes, and the same deferred
    # foreign key to the positions (LIKE does not copy foreign keys).
    await conn.execute(
        "DROP TABLE IF EXISTS public.orders_copy;"
        "CREATE TABLE public.orders_copy (LIKE monitoring.orders INCLUDING ALL);"
        "ALTER TABLE public.orders_copy ADD FOREIGN KEY (position_id)"
        " REFERENCES monitoring.positions (id) DEFERRABLE INITIALLY DEFERRED"
    )
    rows = [spec.to_tuple(r.row) for r in records]
    gc.collect()
    started = time.perf_counter()
    async with conn.transaction():  # the deferred key checks run at commit, as the writer's
        await conn.copy_records_to_table(
            "orders_copy", schema_name="public", records=rows, columns=spec.columns
        )
    return len(rows) / (time.perf_counter() - started)


async def checkpoint(conn: asyncpg.Connection) -> None:
    """Start each measurement without the previous one's dirty pages (if allowed)."""
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("CHECKPOINT")


async def main(n: int, rounds: int = 5) -> None:
    name = f"trader_bench_{os.getpid()}"
    admin = await asyncpg.connect(server_url("postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    audit_rates, copy_rates, durations = [], [], []
    try:
        url = server_url(name)
        await migrate(url)
        pool = await create_pool(url, min_size=2, max_size=4)
        try:
            positions = [
                position_record(
                    Position(p, "bench", "paper", f"SYM{p}/USDT:USDT", PositionSide.LONG)
                )
                for p in range(1, POSITIONS + 1)
            ]
            await bench_writer(pool, positions, [])
            async with pool.acquire() as conn:
                # Alternate the two, fresh tables each round; the machine may be shared,
                # so each side is scored by its median round.
                for round_no in range(rounds):
                    records = make_orders(n, round_no)
                    await checkpoint(conn)
                    copy_rates.append(await bench_copy(conn, records))
                    await conn.execute("TRUNCATE monitoring.orders")
                    await checkpoint(conn)
                    audit_rates.append(await bench_writer(pool, records, durations))
                    count = await conn.fetchval("SELECT count(*) FROM monitoring.orders")
                    if count != n:
                        raise SystemExit(f"expected {n} orders, found {count}")
                # The merge path: every order again, one version newer (all updates).
                updates = make_orders(n, rounds - 1, version=3)
                update_rate = await bench_writer(pool, updates, [])
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    durations.sort()
    p99_us = durations[int(len(durations) * 0.99)] / 1000
    audit_rate, copy_rate = statistics.median(audit_rates), statistics.median(copy_rates)
    print("rounds audit_rows_per_s:", " ".join(f"{r:.0f}" for r in audit_rates))
    print("rounds copy_rows_per_s: ", " ".join(f"{r:.0f}" for r in copy_rates))
    print(f"update path (every row an upsert of a newer version): {update_rate:.0f} rows/s")
    print(
        f"audit_rows_per_s={audit_rate:.0f} copy_rows_per_s={copy_rate:.0f} "
        f"ratio={audit_rate / copy_rate:.3f} record_p99_us={p99_us:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
