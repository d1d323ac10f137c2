"""Benchmark: the audit trail's reads and writes on a year of data for 50 accounts.

    python3 tests/bench/audit_scale_bench.py [--scale S]        (default S = 1.0)

Uses ``TEST_DATABASE_URL``'s server (else postgresql://postgres@127.0.0.1:5432) through
tests/bench/scratch_db.py: a fresh, migrated database, dropped afterwards (also on a
failure, Ctrl-C or SIGTERM). In one run:

1. Fills it server-side (tests/bench/audit_scale_data.py) with a year of trail ending
   now, 50 accounts on 20 symbols: at scale S, 2,500,000 * S positions with 3 orders, 4
   trades and 12 order events each (S = 1: exactly 10,000,000 trades and 30,000,000
   order events), 500,000 * S events and 1,000,000 * S position samples of the last 7
   days (the retention). Time-partitioned tables get the partitions their hourly
   maintenance would have made over the year. Then VACUUM ANALYZE, as autovacuum would
   have run. Prints the fill time, the rows per table and the database size.
2. Times, in ms, each the median of 3 runs after a warm-up, all rows fetched:
   ``report_ms``, ``main.py report --since 30d`` for one account (cli/report.py's own
   ``report_command``, output discarded); ``performance_view_ms``, the slowest
   ``SELECT * FROM monitoring.<view>`` over the views the migrations define; and
   ``seed_queries_ms``, the slowest ``sql`` block of ORDERS_TRADES_AUDIT_REPORT.md as
   tests/integration/test_audit_report_sql.py prepares them, ``:pid`` / ``:'cid'`` set
   to a closed position and its entry order. Each view and query is printed first.
3. ``insert_rows_per_s``: N = max(20,000, 100,000 * S) new trade and order_event rows
   (fills, as ``Journal.fill`` records them) through :class:`database.audit.AuditWriter`
   into the full database until committed, against one raw ``copy_records_to_table``
   of as many equivalent rows (fresh keys) into the same tables in one transaction:
   five alternating rounds, each side scored by its median (as tests/bench/audit_bench.py
   does); ``copy_rows_per_s=<c> ratio=<insert/copy>`` is printed before the last line.

The last line printed is exactly::

    rows=<n> report_ms=<x> performance_view_ms=<y> seed_queries_ms=<z> insert_rows_per_s=<w>

where rows = trades + order_events. Targets: every timed query (the report, each view,
each seed query) <= 200 ms; ratio >= 0.85.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import math
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cli.report import report_command
from core.records import AuditRecord, RecordKind
from database.audit import AuditWriter
from database.audit_tables import TABLES
from database.pool import create_pool
from tests.bench import audit_scale_data as data
from tests.bench.scratch_db import scratch_database, server_url
from tests.integration.test_audit_report_sql import REPORT, psql_variables, substituted

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "trader_audit_scale"
RUNS = 3
ROUNDS = 5
REPORT_ACCOUNT = data.account_name(0)
REPORT_WINDOW = timedelta(days=30)
BATCH = int(os.environ.get("AUDIT_BENCH_BATCH", "5000"))  # the writer's default
# Bulk-load settings of the fill's own sessions only; the timed queries run with the
# server's defaults, as the CLI's would. The scratch data is thrown away afterwards, so a
# commit lost in a crash costs nothing (synchronous_commit); JIT would compile every
# chunk's statements again for little gain on work that is mostly index maintenance.
FILL_SESSION = (
    "SET work_mem = '256MB'; SET maintenance_work_mem = '512MB'; "
    "SET synchronous_commit = off; SET jit = off"
)

Job = Sequence[tuple[str, Sequence[Any]]]


@asynccontextmanager
async def leftovers_dropped() -> AsyncIterator[None]:
    """Also drop a scratch database of this process that scratch_database left: it drops
    its database once migrated, not when CREATE or the migrations fail or are cut short."""
    try:
        yield
    finally:
        admin = await asyncpg.connect(server_url("postgres"))
        try:
            names = await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                f"{PREFIX}\\_{os.getpid()}\\_%",
            )
            for (name,) in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def run_jobs(
    url: str, jobs: Sequence[Job], *, transaction: bool = True, blocks: bool = False
) -> None:
    """Run the jobs on ``data.WORKERS`` connections at once, each job in one transaction
    (or none: VACUUM); the first failure cancels the rest. Each connection takes the next
    job left or, with ``blocks``, its own contiguous block of them in order."""
    n = min(data.WORKERS, len(jobs))
    queues = (
        [list(reversed(jobs[w * len(jobs) // n : (w + 1) * len(jobs) // n])) for w in range(n)]
        if blocks
        else [list(reversed(jobs))] * n  # one queue shared
    )

    async def worker(pending: list[Job]) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(FILL_SESSION)
            while pending:
                job = pending.pop()
                async with contextlib.AsyncExitStack() as stack:
                    if transaction:
                        await stack.enter_async_context(conn.transaction())
                    for sql, args in job:
                        await conn.execute(sql, *args)
        finally:
            conn.terminate()  # at once, even when cancelled mid-statement

    async with asyncio.TaskGroup() as group:
        for pending in queues:
            group.create_task(worker(pending))


async def make_partitions(conn: asyncpg.Connection, now: datetime) -> str:
    """On the time-partitioned schema (migration 0012), the partitions its maintenance
    (every daemon runs it at start and hourly) would have made over the year, so that
    the year lands in them and not in the DEFAULT partitions; nothing on plain tables.
    Only parent tables are named: the schema's own function names the partitions."""
    maintain = "monitoring.maintain_audit_partitions(text, timestamptz)"
    if await conn.fetchval("SELECT to_regprocedure($1) IS NULL", maintain):
        return "none (plain tables)"
    settings = await conn.fetch(
        "SELECT table_name, step, retention FROM monitoring.audit_partitioning ORDER BY write_order"
    )
    for table, step, retention in settings:
        at = now - (retention or timedelta(days=365)) - timedelta(days=1)
        every = timedelta(days=1 if step == "day" else 7)  # within a premake of 1 step
        while at < now + every:  # the last pass as of now
            await conn.fetch("SELECT * FROM monitoring.maintain_audit_partitions($1, $2)",
                             table, min(at, now))  # fmt: skip
            at += every
    made = await conn.fetch(
        "SELECT p.relname, count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE p.relnamespace = 'monitoring'::regnamespace AND p.relkind = 'p'"
        " GROUP BY 1 ORDER BY 1"
    )
    return " ".join(f"{name}={count}" for name, count in made)


async def fill(url: str, scale: float) -> dict[str, int]:
    """Fill, vacuum and analyze the database; print the times and rows per table."""
    positions = round(data.POSITIONS_AT_1 * scale)
    events, updates = round(data.EVENTS_AT_1 * scale), round(data.UPDATES_AT_1 * scale)
    active = min(data.ACTIVE_PER_ACCOUNT, positions // data.ACCOUNTS // 5)
    slots = math.ceil(positions / data.ACCOUNTS)
    # Chunks of about CHUNK_POSITIONS, and enough of them to keep every worker busy.
    step = max(1, min(data.CHUNK_POSITIONS // data.ACCOUNTS, slots // (4 * data.WORKERS)))
    now = datetime.now(UTC)
    per_chunk = [
        (data.POSITIONS_SQL, ()), (data.ORDERS_SQL, ()), (data.TRADES_SQL, ()),
        *[(data.history_sql(kind), ()) for kind in data.HISTORY],
    ]  # fmt: skip
    chunks = [
        [(data.CHUNK_SQL, (now, lo, min(lo + step, slots), positions, active)), *per_chunk]
        for lo in range(0, slots, step)
    ]
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        print(f"partitions: {await make_partitions(conn, now)}")
    finally:
        await conn.close()
    # Each connection fills its own stretch of the year, so the transactions running at
    # once are weeks apart and never write one (account, day): a per-day summary that a
    # trigger recomputes as delete-then-insert (migration 0013) fails two such writers.
    await run_jobs(url, chunks, blocks=True)
    await run_jobs(url, [[("ANALYZE monitoring.positions", ())]])  # for the next phase
    await run_jobs(
        url,
        [
            [
                (data.EVENTS_SQL, (now, a, data.share(events, a), data.share(positions, a))),
                (data.UPDATES_SQL, (now, data.account_name(a), data.share(updates, a))),
            ]
            for a in range(data.ACCOUNTS)
        ],
    )
    filled_s = time.perf_counter() - started
    started = time.perf_counter()
    biggest_first = ("order_events", "trades", "orders", "positions", "position_updates", "events")
    await run_jobs(
        url,
        [[(f"VACUUM (ANALYZE) monitoring.{table}", ())] for table in biggest_first],
        transaction=False,
    )
    vacuum_s = time.perf_counter() - started
    print(f"fill_s={filled_s:.1f} vacuum_analyze_s={vacuum_s:.1f} (chunks={len(chunks)})")
    return await table_rows(url)


async def table_rows(url: str) -> dict[str, int]:
    """Set the position id sequence past the data; print and return rows per table."""
    conn = await asyncpg.connect(url)
    try:
        # The daemon's next position id must come after the generated ones.
        await conn.execute(
            "SELECT setval('monitoring.positions_id_seq', max(id)) FROM monitoring.positions"
        )
        counts = {
            t: await conn.fetchval(f"SELECT count(*) FROM monitoring.{t}") for t in data.TABLES
        }
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    finally:
        await conn.close()
    for table, count in counts.items():
        print(f"rows {table}={count}")
    print(f"database_size={size}")
    return counts


async def timed(run: Callable[[], Awaitable[Any]]) -> tuple[float, int]:
    """Median milliseconds of RUNS runs after a warm-up one, and the rows returned. Only
    one result is held at a time: at scale 1 one seed query returns 7.5M rows."""
    await run()
    times, rows = [], 0
    for _ in range(RUNS):
        started = time.perf_counter()
        result = await run()
        times.append((time.perf_counter() - started) * 1000)
        rows, result = len(result or ()), None
    return statistics.median(times), rows


async def time_report(pool: asyncpg.Pool) -> float:
    """``main.py report --since 30d``: the CLI's code, printing into a discarded buffer."""

    async def report() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            await report_command(
                pool, REPORT_ACCOUNT, venue=data.EXCHANGE, window=REPORT_WINDOW,
                as_json=False, plot=None,
            )  # fmt: skip

    ms, _ = await timed(report)
    print(f"report {REPORT_ACCOUNT} --since 30d: {ms:.1f} ms")
    return ms


async def time_views(pool: asyncpg.Pool) -> float:
    """``SELECT *`` of every view the migrations create, in order of first appearance."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "migrations").glob("*.sql")))
    views = re.findall(r"CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+monitoring\.(\w+)", text, re.I)
    worst = 0.0
    for view in dict.fromkeys(views):
        ms, rows = await timed(lambda v=view: pool.fetch(f"SELECT * FROM monitoring.{v}"))
        print(f"view {view}: {ms:.1f} ms ({rows} rows)")
        worst = max(worst, ms)
    return worst


async def time_seed_queries(pool: asyncpg.Pool) -> float:
    """Every ``sql`` block of the report, with the psql variables pointed at this data."""
    pid, cid = await pool.fetchrow(
        "SELECT p.id, o.client_order_id FROM monitoring.positions p JOIN monitoring.orders o"
        " ON o.position_id = p.id AND o.purpose = 'entry' WHERE p.account = $1"
        " AND p.status = 'closed' ORDER BY p.closed_at DESC LIMIT 1",
        REPORT_ACCOUNT,
    )
    text = REPORT.read_text()
    variables = {**psql_variables(text), "pid": str(pid), "cid": cid}
    print(f"seed queries: pid={pid} cid={cid}")
    worst = 0.0
    for n, raw in enumerate(re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL), 1):
        sql = substituted(raw, variables)
        ms, rows = await timed(lambda q=sql: pool.fetch(q))
        print(f"seed query {n} [{sql.splitlines()[0].strip()}]: {ms:.1f} ms ({rows} rows)")
        worst = max(worst, ms)
    return worst


async def bench_writer(writer: AuditWriter, records: list[AuditRecord]) -> float:
    """Rows per second through the audit writer, first record() to last commit. The
    writer lives across the rounds, as a daemon's does: opening its two connections
    (codecs, staging tables, one catalog query) is paid in the first round alone, and
    the median of the rounds is the steady rate."""
    written, dead = writer.written, writer.dead_letters
    gc.collect()
    started = time.perf_counter()
    for i, rec in enumerate(records):
        writer.record(rec)
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the writer run, as a trading loop would
    await writer.drain()
    elapsed = time.perf_counter() - started
    if writer.dead_letters != dead or writer.written - written != len(records):
        raise SystemExit(f"writer lost rows: {writer.written=} {writer.dead_letters=}")
    return len(records) / elapsed


async def bench_copy(conn: asyncpg.Connection, records: list[AuditRecord]) -> float:
    """Rows per second of raw COPY (tuples ready-made) into the same tables, in one
    transaction (deferred foreign keys checked at commit, as for the writer's batches)."""
    groups = [
        (TABLES[kind], [TABLES[kind].to_tuple(r.row) for r in records if r.kind is kind])
        for kind in (RecordKind.ORDER_EVENT, RecordKind.TRADE)  # the writer's order
    ]
    gc.collect()
    started = time.perf_counter()
    async with conn.transaction():
        for spec, rows in groups:
            schema, table = spec.table.split(".")
            await conn.copy_records_to_table(
                table, schema_name=schema, records=rows, columns=spec.columns
            )
    return len(records) / (time.perf_counter() - started)


async def checkpoint(conn: asyncpg.Connection) -> None:
    """Start each measurement without the previous one's dirty pages (if allowed)."""
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("CHECKPOINT")


async def bench_inserts(url: str, scale: float) -> tuple[float, float]:
    """Median rows/s of the writer and of raw COPY, alternating rounds."""
    pairs = max(20_000, round(100_000 * scale)) // 2
    pool = await create_pool(url, min_size=2, max_size=4)
    # The writer's connections decode jsonb from text; a plain one is what COPY needs.
    conn = await asyncpg.connect(url)
    try:
        targets = await conn.fetch(
            "SELECT id, account, symbol, side FROM monitoring.positions "
            "WHERE status = 'active' ORDER BY id"
        )
        writer_rates, copy_rates = [], []
        with tempfile.TemporaryDirectory(prefix="audit-scale-") as spool:
            async with AuditWriter(pool, Path(spool), batch_size=BATCH) as writer:
                for round_no in range(ROUNDS):
                    copy_records = data.fill_records(pairs, 2 * round_no, targets)
                    writer_records = data.fill_records(pairs, 2 * round_no + 1, targets)
                    await checkpoint(conn)
                    copy_rates.append(await bench_copy(conn, copy_records))
                    await checkpoint(conn)
                    writer_rates.append(await bench_writer(writer, writer_records))
    finally:
        conn.terminate()
        pool.terminate()
    print(f"rounds of {2 * pairs} rows, insert_rows_per_s:", *(f"{r:.0f}" for r in writer_rates))
    print("rounds copy_rows_per_s:", *(f"{r:.0f}" for r in copy_rates))
    return statistics.median(writer_rates), statistics.median(copy_rates)


async def main(scale: float) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with leftovers_dropped(), scratch_database(PREFIX) as url:
        counts = await fill(url, scale)
        pool = await create_pool(url, min_size=1, max_size=2)  # as the CLI's
        try:
            report_ms = await time_report(pool)
            view_ms = await time_views(pool)
            seed_ms = await time_seed_queries(pool)
        finally:
            pool.terminate()
        insert_rate, copy_rate = await bench_inserts(url, scale)
    print(f"copy_rows_per_s={copy_rate:.0f} ratio={insert_rate / copy_rate:.3f}")
    print(
        f"rows={counts['trades'] + counts['order_events']} report_ms={report_ms:.1f} "
        f"performance_view_ms={view_ms:.1f} seed_queries_ms={seed_ms:.1f} "
        f"insert_rows_per_s={insert_rate:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: 10M trades, 30M events")
    args = parser.parse_args()
    if args.scale <= 0:
        parser.error("--scale must be > 0")
    try:
        asyncio.run(main(args.scale))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM
        print("interrupted; the scratch database was dropped", file=sys.stderr)
        sys.exit(130)
