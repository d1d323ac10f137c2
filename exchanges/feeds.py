"""Price feeds (docs/architecture.md, 'Data flow'): every feed yields
:class:`~core.models.Tick` values through ``async for tick in feed`` and is an async
context manager.

==================  ==========================================================  ================
feed                what                                                        module
==================  ==========================================================  ================
``SyntheticFeed``   seeded geometric random walk, the default offline           feeds_synthetic
``ReplayFeed``      a tick or OHLCV CSV at a chosen speed, optionally followed  feeds_replay
``ExchangeFeed``    ccxt pro ``watch_ticker``, else polling, with back-off      feeds_exchange
``ManualFeed``      ticks pushed by a test                                      here
==================  ==========================================================  ================

:func:`build_feed` picks one from ``TRADER_FEED``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.models import Tick
from core.money import require_aware, to_decimal, utcnow
from exchanges.feeds_base import FeedBase, PriceFeed
from exchanges.feeds_exchange import ExchangeFeed, ticker_to_tick
from exchanges.feeds_replay import ReplayFeed, parse_timestamp
from exchanges.feeds_synthetic import SyntheticFeed

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = [
    "ExchangeFeed",
    "FeedBase",
    "ManualFeed",
    "PriceFeed",
    "ReplayFeed",
    "SyntheticFeed",
    "build_feed",
    "parse_timestamp",
    "ticker_to_tick",
]

_END = object()


class ManualFeed(FeedBase):
    """A feed a test drives: ``await feed.push("BTC/USDT:USDT", "50000")``, then iterate.

    :meth:`end` finishes the stream after the ticks already pushed; :meth:`aclose` ends it
    at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    async def push(
        self,
        symbol: str | Tick,
        price: Decimal | str | int | None = None,
        ts: datetime | None = None,
    ) -> Tick:
        """Queue a tick (a :class:`Tick`, or a symbol and a price) and yield to the loop."""
        tick = self.put_nowait(symbol, price, ts)
        await asyncio.sleep(0)
        return tick

    def put_nowait(
        self,
        symbol: str | Tick,
        price: Decimal | str | int | None = None,
        ts: datetime | None = None,
    ) -> Tick:
        """Queue a tick without awaiting (from synchronous test code)."""
        if isinstance(symbol, Tick):
            tick = symbol
        else:
            if price is None:
                raise ValueError("push(symbol, price): price is required")
            stamp = utcnow() if ts is None else require_aware(ts, "ts")
            tick = Tick(symbol, to_decimal(price, "price"), stamp)
        self._queue.put_nowait(tick)
        return tick

    def end(self) -> None:
        """Finish the stream once the queued ticks are consumed."""
        self._queue.put_nowait(_END)

    @property
    def pending(self) -> int:
        """Ticks pushed and not consumed yet."""
        return self._queue.qsize()

    async def _next(self) -> Tick | None:
        item = await self._queue.get()
        return item if isinstance(item, Tick) else None

    async def _close(self) -> None:
        self._queue.put_nowait(_END)


def build_feed(settings: Settings, adapter: Any = None, *, interval_s: float = 1.0) -> PriceFeed:
    """The feed ``TRADER_FEED`` names: ``synthetic``, ``exchange`` or ``replay:PATH``.

    A synthetic feed starts from the adapter's last known prices when it has any (a paper
    venue reopened after a restart), so prices continue instead of jumping back. An
    exchange feed watches a ccxt pro instance of ``TRADER_EXCHANGE`` (same credentials,
    same testnet) and polls ``adapter`` while watching is unavailable.
    """
    kind = settings.feed
    if kind == "synthetic":
        last_prices = getattr(adapter, "last_prices", None)
        start = last_prices() if callable(last_prices) else None
        return SyntheticFeed(
            settings.symbols, seed=settings.feed_seed, interval_s=interval_s, start_prices=start
        )
    if kind == "exchange":
        if adapter is None:
            raise ValueError("TRADER_FEED=exchange needs an exchange adapter")
        # Watched through a ccxt pro instance of the same venue where ccxt has one; the
        # adapter stays the polling fallback. The feed closes the watcher with itself.
        from exchanges.ccxt_client import price_watcher_from_settings  # imports ccxt

        watcher = price_watcher_from_settings(settings)
        return ExchangeFeed(adapter, settings.symbols, watcher=watcher)
    if kind.startswith("replay:"):
        return ReplayFeed(
            Path(kind.removeprefix("replay:")),
            settings.symbols,
            speed=settings.feed_speed,
            follow=settings.feed_follow,
            restamp=True,
        )
    raise ValueError(f"unknown feed {kind!r}")
