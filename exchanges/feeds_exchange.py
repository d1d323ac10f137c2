"""Live prices from a venue: ccxt pro ``watch_ticker`` when available, else polling.

``source`` is either a ccxt (pro) exchange instance or an ``ExchangeAdapter``:

- it has a usable ``watch_ticker`` (ccxt pro, ``has["watchTicker"]`` not false): one
  watcher per symbol; a watcher that reports the method unsupported falls back to polling;
- else it has ``fetch_price`` (an ``ExchangeAdapter``): polled every ``poll_interval_s``;
- else it has ``fetch_ticker`` (plain ccxt): polled the same way.

Every error (network, exchange, a bug in the source) is logged and retried after an
exponential back-off (``backoff_initial_s`` doubling up to ``backoff_max_s``, reset by a
success), so the feed survives disconnects; only cancellation stops a watcher. Ticks go
through a bounded queue that drops the oldest when the consumer lags: for prices, the
newest matters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import ccxt

from config.logging import get_logger
from core.models import Tick
from core.money import optional_decimal, utcnow
from exchanges.feeds_base import FeedBase

log = get_logger(__name__)

_END = object()


def ticker_to_tick(symbol: str, ticker: Mapping[str, Any]) -> Tick | None:
    """A ccxt ticker as a :class:`Tick` (``None`` when it carries no usable price)."""
    bid = optional_decimal(ticker.get("bid"), "bid")
    ask = optional_decimal(ticker.get("ask"), "ask")
    price = optional_decimal(ticker.get("last"), "last") or optional_decimal(
        ticker.get("close"), "close"
    )
    if price is None and bid is not None and ask is not None:
        price = (bid + ask) / 2
    if price is None or price <= 0:
        return None
    stamp = ticker.get("timestamp")
    ts = datetime.fromtimestamp(stamp / 1000, UTC) if isinstance(stamp, int | float) else utcnow()
    mark = optional_decimal(ticker.get("markPrice"), "markPrice")
    return Tick(symbol, price, ts, bid=bid, ask=ask, mark=mark)


class ExchangeFeed(FeedBase):
    """Ticks for ``symbols`` from ``source`` (see the module docstring)."""

    def __init__(
        self,
        source: Any,
        symbols: Sequence[str],
        *,
        poll_interval_s: float = 1.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        queue_size: int = 1000,
    ) -> None:
        super().__init__()
        if not symbols:
            raise ValueError("an exchange feed needs at least one symbol")
        self.source = source
        self.symbols = tuple(symbols)
        self.poll_interval_s = poll_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def can_watch(self) -> bool:
        watch = getattr(self.source, "watch_ticker", None)
        has = getattr(self.source, "has", None)
        supported = has.get("watchTicker", True) if isinstance(has, Mapping) else True
        return callable(watch) and bool(supported)

    async def _next(self) -> Tick | None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(s), name=f"feed-{s}") for s in self.symbols
            ]
        item = await self._queue.get()
        return item if isinstance(item, Tick) else None

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        # Wake a consumer blocked in _next.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_END)

    def _emit(self, tick: Tick) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(tick)

    async def _run(self, symbol: str) -> None:
        watching = self.can_watch
        failures = 0
        while not self._closed:
            try:
                tick = await (self._watch(symbol) if watching else self._poll(symbol))
            except Exception as exc:  # every failure is retried: a feed must not die
                if watching and isinstance(exc, ccxt.NotSupported | NotImplementedError):
                    log.warning("feed_watch_unsupported", symbol=symbol, error=str(exc))
                    watching = False
                    continue
                failures += 1
                delay = min(self.backoff_initial_s * 2 ** (failures - 1), self.backoff_max_s)
                log.warning(
                    "feed_error",
                    symbol=symbol,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay,
                    failures=failures,
                )
                if not await self._sleep(delay):
                    return
                continue
            failures = 0
            if tick is not None:
                self._emit(tick)
            if not watching and not await self._sleep(self.poll_interval_s):
                return

    async def _watch(self, symbol: str) -> Tick | None:
        ticker = await self.source.watch_ticker(symbol)
        return ticker_to_tick(symbol, ticker)

    async def _poll(self, symbol: str) -> Tick | None:
        if callable(getattr(self.source, "fetch_price", None)):
            tick = await self.source.fetch_price(symbol)
            if not isinstance(tick, Tick):
                raise TypeError(f"fetch_price returned {type(tick).__name__}, not a Tick")
            return tick
        ticker = await self.source.fetch_ticker(symbol)
        return ticker_to_tick(symbol, ticker)
