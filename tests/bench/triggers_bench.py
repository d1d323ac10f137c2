"""Benchmark of core.triggers.TriggerBook: is the cost per tick flat in the book's size?

    python tests/bench/triggers_bench.py [--ticks N] [--naive-ticks M] [--seed S] [--repeat R]

Builds books of 1,000, 10,000 and 100,000 resting orders on one symbol (every emulated
type, a quarter trailing: percent and amount, with far activations, without activation,
and with caller-given initial extremes so there are many trailing groups), placed so
that few fire (levels at least 20 % away from the walk, wide callbacks; 0.1 % of the
orders sit near the price so the firing path runs too, and 0.2 % expire during the run).
A seeded random walk of N ticks (default 200,000) is replayed through each book (best of
R runs, default 3, each on a freshly armed book). The naive reference evaluator
(tests/trigger_reference.py) replays the first M ticks (default 300) on the same 100k
orders, and it and the book must agree on every fire and expiry there (a sanity check
of the benchmark's own books: the equivalence proof is the property test,
tests/unit/test_triggers_property.py, on thousands of random books and paths).
RSS is measured in a fresh child process that builds the 100k orders, arms them and
replays the whole walk: ``rss_mb_100k`` is that process's whole RSS at the end (the
interpreter, the Order values and the book), and the book's own share (RSS growth from
arming) is printed beside it. One line per measurement; the last line sums up.
"""

from __future__ import annotations

import argparse
import gc
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from core.models import Side
from core.order_model import Order, OrderType
from core.triggers import TickResult, TriggerBook
from tests.trigger_reference import ReferenceBook

SYMBOL = "BTC/USDT:USDT"
P0 = Decimal(30000)
GRID = Decimal("0.1")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
TICK_EVERY = timedelta(milliseconds=10)
SIZES = (1_000, 10_000, 100_000)
SIMPLE_TYPES = (
    OrderType.LIMIT,
    OrderType.STOP_MARKET,
    OrderType.STOP_LIMIT,
    OrderType.TAKE_PROFIT_MARKET,
)

Armable = tuple[Order, Decimal | None]


def walk(ticks: int, seed: int) -> list[Decimal]:
    """A seeded random walk on the price grid: ±0..5 grid steps per tick."""
    rng = random.Random(seed)
    units = int(P0 / GRID)
    prices = []
    for _ in range(ticks):
        units += rng.randint(-5, 5)
        prices.append(units * GRID)
    return prices


def _price(rng: random.Random, low: float, high: float) -> Decimal:
    """A price on the grid between ``low`` and ``high`` times P0."""
    return (P0 * Decimal(str(round(rng.uniform(low, high), 6)))).quantize(GRID)


def build_orders(count: int, seed: int, ticks: int) -> list[Armable]:
    """``count`` orders (with their initial extreme, if any) that mostly never fire."""
    rng = random.Random(seed)
    orders: list[Armable] = []
    run_end = T0 + TICK_EVERY * ticks
    for i in range(count):
        side = rng.choice((Side.BUY, Side.SELL))
        near = rng.random() < 0.001
        # Levels below the price for orders that fire on the way down, above otherwise.
        below = (rng.uniform(0.995, 0.999), 0.999) if near else (0.5, 0.8)
        above = (1.001, rng.uniform(1.001, 1.005)) if near else (1.2, 1.5)
        fields: dict[str, Any] = {}
        initial = None
        if i % 4 == 3:
            type_ = OrderType.TRAILING_STOP
            if rng.random() < 0.5:
                fields["trail_percent"] = (
                    Decimal(rng.choice(("0.3", "0.5"))) if near else (Decimal(rng.randint(20, 50)))
                )
            else:
                fraction = rng.uniform(0.002, 0.005) if near else rng.uniform(0.2, 0.5)
                fields["trail_amount"] = _price(rng, fraction, fraction)
            kind = rng.random()
            if kind < 0.5:  # a far activation
                fields["activation_price"] = _price(rng, *(above if side is Side.SELL else below))
            elif kind < 0.75:  # active from a caller-given extreme: many distinct groups
                span = (1.0, 1.1) if side is Side.SELL else (0.9, 1.0)
                initial = _price(rng, *span)
        else:
            type_ = rng.choice(SIMPLE_TYPES)
            buy = side is Side.BUY
            fires_below = (type_ in (OrderType.LIMIT, OrderType.TAKE_PROFIT_MARKET)) == buy
            level = _price(rng, *(below if fires_below else above))
            if type_ is OrderType.LIMIT:
                fields["price"] = level
            else:
                fields["trigger_price"] = level
                fields["limit_price"] = level
        draw = rng.random()
        if draw < 0.002:
            fields["expires_at"] = T0 + TICK_EVERY * rng.randrange(ticks)
        elif draw < 0.2:
            fields["expires_at"] = run_end + timedelta(days=1)
        order = Order(
            client_order_id=f"o{i}",
            account="main",
            exchange="paper",
            symbol=SYMBOL,
            side=side,
            type=type_,
            amount=Decimal(1),
            emulated=True,
            created_at=T0 - timedelta(seconds=count - i),
            **fields,
        )
        orders.append((order, initial))
    return orders


def arm_all(book: Any, orders: list[Armable]) -> float:
    """Arm every order; return the seconds taken."""
    start = time.perf_counter()
    for order, initial in orders:
        book.arm(order, initial_price=initial)
    return time.perf_counter() - start


def replay(
    book: Any, prices: list[Decimal], stamps: list[datetime]
) -> tuple[float, list[tuple[int, TickResult]]]:
    """Feed every tick; return the seconds taken and the non-empty results by tick index."""
    on_tick = book.on_tick
    hits: list[tuple[int, TickResult]] = []
    start = time.perf_counter()
    for i, price in enumerate(prices):
        result = on_tick(SYMBOL, price, stamps[i])
        if result.fired or result.expired:
            hits.append((i, result))
    return time.perf_counter() - start, hits


def measure_book(
    size: int, prices: list[Decimal], stamps: list[datetime], seed: int, repeat: int
) -> float:
    """Ticks per second of a TriggerBook holding ``size`` orders: the best of ``repeat``
    replays, each on a freshly armed book (the machine may be shared: the best run is the
    one least disturbed, as with ``timeit``)."""
    orders = build_orders(size, seed, len(prices))
    runs = []
    for _ in range(repeat):
        book = TriggerBook()
        arm_s = arm_all(book, orders)
        gc.collect()
        elapsed, hits = replay(book, prices, stamps)
        runs.append((elapsed, arm_s, hits, len(book)))
    elapsed, arm_s, hits, resting = min(runs, key=lambda run: run[0])
    rate = len(prices) / elapsed
    fired = sum(len(r.fired) for _, r in hits)
    expired = sum(len(r.expired) for _, r in hits)
    spread = max(run[0] for run in runs) / elapsed
    print(
        f"book orders={size} ticks={len(prices)} ticks_per_s={rate:.0f} "
        f"us_per_tick={1e6 / rate:.2f} fired={fired} expired={expired} "
        f"resting_after={resting} arm_us_per_order={1e6 * arm_s / size:.2f} "
        f"best_of={repeat} worst_over_best={spread:.2f}"
    )
    return rate


def measure_naive(
    size: int, prices: list[Decimal], stamps: list[datetime], seed: int, order_ticks: int
) -> float:
    """Ticks per second of the naive reference on the ``size`` orders the book ran with
    (built for a walk of ``order_ticks``); checks it agrees with the book."""
    orders = build_orders(size, seed, order_ticks)
    naive, book = ReferenceBook(), TriggerBook()
    arm_all(naive, orders)
    arm_all(book, orders)
    elapsed, naive_hits = replay(naive, prices, stamps)
    _, book_hits = replay(book, prices, stamps)
    if naive_hits != book_hits:
        raise SystemExit("MISMATCH: the book and the naive reference disagree")
    rate = len(prices) / elapsed
    print(
        f"naive orders={size} ticks={len(prices)} ticks_per_s={rate:.2f} "
        f"ms_per_tick={1e3 / rate:.1f} agrees_with_book=yes nonempty_ticks={len(naive_hits)}"
    )
    return rate


def rss_child(size: int, seed: int, ticks: int) -> None:
    """(In a fresh process.) Print the RSS growth from arming ``size`` prebuilt orders,
    and the whole process's RSS after replaying the walk through them."""
    import psutil  # type: ignore[import-untyped, unused-ignore]

    process = psutil.Process()
    orders = build_orders(size, seed, ticks)
    gc.collect()
    before = process.memory_info().rss
    book = TriggerBook()
    arm_all(book, orders)
    gc.collect()
    armed = process.memory_info().rss
    prices = walk(ticks, seed)
    replay(book, prices, [T0 + TICK_EVERY * i for i in range(len(prices))])
    del prices
    gc.collect()
    after = process.memory_info().rss
    print(f"{(armed - before) / 2**20:.1f} {after / 2**20:.1f} {len(book)}")


def measure_rss(size: int, seed: int, ticks: int) -> float:
    """The book's RSS in MB, measured in a child process so earlier runs do not blur it."""
    command = [sys.executable, __file__, "--rss-child", str(size)]
    command += ["--seed", str(seed), "--ticks", str(ticks)]
    out = subprocess.run(
        command,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    book_mb, total_mb = float(out[0]), float(out[1])
    print(
        f"rss orders={size} process_total_mb={total_mb:.1f} (after the replay) "
        f"book_mb={book_mb:.1f} (RSS growth from arming)"
    )
    return total_mb


def measure_tick_to_submit(resting: int = 10_000, fires: int = 2_000) -> float:
    """p99 microseconds from a tick entering the daemon's tick loop to the order manager
    handing the fired order to the venue (paper, in memory, zero latency).

    The whole daemon path runs: price board, venue hook, TriggerBook (with ``resting``
    orders that do not fire), the TRIGGERED journal entry and the spawned execution task
    up to the venue request being built (the SUBMITTED journal entry, a ~1 µs in-memory
    append, follows it). Each round arms one emulated sell stop just under the price and
    sends the tick that crosses it.
    """
    import asyncio
    import os

    from config.logging import configure_logging
    from core.models import Side
    from core.order_model import Order, OrderType
    from tests.trading_harness import BTC, build_stack

    configure_logging("json", "INFO", open(os.devnull, "w"))  # noqa: SIM115

    def stop(cid: str, trigger: Decimal) -> Order:
        return Order(
            client_order_id=cid,
            account="main",
            exchange="paper",
            symbol=BTC,
            side=Side.SELL,
            type=OrderType.STOP_MARKET,
            amount=Decimal("0.001"),
            trigger_price=trigger,
            emulated=True,
        )

    async def run() -> float:
        stack = build_stack()
        stack.orders.rearm(
            stop(f"td-main-r{i}-mo-1", Decimal(1000 + i % 500)) for i in range(resting)
        )
        price = Decimal(50000)
        for n in range(fires):
            stack.orders.rearm([stop(f"td-main-f{n}-mo-1", price - 1)])
            price -= 2
            stack.tick(BTC, price)
            await stack.tasks.drain(5)
            price += 2
            stack.tick(BTC, price)  # back up, so the next round starts from the same place
        samples = sorted(stack.orders.latencies_us)
        return samples[int(len(samples) * 0.99) - 1]

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--naive-ticks", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="book replays per size (best)")
    parser.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.seed, args.ticks)
        return
    prices = walk(args.ticks, args.seed)
    stamps = [T0 + TICK_EVERY * i for i in range(len(prices))]
    print(f"walk ticks={len(prices)} first={prices[0]} min={min(prices)} max={max(prices)}")
    rates = {size: measure_book(size, prices, stamps, args.seed, args.repeat) for size in SIZES}
    naive_ticks = min(args.naive_ticks, len(prices))
    naive = measure_naive(
        SIZES[-1], prices[:naive_ticks], stamps[:naive_ticks], args.seed, len(prices)
    )
    rss_mb = measure_rss(SIZES[-1], args.seed, args.ticks)
    latency = measure_tick_to_submit()
    print(f"tick_to_submit resting=10000 p99_us={latency:.1f}")
    small, big = rates[SIZES[0]], rates[SIZES[-1]]
    print(
        f"ticks_per_s_1k={small:.0f} ticks_per_s_100k={big:.0f} flat_ratio={big / small:.3f} "
        f"vs_naive_100k={big / naive:.0f} rss_mb_100k={rss_mb:.1f} "
        f"tick_to_submit_p99_us={latency:.0f}"
    )


if __name__ == "__main__":
    main()
