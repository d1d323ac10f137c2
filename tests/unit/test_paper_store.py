"""Paper venue persistence in one process: reopen, crash images, torn and corrupt journals,
the directory lock."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.models import Side
from core.order_model import OrderStatus, OrderType
from core.venue import ExchangeUnavailable, InvalidOrder, OrderRequest
from exchanges.paper import PaperExchange
from exchanges.paper_store import JOURNAL, SNAPSHOT, PaperStateError

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def req(
    cid: str, side: str, kind: str, amount: str, symbol: str = BTC, **kw: object
) -> OrderRequest:
    """Shorthand for an order request."""
    extra = {k: D(str(v)) if k in ("price", "trigger_price") else v for k, v in kw.items()}
    return OrderRequest(cid, symbol, Side(side), OrderType(kind), D(amount), **extra)  # type: ignore[arg-type]


async def trade_a_little(venue: PaperExchange) -> None:
    """Orders of every kind: filled, resting, cancelled, a position per symbol."""
    venue.set_price(BTC, "50000")
    venue.set_price(ETH, "3000")
    await venue.create_order(req("e1", "buy", "MARKET", "0.01"))
    await venue.create_order(
        req("sl1", "sell", "STOP_MARKET", "0.01", trigger_price="49000", reduce_only=True)
    )
    await venue.create_order(req("e2", "sell", "MARKET", "0.5", symbol=ETH))
    await venue.create_order(req("l2", "buy", "LIMIT", "0.1", symbol=ETH, price="2000"))
    await venue.cancel_order(ETH, client_order_id="l2")
    await venue.create_order(req("l3", "buy", "LIMIT", "0.1", symbol=ETH, price="2900"))


async def test_reopened_venue_has_exactly_the_state(tmp_path: Path) -> None:
    """After close and reopen, the whole state is equal and resting orders still work."""
    venue = PaperExchange(tmp_path, balance=D(5000))
    await trade_a_little(venue)
    before = venue.export_state()
    await venue.aclose()
    assert (tmp_path / JOURNAL).stat().st_size == 0

    async with PaperExchange(tmp_path, balance=D(1)) as reopened:
        assert reopened.export_state() == before
        assert reopened.balance < D(5000)  # the persisted balance wins over the argument
        with pytest.raises(InvalidOrder, match="duplicate"):
            await reopened.create_order(req("e1", "buy", "MARKET", "0.01"))
        [stop] = reopened.set_price(BTC, "48000")
        assert stop.status is OrderStatus.FILLED
        placed = await reopened.create_order(req("n", "buy", "MARKET", "0.01"))
        ids = {o["id"] for o in before["o"]}
        assert placed.exchange_order_id not in ids


async def test_crash_image_replays_the_journal(tmp_path: Path) -> None:
    """The files as a crash leaves them (journal not compacted) reopen to the same state."""
    live = tmp_path / "live"
    venue = PaperExchange(live)
    await trade_a_little(venue)
    assert (live / JOURNAL).stat().st_size > 0
    shutil.copytree(live, tmp_path / "image")
    expected = venue.export_state()
    await venue.aclose()
    async with PaperExchange(tmp_path / "image") as recovered:
        assert recovered.export_state() == expected


async def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    """A write cut short by a crash (no newline, broken JSON) is not state and is dropped."""
    venue = PaperExchange(tmp_path)
    await trade_a_little(venue)
    expected = venue.export_state()
    await venue.aclose()
    with (tmp_path / JOURNAL).open("ab") as journal:
        journal.write(b'{"b":"1","no":99,"nt":')
    async with PaperExchange(tmp_path) as reopened:
        assert reopened.export_state() == expected
    assert (tmp_path / JOURNAL).stat().st_size == 0


async def test_corrupt_journal_line_refuses_to_open(tmp_path: Path) -> None:
    """A corrupt line before the end is data loss: opening fails with PaperStateError."""
    venue = PaperExchange(tmp_path / "live")
    await trade_a_little(venue)
    image = tmp_path / "image"
    shutil.copytree(tmp_path / "live", image)
    await venue.aclose()
    lines = (image / JOURNAL).read_bytes().split(b"\n")
    lines[1] = b"garbage"
    (image / JOURNAL).write_bytes(b"\n".join(lines))
    with pytest.raises(PaperStateError, match="line 2 is corrupt"):
        PaperExchange(image)


async def test_second_venue_on_same_directory_is_refused(tmp_path: Path) -> None:
    """The directory lock keeps two venues from writing one state."""
    async with PaperExchange(tmp_path):
        with pytest.raises(PaperStateError, match="in use"):
            PaperExchange(tmp_path)
    async with PaperExchange(tmp_path) as again:
        assert again.balance == D(10000)


async def test_closed_venue_refuses_calls_and_closes_twice(tmp_path: Path) -> None:
    """aclose is idempotent; calls after it fail as unavailable."""
    venue = PaperExchange(tmp_path)
    await venue.aclose()
    await venue.aclose()
    with pytest.raises(ExchangeUnavailable, match="closed"):
        await venue.fetch_open_orders()
    assert (tmp_path / SNAPSHOT).exists()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def test_last_prices_survive_a_crash_when_only_prices_moved(tmp_path: Path) -> None:
    """Prices alone are saved every few seconds and with the next other write, so a crash
    image reopens with a recent last price instead of none."""
    clock = Clock()
    live = tmp_path / "live"
    venue = PaperExchange(live, now=clock)
    for seconds, price in ((0, "50000"), (1, "50100"), (5, "50200"), (1, "50300")):
        clock.advance(seconds)
        venue.set_price(BTC, price)
    shutil.copytree(live, tmp_path / "prices-only")
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    clock.advance(1)
    venue.set_price(BTC, "50400")
    shutil.copytree(live, tmp_path / "after-order")
    await venue.aclose()
    recovered = []
    for image in ("prices-only", "after-order"):
        async with PaperExchange(tmp_path / image, now=clock) as reopened:
            recovered.append(reopened.last_prices())
    # 50200 was due (6 s after the first save); 50300 rode along with the order's write.
    assert recovered == [{BTC: D("50200")}, {BTC: D("50300")}]


async def test_a_glitched_future_tick_time_does_not_stop_prices_being_saved(
    tmp_path: Path,
) -> None:
    """Prices alone fall due by the venue's clock: after a tick stamped years ahead, the
    next price a save interval later is still saved (a crash image reopens with it)."""
    clock = Clock()
    live = tmp_path / "live"
    venue = PaperExchange(live, now=clock)
    venue.set_price(BTC, "50000", ts=datetime(2099, 1, 1, tzinfo=UTC))
    clock.advance(6)
    venue.set_price(BTC, "50100")
    shutil.copytree(live, tmp_path / "image")
    await venue.aclose()
    async with PaperExchange(tmp_path / "image", now=clock) as reopened:
        assert reopened.last_prices() == {BTC: D("50100")}


async def test_a_delta_of_prices_alone_is_written_without_a_disk_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save of prices alone skips ``fdatasync`` (it would stall its tick); an order's
    write still flushes, and a crash image holds both."""
    flushes: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (flushes.append(fd), real(fd))[1])
    clock = Clock()
    live = tmp_path / "live"
    venue = PaperExchange(live, now=clock)
    venue.set_price(BTC, "50000")  # the first price is saved at once: prices alone
    assert flushes == []
    await venue.create_order(req("e", "buy", "MARKET", "0.01"))
    assert len(flushes) == 1
    clock.advance(6)
    venue.set_price(BTC, "50100")
    assert len(flushes) == 1
    shutil.copytree(live, tmp_path / "image")
    await venue.aclose()
    async with PaperExchange(tmp_path / "image", now=clock) as reopened:
        assert reopened.last_prices() == {BTC: D("50100")}
        assert [p.symbol for p in await reopened.fetch_positions()] == [BTC]


async def test_on_the_real_clock_prices_alone_wait_for_the_save_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default clock (read as epoch seconds), a price within the interval is not
    saved on its own and one after it is."""
    seconds = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: seconds[0])
    live = tmp_path / "live"
    venue = PaperExchange(live)
    venue.set_price(BTC, "50000")
    seconds[0] += 1
    venue.set_price(BTC, "50100")
    shutil.copytree(live, tmp_path / "early")
    seconds[0] += 5
    venue.set_price(BTC, "50200")
    shutil.copytree(live, tmp_path / "due")
    await venue.aclose()
    recovered = []
    for image in ("early", "due"):
        async with PaperExchange(tmp_path / image) as reopened:
            recovered.append(reopened.last_prices())
    assert recovered == [{BTC: D("50000")}, {BTC: D("50200")}]


async def test_a_failed_journal_flush_fails_the_call_as_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that cannot flush makes the venue call fail as ExchangeUnavailable naming
    the cause, the venue reloads what its files hold, and later calls work again."""
    real = os.fdatasync
    failing = [True]

    def fdatasync(fd: int) -> None:
        if failing[0]:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    venue = PaperExchange(tmp_path / "live")
    venue.set_price(BTC, "50000")
    with pytest.raises(ExchangeUnavailable, match=r"could not persist state.*Input/output"):
        await venue.create_order(req("e", "buy", "LIMIT", "0.01", price="49000"))
    failing[0] = False
    placed = await venue.create_order(req("f", "buy", "LIMIT", "0.01", price="48000"))
    assert placed.client_order_id == "f"
    await venue.aclose()
