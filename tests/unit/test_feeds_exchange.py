"""Exchange feed: watch_ticker, polling, reconnect with back-off, fallback, offline fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import ccxt
from structlog.testing import capture_logs

from exchanges.feeds import ExchangeFeed, ticker_to_tick
from exchanges.paper import PaperExchange

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
T0_MS = 1_709_294_400_000


class FakeWatcher:
    """A ccxt pro stand-in: watch_ticker answers from a script of tickers or exceptions."""

    has = {"watchTicker": True}  # noqa: RUF012

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls = 0

    async def watch_ticker(self, symbol: str) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(0)
        if not self.script:
            await asyncio.sleep(3600)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return {"symbol": symbol, **item}


async def first_ticks(feed: ExchangeFeed, n: int) -> list[Any]:
    out = []
    async with feed:
        async for tick in feed:
            out.append(tick)
            if len(out) == n:
                break
    return out


def test_ticker_conversion_uses_decimal_from_text() -> None:
    """A ccxt ticker becomes a Tick with exact Decimals and an aware timestamp."""
    tick = ticker_to_tick(BTC, {"last": 0.1, "bid": 0.09, "ask": 0.11, "timestamp": T0_MS})
    assert tick is not None
    assert (tick.price, tick.bid, tick.ask) == (D("0.1"), D("0.09"), D("0.11"))
    assert tick.ts == datetime.fromtimestamp(T0_MS / 1000, UTC)
    assert ticker_to_tick(BTC, {"last": None, "bid": 1, "ask": 3}).price == D(2)  # type: ignore[union-attr]
    assert ticker_to_tick(BTC, {"last": None}) is None


async def test_watch_ticker_stream() -> None:
    """With a ccxt pro source, ticks come from watch_ticker."""
    source = FakeWatcher([{"last": 60000.5, "timestamp": T0_MS}, {"last": 60001.0}])
    ticks = await first_ticks(ExchangeFeed(source, [BTC]), 2)
    assert [(t.symbol, t.price) for t in ticks] == [(BTC, D("60000.5")), (BTC, D("60001.0"))]


async def test_errors_reconnect_with_exponential_backoff() -> None:
    """Two network errors are logged and retried after 0.01 s then 0.02 s; ticks resume."""
    source = FakeWatcher([ccxt.NetworkError("down"), ccxt.NetworkError("down"), {"last": 1.5}])
    feed = ExchangeFeed(source, [BTC], backoff_initial_s=0.01, backoff_max_s=1)
    with capture_logs() as logs:
        [tick] = await first_ticks(feed, 1)
    assert tick.price == D("1.5")
    retries = [e["retry_in_s"] for e in logs if e["event"] == "feed_error"]
    assert retries == [0.01, 0.02]
    assert source.script == []  # every scripted answer was consumed, in order


async def test_unsupported_watch_falls_back_to_polling_fetch_price() -> None:
    """A source whose watch_ticker is unsupported is polled through fetch_price instead."""
    paper = PaperExchange()
    paper.set_price(BTC, "50000")

    class Hybrid(FakeWatcher):
        async def fetch_price(self, symbol: str) -> Any:
            return await paper.fetch_price(symbol)

    source = Hybrid([ccxt.NotSupported("no ws")])
    ticks = await first_ticks(ExchangeFeed(source, [BTC], poll_interval_s=0.01), 2)
    assert [t.price for t in ticks] == [D(50000), D(50000)]
    assert source.calls == 1


async def test_polls_an_adapter_for_every_symbol() -> None:
    """An ExchangeAdapter (here the paper venue) is polled for each symbol."""
    paper = PaperExchange()
    paper.set_price(BTC, "50000")
    paper.set_price(ETH, "3000")
    ticks = await first_ticks(ExchangeFeed(paper, [BTC, ETH], poll_interval_s=0.01), 4)
    assert {(t.symbol, t.price) for t in ticks} == {(BTC, D(50000)), (ETH, D(3000))}


async def test_polls_plain_ccxt_fetch_ticker() -> None:
    """A plain ccxt source without websockets is polled through fetch_ticker."""

    class PlainCcxt:
        has = {"watchTicker": None, "fetchTicker": True}  # noqa: RUF012

        async def fetch_ticker(self, symbol: str) -> dict[str, Any]:
            return {"symbol": symbol, "last": 2.5, "timestamp": T0_MS}

    feed = ExchangeFeed(PlainCcxt(), [BTC], poll_interval_s=0.01)
    assert not feed.can_watch
    [tick] = await first_ticks(feed, 1)
    assert tick.price == D("2.5")


async def test_close_stops_watchers_and_wakes_the_consumer() -> None:
    """aclose cancels the watcher tasks and ends a consumer waiting for a tick."""
    source = FakeWatcher([])
    feed = ExchangeFeed(source, [BTC])
    waiter = asyncio.create_task(feed.__anext__())
    await asyncio.sleep(0.02)
    tasks: Callable[[], list[asyncio.Task[None]]] = lambda: feed._tasks  # noqa: E731
    running = tasks()
    assert len(running) == 1
    await feed.aclose()
    assert all(t.done() for t in running)
    ended = False
    try:
        await asyncio.wait_for(waiter, 1)
    except StopAsyncIteration:
        ended = True
    assert ended
