"""Exchange feed: watch_ticker, polling, reconnect with back-off, fallback, offline fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import ccxt
import ccxt.pro
from pydantic import SecretStr
from structlog.testing import capture_logs

from config.settings import load_settings
from exchanges.feeds import ExchangeFeed, build_feed, ticker_to_tick
from exchanges.paper import PaperExchange
from tests.unit.ccxt_fixtures import adapter_for, route_ticker

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
T0_MS = 1_709_294_400_000


class FakeWatcher:
    """A ccxt pro stand-in: watch_ticker answers from a script of tickers or exceptions."""

    has = {"watchTicker": True}  # noqa: RUF012

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls = 0
        self.closed = 0

    async def watch_ticker(self, symbol: str) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(0)
        if not self.script:
            await asyncio.sleep(3600)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return {"symbol": symbol, **item}

    async def close(self) -> None:
        self.closed += 1


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


def exchange_settings(**overrides: Any) -> Any:
    """Settings for TRADER_FEED=exchange on Bybit, with credentials; a bare symbol."""
    values: dict[str, Any] = {
        "exchange": "bybit",
        "feed": "exchange",
        "symbols": "BTCUSDT",
        "api_key": SecretStr("feed-api-key-0001"),
        "api_secret": SecretStr("feed-api-secret-0001"),
    }
    values.update(overrides)
    return load_settings(**values)


class ScriptedWatch:
    """Replaces a ccxt pro instance's watch_ticker (and records its close): offline."""

    def __init__(self, watcher: Any, script: list[Any]) -> None:
        self.script = script
        self.symbols: list[str] = []
        self.closed = 0
        self._close = watcher.close
        watcher.watch_ticker = self.watch_ticker
        watcher.close = self.close

    async def watch_ticker(self, symbol: str, params: Any = None) -> dict[str, Any]:
        self.symbols.append(symbol)
        await asyncio.sleep(0)
        if not self.script:
            await asyncio.sleep(3600)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return {"symbol": symbol, **item}

    async def close(self) -> None:
        self.closed += 1
        await self._close()


async def test_build_feed_watches_a_pro_instance_of_the_same_exchange() -> None:
    """build_feed gives the exchange feed a ccxt pro instance of the venue, with the same
    credentials and testnet, and watches it; the adapter is not polled; the pro instance
    is closed with the feed; a bare id is watched as the perpetual."""
    adapter, venue = adapter_for("bybit")
    feed = build_feed(exchange_settings(testnet=True), adapter)
    assert isinstance(feed, ExchangeFeed)
    watcher = feed.watcher
    assert (type(watcher), watcher.apiKey, watcher.isSandboxModeEnabled, feed.can_watch) == (
        ccxt.pro.bybit,
        "feed-api-key-0001",
        True,
        True,
    )
    script = ScriptedWatch(watcher, [{"last": 60000.5, "timestamp": T0_MS}, {"last": 60001.0}])
    ticks = await first_ticks(feed, 2)
    assert [(t.symbol, t.price) for t in ticks] == [(BTC, D("60000.5")), (BTC, D("60001.0"))]
    assert (script.symbols[:2], venue.sent, script.closed) == ([BTC, BTC], [], 1)


async def test_build_feed_polls_the_adapter_while_watching_fails() -> None:
    """A watch that raises falls back to polling the adapter: prices keep coming over
    REST while the stream is down."""
    adapter, venue = adapter_for("bybit")
    route_ticker(venue, "bybit", last="50000.0")
    feed = build_feed(exchange_settings(), adapter)
    assert isinstance(feed, ExchangeFeed)
    feed.poll_interval_s = 0.01
    feed.backoff_initial_s = 60  # the stream is not tried again within this test
    script = ScriptedWatch(feed.watcher, [ccxt.NetworkError("bybit ws closed")])
    ticks = await first_ticks(feed, 2)
    assert [(t.symbol, t.price) for t in ticks] == [(BTC, D("50000.0")), (BTC, D("50000.0"))]
    assert (len(script.symbols), len(venue.to("/v5/market/tickers")) >= 2) == (1, True)
    assert script.closed == 1


async def test_failed_stream_is_polled_until_it_is_watched_again() -> None:
    """After a watch failure the source is polled, and once the back-off has passed the
    stream is tried again and ticks come from it."""
    paper = PaperExchange()
    paper.set_price(BTC, "50000")
    watcher = FakeWatcher([ccxt.NetworkError("down"), {"last": 60000.0}])
    feed = ExchangeFeed(paper, [BTC], watcher=watcher, poll_interval_s=0.01,
                        backoff_initial_s=0.05)  # fmt: skip
    prices = []
    async with feed:
        async for tick in feed:
            prices.append(tick.price)
            if tick.price == D(60000):
                break
    assert (prices[0], prices[-1], set(prices[:-1]), watcher.closed) == (
        D(50000),
        D(60000),
        {D(50000)},
        1,
    )
