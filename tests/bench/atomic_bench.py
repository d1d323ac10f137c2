"""Atomic open + close throughput on the paper venue (zero latency), audit on PostgreSQL.

    python tests/bench/atomic_bench.py [N]

Opens and closes N positions one after another through the AtomicPositionManager and the
lifecycle, every record going through the real AuditWriter into a scratch database. The
venue's own time is measured separately (a timing wrapper around every venue call), so
``core_overhead_us`` is what the trading path itself costs per open. Last line:

    opens_per_s=<x> open_p50_ms=<y> open_p99_ms=<z> audit_lag_p99_ms=<w>
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from config.logging import configure_logging
from core.atomic_position_manager import ApmConfig, AtomicPositionManager
from core.execution import Executor
from core.journal import Journal
from core.position_book import PositionBook
from core.position_lifecycle import PositionLifecycle
from core.prices import PriceBoard
from database.audit import AuditWriter
from exchanges.paper import PaperExchange
from tests.bench.scratch_db import scratch_database
from tests.figures import percentile
from tests.trading_harness import BTC, CountingIds, long_signal

DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - the log sink for the whole run


class Timed:
    """The venue, with the time spent inside its coroutines added up."""

    def __init__(self, venue: PaperExchange) -> None:
        self._venue = venue
        self.spent_s = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._venue, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                self.spent_s += time.perf_counter() - started

        return timed


async def main(n: int) -> None:
    # Production logging: JSON lines, here into /dev/null, so the figure includes the
    # cost of the daemon's own log lines but not of a terminal.
    configure_logging("json", "INFO", DEVNULL)
    async with scratch_database("trader_bench_atomic") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        with TemporaryDirectory() as spool:
            venue = PaperExchange(None)
            venue.set_price(BTC, "50000")
            timed = Timed(venue)
            audit = AuditWriter(pool, Path(spool))
            await audit.start()
            journal = Journal(audit, "main")
            executor = Executor(timed, journal)  # type: ignore[arg-type]
            book = PositionBook()
            prices = PriceBoard()
            apm = AtomicPositionManager(
                timed,  # type: ignore[arg-type]
                executor,
                book,
                CountingIds(),
                ApmConfig(account="main"),
                last_price=prices.price,
            )
            lifecycle = PositionLifecycle(timed, executor, book, apm, prices)  # type: ignore[arg-type]
            open_ms: list[float] = []
            overhead_us: list[float] = []
            started = time.perf_counter()
            for i in range(n):
                venue.set_price(BTC, str(50000 + (i % 50)))
                before_venue = timed.spent_s
                t0 = time.perf_counter()
                position = await apm.open_position_atomic(long_signal("0.01"))
                elapsed = time.perf_counter() - t0
                open_ms.append(elapsed * 1000)
                overhead_us.append((elapsed - (timed.spent_s - before_venue)) * 1e6)
                assert position.status.value == "active", position
                await lifecycle.close_position(position.id)
                # The daemon yields between requests (it awaits the outcome write); an
                # in-memory venue never suspends, so without this the writer would starve.
                await asyncio.sleep(0)
            total = time.perf_counter() - started
            await audit.flush(60)
            lag_ms = audit.lag_p99_s * 1000
            await audit.aclose()
            orders = await pool.fetchval("SELECT count(*) FROM monitoring.orders")
            await pool.close()
    print(f"positions={n} orders_recorded={orders} total_s={total:.2f}")
    print(
        f"core_overhead_us_p50={statistics.median(overhead_us):.0f}"
        f" core_overhead_us_p99={percentile(overhead_us, 99):.0f}"
    )
    print(
        f"opens_per_s={n / total:.0f} open_p50_ms={statistics.median(open_ms):.3f}"
        f" open_p99_ms={percentile(open_ms, 99):.3f} audit_lag_p99_ms={lag_ms:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
