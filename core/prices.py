"""The latest price of each symbol, shared by everything that needs "the price now".

Updated by the tick loop before anything else sees the tick, read without awaiting.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from core.models import Tick


class PriceBoard:
    """Last tick per symbol."""

    def __init__(self) -> None:
        self._ticks: dict[str, Tick] = {}

    def update(self, tick: Tick) -> None:
        self._ticks[tick.symbol] = tick

    def price(self, symbol: str) -> Decimal | None:
        tick = self._ticks.get(symbol)
        return None if tick is None else tick.price

    def tick(self, symbol: str) -> Tick | None:
        return self._ticks.get(symbol)

    def last_ts(self) -> datetime | None:
        """Time of the newest tick of any symbol (for feed-age health checks)."""
        return max((t.ts for t in self._ticks.values()), default=None)
