"""Replay feed: both CSV forms, the OHLCV path rule, speed, follow, malformed lines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from core.models import Tick
from exchanges.feeds import ReplayFeed

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


async def read_all(feed: ReplayFeed) -> list[Tick]:
    async with feed:
        return [t async for t in feed]


def points(ticks: list[Tick]) -> list[tuple[str, D]]:
    return [(t.symbol, t.price) for t in ticks]


async def test_tick_csv_with_header_iso_and_epoch_ms(tmp_path: Path) -> None:
    """ts,symbol,price rows with ISO and epoch-ms stamps; bare ids map; others filtered."""
    csv = tmp_path / "ticks.csv"
    csv.write_text(
        "ts,symbol,price\n"
        "2024-03-01T12:00:00Z,BTC/USDT:USDT,60000.5\n"
        f"{T0_MS + 1000},ETHUSDT,3000.25\n"
        "2024-03-01T12:00:02+00:00,SOL/USDT:USDT,150\n"
        "2024-03-01T12:00:03,BTCUSDT,60001\n"
    )
    ticks = await read_all(ReplayFeed(csv, [BTC, ETH], speed="max"))
    assert points(ticks) == [(BTC, D("60000.5")), (ETH, D("3000.25")), (BTC, D("60001"))]
    assert [t.ts for t in ticks] == [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)]


async def test_tick_csv_without_header(tmp_path: Path) -> None:
    """A headerless three-column file is read as ticks."""
    csv = tmp_path / "ticks.csv"
    csv.write_text(f"{T0_MS},BTC/USDT:USDT,1\n{T0_MS + 5},BTC/USDT:USDT,2\n")
    ticks = await read_all(ReplayFeed(csv, [BTC], speed="max"))
    assert points(ticks) == [(BTC, D(1)), (BTC, D(2))]


async def test_ohlcv_candles_follow_the_documented_path(tmp_path: Path) -> None:
    """Bullish: open, low, high, close; bearish: open, high, low, close; for symbols[0]."""
    csv = tmp_path / "candles.csv"
    csv.write_text(
        "timestamp,open,high,low,close,volume\n"
        f"{T0_MS},100,110,95,105,12.5\n"
        f"{T0_MS + 60_000},105,108,90,92,3\n"
    )
    ticks = await read_all(ReplayFeed(csv, [ETH, BTC], speed="max"))
    assert points(ticks) == [
        (ETH, D(p)) for p in ("100", "95", "110", "105", "105", "108", "90", "92")
    ]
    assert [t.ts - T0 for t in ticks[:4]] == [timedelta(seconds=s) for s in (0, 15, 30, 45)]
    assert ticks[4].ts == T0 + timedelta(seconds=60)


async def test_ohlcv_without_header_is_recognised(tmp_path: Path) -> None:
    """A headerless six-column numeric file is read as candles."""
    csv = tmp_path / "candles.csv"
    csv.write_text(f"{T0_MS},10,12,9,11,1\n")
    ticks = await read_all(ReplayFeed(csv, [BTC], speed="max"))
    assert [t.price for t in ticks] == [D(10), D(9), D(12), D(11)]


async def test_malformed_lines_are_skipped_with_a_warning(tmp_path: Path) -> None:
    """Bad stamps, prices, field counts and inconsistent candles are skipped, not fatal."""
    csv = tmp_path / "candles.csv"
    csv.write_text(
        "timestamp,open,high,low,close,volume\n"
        f"{T0_MS},10,12,9,11,1\n"
        "yesterday,10,12,9,11,1\n"
        f"{T0_MS + 60_000},10,abc,9,11,1\n"
        f"{T0_MS + 60_000},10,12,9\n"
        f"{T0_MS + 60_000},10,8,9,11,1\n"
        f"{T0_MS + 60_000},NaN,12,9,11,1\n"
        f"{T0_MS + 60_000},-10,12,9,11,1\n"
        f"{T0_MS + 120_000},20,22,19,21,1\n"
    )
    with capture_logs() as logs:
        ticks = await read_all(ReplayFeed(csv, [BTC], speed="max"))
    assert [t.price for t in ticks] == [D(p) for p in (10, 9, 12, 11, 20, 19, 22, 21)]
    skipped = [e for e in logs if e["event"] == "replay_line_skipped"]
    assert [e["line"] for e in skipped] == [3, 4, 5, 6, 7, 8]
    assert all(e["log_level"] == "warning" for e in skipped)


async def test_speed_compresses_time_and_max_does_not_sleep(tmp_path: Path) -> None:
    """Ticks 1 s apart at speed 20 take about 0.1 s for three; 'max' takes no time."""
    csv = tmp_path / "ticks.csv"
    csv.write_text("".join(f"{T0_MS + i * 1000},BTC/USDT:USDT,{100 + i}\n" for i in range(3)))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await read_all(ReplayFeed(csv, [BTC], speed=20))
    paced = loop.time() - started
    started = loop.time()
    await read_all(ReplayFeed(csv, [BTC], speed="max"))
    flat_out = loop.time() - started
    assert 0.09 <= paced < 1.0
    assert flat_out < 0.05


async def test_restamp_uses_the_emission_time(tmp_path: Path) -> None:
    """restamp=True stamps ticks with now instead of the file's time."""
    csv = tmp_path / "ticks.csv"
    csv.write_text(f"{T0_MS},BTC/USDT:USDT,1\n")
    before = datetime.now(UTC)
    [tick] = await read_all(ReplayFeed(csv, [BTC], speed="max", restamp=True))
    assert tick.ts >= before


async def test_follow_picks_up_appended_lines(tmp_path: Path) -> None:
    """Following, the feed waits at the end and yields lines appended later, even a line
    written in two pieces."""
    csv = tmp_path / "live.csv"
    csv.write_text(f"{T0_MS},BTC/USDT:USDT,1\n")
    feed = ReplayFeed(csv, [BTC], speed="max", follow=True, poll_s=0.01)
    async with feed:
        first = await asyncio.wait_for(feed.__anext__(), 2)
        pending = asyncio.create_task(feed.__anext__())
        await asyncio.sleep(0.05)
        assert not pending.done()
        with csv.open("a") as out:
            out.write(f"{T0_MS + 1},BTC/USDT:")
        await asyncio.sleep(0.05)
        assert not pending.done()
        with csv.open("a") as out:
            out.write("USDT,2\n")
        second = await asyncio.wait_for(pending, 2)
    assert (first.price, second.price) == (D(1), D(2))


async def test_missing_file_without_follow_raises(tmp_path: Path) -> None:
    """A replay of a file that does not exist fails loudly when not following."""
    with pytest.raises(FileNotFoundError):
        await read_all(ReplayFeed(tmp_path / "nope.csv", [BTC], speed="max"))


def test_bad_speed_is_refused(tmp_path: Path) -> None:
    """Speed must be positive or 'max'."""
    with pytest.raises(ValueError, match="speed"):
        ReplayFeed(tmp_path / "x.csv", [BTC], speed=0)
