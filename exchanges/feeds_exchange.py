"""Live prices from a venue: ccxt pro ``watch_ticker`` when available, else polling.

``ExchangeFeed(source, symbols, watcher=...)``:

- ``watcher`` (a ccxt pro instance of the venue, :func:`exchanges.ccxt_client.price_watcher`)
  streams ticks through ``watch_ticker``; the feed owns it and closes it with itself.
  Without one, ``source`` is watched when it has a usable ``watch_ticker`` (ccxt pro,
  ``has["watchTicker"]`` not false).
- ``source`` is polled every ``poll_interval_s``: through ``fetch_price`` (an
  ``ExchangeAdapter``) or ``fetch_ticker`` (plain ccxt). When the source is an
  ``ExchangeAdapter``, symbols are resolved through it before watching (a bare
  ``BTCUSDT`` is the account's perpetual, never spot) and ticks carry the unified symbol,
  watched or polled alike.

A watcher that reports the method unsupported is given up for polling. Any other watch
failure is logged and watching is retried after an exponential back-off
(``backoff_initial_s`` doubling up to ``backoff_max_s``, reset by a success); meanwhile
the source is polled, so prices keep coming while the stream is down. A failing poll with
nothing to fall back on waits out the same back-off. Only cancellation stops a symbol's
task. Ticks go through a bounded queue that drops the oldest when the consumer lags: for
prices, the newest matters. Error messages go through the one ccxt translation
(``exchanges/ccxt_errors.py``), so they are scrubbed like the adapter's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from config.logging import get_logger
from core.models import Tick
from core.money import optional_decimal, utcnow
from core.venue import ExchangeAdapter
from exchanges.ccxt_errors import is_translatable, is_unsupported, translate_ccxt_error
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
    """Ticks for ``symbols``, watched through ``watcher`` (or ``source``) and polled from
    ``source`` (see the module docstring)."""

    def __init__(
        self,
        source: Any,
        symbols: Sequence[str],
        *,
        watcher: Any = None,
        poll_interval_s: float = 1.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        queue_size: int = 1000,
    ) -> None:
        super().__init__()
        if not symbols:
            raise ValueError("an exchange feed needs at least one symbol")
        self.source = source
        self.watcher = watcher if watcher is not None else source
        self._owns_watcher = watcher is not None and watcher is not source
        self.symbols = tuple(symbols)
        self.poll_interval_s = poll_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._resolved: dict[str, str] = {}

    @property
    def can_watch(self) -> bool:
        watch = getattr(self.watcher, "watch_ticker", None)
        has = getattr(self.watcher, "has", None)
        supported = has.get("watchTicker", True) if isinstance(has, Mapping) else True
        return callable(watch) and bool(supported)

    @property
    def can_poll(self) -> bool:
        return any(callable(getattr(self.source, m, None)) for m in ("fetch_price", "fetch_ticker"))

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
        if self._owns_watcher:
            try:
                await self.watcher.close()
            except Exception as exc:
                log.warning("feed_watcher_close_failed", error=_describe(exc))

    def _emit(self, tick: Tick) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(tick)

    async def _run(self, symbol: str) -> None:
        loop = asyncio.get_running_loop()
        watchable = self.can_watch
        can_poll = self.can_poll
        rewatch_at = 0.0  # loop time at which a failed stream is tried again
        watch_failures = poll_failures = 0
        while not self._closed:
            watching = watchable and loop.time() >= rewatch_at
            try:
                tick = await (self._watch(symbol) if watching else self._poll(symbol))
            except Exception as exc:  # every failure is retried: a feed must not die
                if watching and is_unsupported(exc):
                    log.warning("feed_watch_unsupported", symbol=symbol, error=_describe(exc))
                    watchable = False
                    continue
                if watching:
                    watch_failures += 1
                    failures = watch_failures
                else:
                    poll_failures += 1
                    failures = poll_failures
                delay = min(self.backoff_initial_s * 2 ** (failures - 1), self.backoff_max_s)
                log.warning(
                    "feed_error",
                    symbol=symbol,
                    via="watch" if watching else "poll",
                    error=_describe(exc),
                    retry_in_s=delay,
                    failures=failures,
                )
                if watching and can_poll:
                    # The stream is down: poll until it is time to try it again.
                    rewatch_at = loop.time() + delay
                    continue
                if not await self._sleep(delay):
                    return
                continue
            if watching:
                watch_failures = 0
            else:
                poll_failures = 0
            if tick is not None:
                self._emit(tick)
            if not watching and not await self._sleep(self.poll_interval_s):
                return

    async def _symbol(self, symbol: str) -> str:
        """The unified symbol, resolved through the adapter when the source is one."""
        resolved = self._resolved.get(symbol)
        if resolved is None:
            resolved = symbol
            if isinstance(self.source, ExchangeAdapter):
                await self.source.load_markets()
                resolved = self.source.market(symbol).symbol
            self._resolved[symbol] = resolved
        return resolved

    async def _watch(self, symbol: str) -> Tick | None:
        unified = await self._symbol(symbol)
        ticker = await self.watcher.watch_ticker(unified)
        return ticker_to_tick(unified, ticker)

    async def _poll(self, symbol: str) -> Tick | None:
        if callable(getattr(self.source, "fetch_price", None)):
            tick = await self.source.fetch_price(symbol)
            if not isinstance(tick, Tick):
                raise TypeError(f"fetch_price returned {type(tick).__name__}, not a Tick")
            return tick
        ticker = await self.source.fetch_ticker(symbol)
        return ticker_to_tick(symbol, ticker)


def _describe(exc: BaseException) -> str:
    """A loggable message: ccxt's through the one translation (scrubbed), others as is."""
    if is_translatable(exc):
        return str(translate_ccxt_error(exc))
    return f"{type(exc).__name__}: {exc}"
