"""Synthetic feed: a seeded, realistic, reproducible random walk per symbol."""

from __future__ import annotations

import asyncio
import itertools
import math
from decimal import Decimal as D

from core.models import Tick
from exchanges.feeds import SyntheticFeed

BTC, ETH, MNT = "BTC/USDT:USDT", "ETH/USDT:USDT", "MNT/USDT:USDT"


async def take(feed: SyntheticFeed, n: int) -> list[Tick]:
    ticks = []
    async with feed:
        async for tick in feed:
            ticks.append(tick)
            if len(ticks) == n:
                break
    return ticks


def path(ticks: list[Tick]) -> list[tuple[str, D]]:
    return [(t.symbol, t.price) for t in ticks]


async def test_same_seed_same_sequence_other_seed_differs() -> None:
    """Two feeds with seed 3 give the same (symbol, price) sequence; seed 4 another one."""
    a = await take(SyntheticFeed([BTC, ETH], seed=3, interval_s=0), 200)
    b = await take(SyntheticFeed([BTC, ETH], seed=3, interval_s=0), 200)
    c = await take(SyntheticFeed([BTC, ETH], seed=4, interval_s=0), 200)
    assert path(a) == path(b)
    assert path(a) != path(c)


async def test_symbols_interleave_and_prices_sit_on_the_tick() -> None:
    """One tick per symbol per round, in order; prices are multiples of the market tick."""
    ticks = await take(SyntheticFeed([BTC, ETH, MNT], seed=1, interval_s=0), 300)
    assert [t.symbol for t in ticks[:6]] == [BTC, ETH, MNT, BTC, ETH, MNT]
    steps = {BTC: D("0.1"), ETH: D("0.01"), MNT: D("0.0001")}
    assert all(t.price % steps[t.symbol] == 0 and t.price > 0 for t in ticks)
    assert all(t.ts.tzinfo is not None for t in ticks)


async def test_adding_a_symbol_keeps_the_other_paths() -> None:
    """A symbol's path depends on the seed and the symbol only."""
    alone = await take(SyntheticFeed([BTC], seed=9, interval_s=0), 50)
    mixed = await take(SyntheticFeed([ETH, BTC], seed=9, interval_s=0), 100)
    assert path(alone) == [p for p in path(mixed) if p[0] == BTC]


async def test_volatility_is_realistic() -> None:
    """Annualised volatility of 1-second BTC steps is within 40-70 % (configured 55 %)."""
    feed = SyntheticFeed([BTC], seed=5, interval_s=0, step_s=1.0, start_prices={BTC: "60000"})
    prices = [t.price for t in await take(feed, 5000)]
    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    annual = math.sqrt(var * 365 * 24 * 3600)
    assert 0.40 < annual < 0.70
    assert abs(prices[-1] / prices[0] - 1) < D("0.1")


async def test_start_prices_and_max_ticks() -> None:
    """The walk starts near the given price and the feed ends after max_ticks."""
    feed = SyntheticFeed([ETH], seed=2, interval_s=0, start_prices={ETH: "1234.56"}, max_ticks=5)
    async with feed:
        ticks = [t async for t in feed]
    assert len(ticks) == 5
    assert abs(ticks[0].price - D("1234.56")) < D(5)


async def test_interval_paces_rounds_and_close_stops_a_sleeping_feed() -> None:
    """With interval_s the second round waits; aclose ends a consumer that is waiting."""
    feed = SyntheticFeed([BTC], seed=1, interval_s=30)
    first = await feed.__anext__()
    assert first.symbol == BTC
    waiter = asyncio.create_task(feed.__anext__())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await feed.aclose()
    try:
        await asyncio.wait_for(waiter, 1)
        ended = False
    except StopAsyncIteration:
        ended = True
    assert ended
