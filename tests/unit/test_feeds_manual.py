"""Manual feed for tests, and build_feed choosing a feed from TRADER_FEED."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from config.settings import load_settings
from core.models import Tick
from exchanges.feeds import (
    ExchangeFeed,
    ManualFeed,
    PriceFeed,
    ReplayFeed,
    SyntheticFeed,
    build_feed,
)
from exchanges.paper import PaperExchange

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


async def test_pushed_ticks_come_out_in_order_until_end() -> None:
    """push and put_nowait queue ticks; end() finishes the stream after them."""
    feed = ManualFeed()
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    await feed.push(BTC, "50000", ts=stamp)
    feed.put_nowait(Tick(ETH, D("3000"), stamp))
    feed.put_nowait(BTC, 50001)
    feed.end()
    async with feed:
        ticks = [t async for t in feed]
    assert [(t.symbol, t.price) for t in ticks] == [
        (BTC, D(50000)),
        (ETH, D(3000)),
        (BTC, D(50001)),
    ]
    assert ticks[0].ts == stamp


async def test_close_wakes_a_waiting_consumer() -> None:
    """aclose ends iteration for a consumer blocked waiting for the next tick."""
    feed = ManualFeed()
    waiter = asyncio.create_task(feed.__anext__())
    await asyncio.sleep(0)
    await feed.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 1)


async def test_push_refuses_naive_time_and_missing_price() -> None:
    """A naive timestamp or a missing price is refused."""
    feed = ManualFeed()
    with pytest.raises(ValueError, match="timezone-aware"):
        await feed.push(BTC, "1", ts=datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="price"):
        feed.put_nowait(BTC)


def test_build_feed_follows_the_setting(tmp_path: Path) -> None:
    """synthetic, exchange and replay:PATH each give their feed, with the settings applied."""
    paper = PaperExchange()
    paper.set_price(BTC, "42000")
    synthetic = build_feed(load_settings(state_dir=tmp_path), paper)
    assert isinstance(synthetic, SyntheticFeed)
    assert isinstance(synthetic, PriceFeed)
    exchange = build_feed(load_settings(state_dir=tmp_path, feed="exchange"), paper)
    assert isinstance(exchange, ExchangeFeed)
    replay = build_feed(
        load_settings(
            state_dir=tmp_path, feed=f"replay:{tmp_path}/t.csv", feed_speed="max", feed_follow=True
        ),
        paper,
    )
    assert isinstance(replay, ReplayFeed)
    assert (replay.path, replay.speed, replay.follow) == (tmp_path / "t.csv", None, True)


async def test_synthetic_feed_from_settings_starts_at_the_venue_price(tmp_path: Path) -> None:
    """A reopened paper venue's last price is where the synthetic walk starts."""
    paper = PaperExchange()
    paper.set_price(BTC, "42000")
    feed = build_feed(load_settings(state_dir=tmp_path, symbols=BTC), paper, interval_s=0)
    async with feed:
        tick = await feed.__anext__()
    assert abs(tick.price - D(42000)) < D(100)
