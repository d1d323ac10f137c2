"""Benchmark: market-order round trips through the on-disk paper venue, no injected latency.

Each round trip is a market buy and a reduce-only market sell of the minimum BTC size;
every call is durable (journal append + fdatasync) before it returns. Prints the
throughput in orders per second and the per-order latency percentiles; the LAST line is
``paper_orders_per_s=<x> p99_ms=<y>``.

    python tests/bench/paper_bench.py [--round-trips 2000] [--no-fsync] [--dir PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.models import Side
from core.order_model import OrderType
from core.venue import OrderRequest
from exchanges.paper import PaperExchange

SYMBOL = "BTC/USDT:USDT"
AMOUNT = Decimal("0.001")


async def run(directory: Path, round_trips: int, fsync: bool) -> list[float]:
    """Per-order latencies in seconds."""
    latencies: list[float] = []
    async with PaperExchange(directory, fsync=fsync, balance=Decimal(1_000_000)) as venue:
        venue.set_price(SYMBOL, "50000")
        for i in range(round_trips):
            for side, reduce_only in ((Side.BUY, False), (Side.SELL, True)):
                request = OrderRequest(
                    f"bench-{i}-{side.value}",
                    SYMBOL,
                    side,
                    OrderType.MARKET,
                    AMOUNT,
                    reduce_only=reduce_only,
                )
                started = time.perf_counter()
                await venue.create_order(request)
                latencies.append(time.perf_counter() - started)
    return latencies


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--no-fsync", action="store_true", help="write without fdatasync")
    parser.add_argument("--dir", type=Path, help="state directory (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paper-bench-", dir=args.dir) as tmp:
        asyncio.run(run(Path(tmp) / "warmup", 50, not args.no_fsync))
        started = time.perf_counter()
        latencies = asyncio.run(run(Path(tmp) / "state", args.round_trips, not args.no_fsync))
        elapsed = time.perf_counter() - started
    latencies.sort()
    orders = len(latencies)
    per_s = orders / elapsed
    p50, p99, worst = (percentile(latencies, q) * 1000 for q in (0.5, 0.99, 1.0))
    print(f"orders={orders} elapsed_s={elapsed:.3f} fsync={not args.no_fsync}")
    print(f"latency_ms p50={p50:.3f} p99={p99:.3f} max={worst:.3f}")
    print(f"paper_orders_per_s={per_s:.0f} p99_ms={p99:.3f}")


if __name__ == "__main__":
    main()
