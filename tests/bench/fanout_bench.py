"""Benchmark of the tick fan-out: the cost of one tick per account in the load world.

    python tests/bench/fanout_bench.py [--seconds S] [--rate R] [--seed N]

Builds the load scenario's world in this one process, with the scenario's own helpers
(tests/chaos/test_chaos_load.py: 50 account cores wired as cli/core_wiring.py wires the
daemon's, 1,000 trailing positions on 20 symbols, 100,000 resting emulated orders, one
``AuditWriter`` on a scratch PostgreSQL database, tests/bench/scratch_db.py), then feeds
the scenario's seeded walk at ``--rate`` ticks/s (default 2,000) for ``--seconds``
(default 20) with the daemon's periodic work running (venue syncs, trailing saves,
reconciliation), on uvloop, logs JSON at INFO into /dev/null.

Figures of the last line:

- ``us_per_account_tick``: the time to hand one tick to all 50 tick loops
  (``TickLoop.on_tick``), divided by 50;
- ``ticks_per_s``: ticks processed per second of the run (at most ``--rate``: the feed is
  paced; below it, the tick path could not keep up);
- ``tick_to_submit_p50_us`` / ``_p99_us``: fired emulated orders, tick to venue submit
  (``OrderManager.latencies_us``);
- ``audit_lag_p99_ms``: record to commit, the worst p99 of the writer's window sampled
  every second;
- ``rss_mb``: the process's RSS at the end of the run.

The first line also gives ``tick_age_p99_ms`` / ``tick_age_max_ms``: how long ticks waited
between being generated and handed to the accounts (the load scenario's "late" ticks), and
``tick_age_steady_p99_ms``, the same past the first ``STEADY_AFTER_S`` seconds: at the
start the near emulated orders fire in a burst (about 250 in the first half second, each
with its fill, records and stop resize), a one-off wait that decides a short run's p99
but not a long one's. Likewise ``audit_lag_steady_p99_ms``: the p99 of the lags of the
batches committed past the first ``STEADY_AFTER_S`` seconds (the writer's ``on_lag``),
where ``audit_lag_p99_ms``, the worst sampled window, is decided by the start's batches.

The world takes about a minute to build on this 2-core machine (100,000 orders placed
and journaled); the run itself is ``--seconds`` long.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from config.logging import configure_logging
from database.audit import AuditWriter
from database.pool import create_pool
from tests.bench.scratch_db import scratch_database
from tests.chaos import test_chaos_load as load
from tests.figures import percentile

STEADY_AFTER_S = 2


@contextlib.asynccontextmanager
async def audit_world(
    name: str, batch: int | None = None
) -> AsyncIterator[tuple[asyncpg.Pool, AuditWriter, Path]]:
    """A scratch database named after ``name``, its pool, a started audit writer and a
    state directory: what the load world is built on (closed in reverse order)."""
    async with scratch_database(name) as url:
        pool = await create_pool(url, min_size=2, max_size=8)
        try:
            with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
                state_dir = Path(tmp)
                sizes = {} if batch is None else {"batch_size": batch}
                audit = AuditWriter(pool, state_dir / "audit-spool", **sizes)
                await audit.start()
                try:
                    yield pool, audit, state_dir
                finally:
                    await audit.aclose()
        finally:
            await pool.close()


async def close_accounts(accounts: list[load.Account]) -> None:
    """Let every account's work in flight end, then give back its unused position ids."""
    for account in accounts:
        await account.core.tasks.drain(load.DRAIN_TIMEOUT_S)
        await account.ids.aclose()


async def measure(seconds: int, rate: int, seed: int, batch: int | None = None) -> dict[str, Any]:
    """Build the world, run the paced feed, return the figures."""
    load.TICKS_PER_S = rate  # the scenario's feed() paces on this module constant
    scheduled = seconds * rate
    async with audit_world("fanout_bench", batch) as (pool, audit, state_dir):
        return await run(pool, audit, state_dir, seed, scheduled, load.reach_of(scheduled))


async def run(
    pool: Any, audit: AuditWriter, state_dir: Path, seed: int, scheduled: int, reach: int
) -> dict[str, Any]:
    sink = load.CountingSink(audit)
    built = time.perf_counter()
    accounts = await load.build_accounts(pool, audit, sink, seed, reach)
    build_s = time.perf_counter() - built
    await audit.flush(120)
    build_records = sum(sink.counts.values())
    # The writer's lag window still holds the build's batches (100,000 orders journaled
    # as fast as they can be placed): forget them, so the figure is the run's alone.
    window = getattr(audit, "_lags", None)
    if window is not None:
        window.clear()
    gc.collect()
    gc.freeze()  # as the daemon does once started (cli/service.py run_daemon)
    stats = load.RunStats(scheduled=scheduled)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * load.TICKS_PER_S)
    stop = asyncio.Event()
    latencies_before = [len(a.core.orders.latencies_us) for a in accounts]
    lags: list[tuple[float, float]] = []  # (when, lag) of every batch the run commits
    audit.on_lag = lambda seconds: lags.append((time.perf_counter(), seconds))
    wall_start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for index, account in enumerate(accounts):
            group.create_task(load.upkeep(account, index, stop, state_dir))
        group.create_task(load.monitor(audit, stats, stop))
        group.create_task(load.feed(load.Walk(seed), queue, stats))
        await group.create_task(load.consume(queue, accounts, stats))
        stop.set()
    wall_s = time.perf_counter() - wall_start
    rss_kb = load.proc_status_kb("VmRSS")
    run_records = sum(sink.counts.values()) - build_records
    stats.lag_p99_max_s = max(stats.lag_p99_max_s, audit.lag_p99_s)
    await close_accounts(accounts)
    gc.unfreeze()
    latencies = [
        us
        for a, before in zip(accounts, latencies_before, strict=True)
        for us in list(a.core.orders.latencies_us)[before:]
    ]
    processed = max(stats.processed, 1)
    ages = list(stats.ages_s)
    steady = ages[STEADY_AFTER_S * load.TICKS_PER_S :]
    steady_lags = [lag for at, lag in lags if at >= wall_start + STEADY_AFTER_S]
    return {
        "build_s": f"{build_s:.0f}",
        "ticks": f"{stats.processed}/{scheduled}",
        "fired": len(latencies),
        "open_at_end": sum(len(a.core.book) for a in accounts),
        "feed_behind_max_s": f"{stats.behind_max_s:.2f}",
        "tick_age_p99_ms": f"{percentile(ages, 99) * 1000:.1f}" if ages else "nan",
        "tick_age_max_ms": f"{max(ages) * 1000:.1f}" if ages else "nan",
        "tick_age_steady_p99_ms": f"{percentile(steady, 99) * 1000:.1f}" if steady else "nan",
        "audit_lag_steady_p99_ms": (
            f"{percentile(steady_lags, 99) * 1000:.0f}" if steady_lags else "nan"
        ),
        "audit_records_run": run_records,
        "us_per_account_tick": f"{stats.fan_out_s / processed / len(accounts) * 1e6:.2f}",
        "ticks_per_s": f"{stats.processed / wall_s:.0f}",
        "tick_to_submit_p50_us": f"{percentile(latencies, 50):.0f}" if latencies else "nan",
        "tick_to_submit_p99_us": f"{percentile(latencies, 99):.0f}" if latencies else "nan",
        "audit_lag_p99_ms": f"{stats.lag_p99_max_s * 1000:.0f}",
        "rss_mb": f"{rss_kb / 1024:.0f}",
    }


LAST_LINE = (
    "us_per_account_tick",
    "ticks_per_s",
    "tick_to_submit_p50_us",
    "tick_to_submit_p99_us",
    "audit_lag_p99_ms",
    "rss_mb",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=20, help="length of the paced run")
    parser.add_argument("--rate", type=int, default=load.TICKS_PER_S, help="ticks per second")
    parser.add_argument("--seed", type=int, default=5, help="prices and orders")
    parser.add_argument(
        "--audit-batch", type=int, default=None, help="the writer's batch size (default: its own)"
    )
    args = parser.parse_args()
    configure_logging("json", "INFO", load._DEVNULL)
    figures = load.run_on_uvloop(measure(args.seconds, args.rate, args.seed, args.audit_batch))
    print(" ".join(f"{k}={v}" for k, v in figures.items() if k not in LAST_LINE))
    print(" ".join(f"{k}={figures[k]}" for k in LAST_LINE))


if __name__ == "__main__":
    main()
