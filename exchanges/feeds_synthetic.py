"""A seeded synthetic price feed: one geometric random walk per symbol, interleaved.

The default feed offline. Each symbol walks with its own realistic annualised volatility
(50-80 %, crypto-like), per-tick steps scaled to the simulated time between ticks, and
prices rounded to the market's tick. Each symbol has its own random stream derived from
the seed and the symbol, so the same seed always gives the same sequence of
``(symbol, price)`` and adding a symbol does not change the others' paths.

The walk is computed in ``Decimal``: only the standard normal draw is a float, converted
through ``repr`` at this boundary like any other outside number.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal

from core.models import Tick
from core.money import round_to_step, to_decimal, utcnow
from exchanges.feeds_base import FeedBase
from exchanges.paper_markets import BUILTIN_MARKETS

SECONDS_PER_YEAR = 365 * 24 * 3600
DEFAULT_START_PRICES: Mapping[str, Decimal] = {
    "BTC/USDT:USDT": Decimal(60000),
    "ETH/USDT:USDT": Decimal(3000),
    "SOL/USDT:USDT": Decimal(150),
    "MNT/USDT:USDT": Decimal("0.8"),
    "XRP/USDT:USDT": Decimal("0.6"),
    "DOGE/USDT:USDT": Decimal("0.15"),
}
DEFAULT_ANNUAL_VOL: Mapping[str, float] = {
    "BTC/USDT:USDT": 0.55,
    "ETH/USDT:USDT": 0.70,
    "SOL/USDT:USDT": 0.80,
    "MNT/USDT:USDT": 0.80,
}
FALLBACK_VOL = 0.65
FALLBACK_START = Decimal(100)


def tick_size_for(symbol: str, price: Decimal) -> Decimal:
    """The market's tick when known, else about five significant digits of ``price``."""
    market = BUILTIN_MARKETS.get(symbol)
    if market is not None:
        return market.tick_size
    exponent = math.floor(math.log10(float(price))) - 4 if price > 0 else -2
    return Decimal(1).scaleb(exponent)


class _Walk:
    """One symbol's random walk."""

    __slots__ = ("drift", "price", "rng", "scale", "symbol", "tick_size")

    def __init__(self, symbol: str, seed: int, start: Decimal, vol: float, step_s: float):
        self.symbol = symbol
        self.rng = random.Random(f"{seed}:{symbol}")
        self.price = start
        self.tick_size = tick_size_for(symbol, start)
        dt = step_s / SECONDS_PER_YEAR
        self.scale = Decimal(repr(vol * math.sqrt(dt)))
        # Ito drift correction so the expected price stays flat.
        self.drift = Decimal(repr(-0.5 * vol * vol * dt))

    def step(self) -> Decimal:
        z = Decimal(repr(self.rng.gauss(0.0, 1.0)))
        self.price = self.price * (self.drift + self.scale * z).exp()
        rounded = round_to_step(self.price, self.tick_size)
        return rounded if rounded > 0 else self.tick_size


class SyntheticFeed(FeedBase):
    """A reproducible random walk for ``symbols``.

    ``interval_s`` is the real time between rounds (one tick per symbol per round; 0 means
    no sleeping, for tests); ``step_s`` the simulated time a round stands for (defaults to
    ``interval_s``, or 1 s when that is 0). ``max_ticks`` ends the feed after that many
    ticks.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int = 42,
        interval_s: float = 1.0,
        start_prices: Mapping[str, Decimal | str | int] | None = None,
        *,
        step_s: float | None = None,
        annual_vol: Mapping[str, float] | None = None,
        max_ticks: int | None = None,
    ) -> None:
        super().__init__()
        if not symbols:
            raise ValueError("a synthetic feed needs at least one symbol")
        if interval_s < 0:
            raise ValueError("interval_s must be >= 0")
        self.interval_s = interval_s
        step = step_s if step_s is not None else (interval_s or 1.0)
        starts = {**DEFAULT_START_PRICES, **(start_prices or {})}
        vols = {**DEFAULT_ANNUAL_VOL, **(annual_vol or {})}
        self._walks = [
            _Walk(
                s,
                seed,
                to_decimal(starts.get(s, FALLBACK_START), f"start price of {s}"),
                vols.get(s, FALLBACK_VOL),
                step,
            )
            for s in symbols
        ]
        self._max_ticks = max_ticks
        self._emitted = 0
        self._index = 0
        self._next_round_at: float | None = None

    async def _next(self) -> Tick | None:
        if self._max_ticks is not None and self._emitted >= self._max_ticks:
            return None
        if self._index == 0:
            loop = asyncio.get_running_loop()
            if self._next_round_at is None:
                self._next_round_at = loop.time()
            elif not await self._sleep(self._next_round_at - loop.time()):
                return None
            # Schedule from the plan, not from now, so the rate does not drift.
            self._next_round_at += self.interval_s
        walk = self._walks[self._index]
        self._index = (self._index + 1) % len(self._walks)
        self._emitted += 1
        return Tick(walk.symbol, walk.step(), utcnow())
