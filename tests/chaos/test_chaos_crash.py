"""Chaos scenario 3: crash anywhere. The daemon is killed with SIGKILL at random moments.

``CHAOS_SCALE`` (default 1) scales the 100 iterations (at least 3); ``CHAOS_SEED``
(default 13) picks the requests, the prices and the moment of each kill. Run with::

    python -m pytest tests/chaos/test_chaos_crash.py -q -s

and read the one ``chaos crash ...`` line it prints.

The daemon runs as a subprocess (tests/e2e/conftest.py) on the paper venue with
``latency_ms=50`` (every venue call takes time, so a kill lands inside opens, closes and
stop moves), a 2 % stop, break-even at 0.5 % and a 1 % trailing callback, on three markets.
Each iteration sends a burst of requests with SQL (opens on flat markets, closes of open
positions, the odd open on a market that is already open) interleaved with price moves
appended to the followed replay file (random walks of about 0.3 % a step, enough to move
trailing and break-even stops and now and then to fire one), kills the daemon at a random
moment inside or just after the burst, restarts it and waits for READY (the start-up
reconciliation runs before it, cli/service.py). Each start follows a new replay file that
begins at the current prices, so a restart does not replay old prices into the venue.

Then, once every request has an outcome and the audit writer had time to flush, the
venue's persisted state (read from a copy of its directory, since the running daemon
holds the lock) is checked against ``monitoring``:

- every venue position is covered by reduce-only stops on the closing side for its full
  quantity and belongs to exactly one non-terminal position row with the same side and
  quantity;
- no market has two non-terminal rows; no stop rests on a flat market; no non-terminal
  row sits on a flat market;
- every venue fill is in ``monitoring.trades``.

The state may still be moving when READY is seen (requests the killed daemon never
claimed are handled after it), so the check is repeated for up to ``SETTLE_S`` and only
what still holds then is a violation. Requests the kill left ``processing`` end
``failed`` by design (database/intake.py): counted, not failures. The run stops at the
first iteration with a violation; the message names the iteration, the kill moment, the
requests of the burst and the daemon's last log lines.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.models import PositionSide, Side
from core.order_model import OrderType
from exchanges.paper import PaperExchange
from tests.chaos.conftest import chaos_seed, scaled
from tests.e2e.conftest import BTC, Daemon, Feed, Trader, wait_until

ETH = "ETH/USDT:USDT"
SOL = "SOL/USDT:USDT"
SYMBOLS = (BTC, ETH, SOL)
START = {BTC: Decimal(60000), ETH: Decimal(3000), SOL: Decimal(150)}
AMOUNT = {BTC: "0.01", ETH: "0.1", SOL: "2"}
STEP = Decimal("0.003")  # one random-walk step: 0.3 % of the price
ENV = {
    "TRADER_SYMBOLS": ",".join(SYMBOLS),
    "TRADER_PAPER_FAULTS": "latency_ms=50",
    "TRADER_STOP_LOSS_PERCENT": "2",
    "TRADER_BREAKEVEN_PERCENT": "0.5",
    "TRADER_TRAILING_CALLBACK_PERCENT": "1",
    "TRADER_RECONCILE_INTERVAL_S": "2",
}
TERMINAL = ["closed", "rolled_back", "failed"]
BURST_S = 1.0  # requests and prices are sent over about this long
KILL_WINDOW_S = 1.6  # the kill lands uniformly in [0, this) after the burst starts
OUTCOME_TIMEOUT_S = 30.0
SETTLE_S = 6.0  # longer than the periodic reconciliation interval
STOP_TYPES = {OrderType.STOP_MARKET}


@dataclass
class Tally:
    kills: int = 0
    signals: int = 0
    closes: int = 0
    ticks: int = 0
    interrupted: int = 0
    positions_protected: int = 0
    settle_retries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class VenueView:
    positions: list[Any]
    orders: list[Any]
    fills: list[Any]


def venue_copy(state_dir: Path) -> VenueView:
    """The paper venue's persisted state, read from a copy of its directory (the running
    daemon holds the original's lock); a torn last journal line is not state."""
    source = state_dir / "paper" / "main"
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "venue"
        target.mkdir()
        for name in ("snapshot.json", "journal.jsonl"):
            if (source / name).exists():
                shutil.copyfile(source / name, target / name)

        async def read() -> VenueView:
            async with PaperExchange(target, fsync=False) as venue:
                return VenueView(
                    list(await venue.fetch_positions()),
                    list(await venue.fetch_open_orders()),
                    list(venue._book.fills),
                )

        return asyncio.run(read())


def violations(trader: Trader, view: VenueView) -> tuple[list[str], int]:
    """What breaks the invariant (empty when it holds) and how many venue positions are
    protected."""
    rows = trader.db.fetch(
        "SELECT id, symbol, side, quantity, status FROM monitoring.positions "
        "WHERE status <> ALL($1::text[]) ORDER BY id",
        TERMINAL,
    )
    traded = {
        (r["symbol"], r["trade_id"])
        for r in trader.db.fetch("SELECT symbol, trade_id FROM monitoring.trades")
    }
    found: list[str] = []
    protected = 0
    held = {p.symbol: p for p in view.positions if p.quantity}
    for symbol in SYMBOLS:
        ours = [r for r in rows if r["symbol"] == symbol]
        stops = [o for o in view.orders if o.symbol == symbol and o.type in STOP_TYPES]
        if len(ours) > 1:
            found.append(f"{symbol}: {len(ours)} non-terminal position rows {ours}")
        position = held.get(symbol)
        if position is None:
            if stops:
                found.append(f"{symbol}: flat, but stops rest: {[_order(o) for o in stops]}")
            if ours:
                found.append(f"{symbol}: flat venue, but non-terminal rows {ours}")
            continue
        closing = Side.SELL if position.side is PositionSide.LONG else Side.BUY
        good = [o for o in stops if o.reduce_only and o.side is closing]
        covered = sum(((o.amount or 0) - (o.filled or 0) for o in good), Decimal(0))
        what = f"{symbol}: venue {position.side.value} {position.quantity}"
        if covered < position.quantity:
            found.append(f"{what} covered by {covered}: stops {[_order(o) for o in stops]}")
        else:
            protected += 1
        if [o for o in stops if o not in good]:
            found.append(f"{what}: wrong-side or not reduce-only stops {stops}")
        if len(ours) != 1:
            found.append(f"{what} owned by {len(ours)} non-terminal rows {ours}")
        elif (ours[0]["side"], ours[0]["quantity"]) != (position.side.value, position.quantity):
            found.append(f"{what}, but its row is {ours[0]}")
    for symbol, position in held.items():
        if symbol not in SYMBOLS:
            found.append(f"venue position on an unexpected market: {position}")
    missing = [f for f in view.fills if (f.symbol, f.trade_id) not in traded]
    if missing:
        found.append(f"{len(missing)} venue fills not in monitoring.trades: {missing[:5]}")
    return found, protected


def _order(order: Any) -> str:
    side = order.side.value if order.side else None
    return (
        f"{order.client_order_id} {side} {order.amount} filled={order.filled} "
        f"trigger={order.trigger_price} reduce_only={order.reduce_only}"
    )


def open_rows(trader: Trader) -> dict[str, int]:
    """Market → id of its non-terminal position row."""
    rows = trader.db.fetch(
        "SELECT id, symbol FROM monitoring.positions WHERE status <> ALL($1::text[])", TERMINAL
    )
    return {r["symbol"]: r["id"] for r in rows}


def plan_burst(
    rng: random.Random, price: dict[str, Decimal], open_now: dict[str, int]
) -> list[tuple[float, str, Any]]:
    """(offset, kind, what): a close per open market (most of the time), an open per
    flat market and now and then one on an open market, and random-walk ticks."""
    actions: list[tuple[float, str, Any]] = []
    for symbol in SYMBOLS:
        if symbol in open_now:
            if rng.random() < 0.6:
                actions.append((rng.uniform(0, BURST_S), "close", open_now[symbol]))
            if rng.random() < 0.15:
                actions.append((rng.uniform(0, BURST_S), "signal", symbol))
        elif rng.random() < 0.85:
            actions.append((rng.uniform(0, BURST_S * 0.5), "signal", symbol))
    for n in range(rng.randrange(8, 20)):
        symbol = rng.choice(SYMBOLS)
        actions.append((BURST_S * n / 20, "tick", symbol))
    actions.sort(key=lambda a: a[0])
    return actions


def send(
    trader: Trader, feed: Feed, rng: random.Random, price: dict[str, Decimal], action: Any
) -> str:
    _, kind, what = action
    if kind == "signal":
        side = rng.choice(["long", "short"])
        trader.db.execute(
            "INSERT INTO monitoring.signals (account, symbol, side, amount) "
            "VALUES ('main', $1, $2, $3::text::numeric)",
            what,
            side,
            AMOUNT[what],
        )
        return f"signal {what} {side}"
    if kind == "close":
        trader.db.execute(
            "INSERT INTO monitoring.commands (account, kind, payload) "
            "VALUES ('main', 'close_position', jsonb_build_object('position_id', $1::bigint))",
            what,
        )
        return f"close {what}"
    step = price[what] * STEP * rng.choice([-2, -1, -1, 1, 1, 2])
    price[what] = max(START[what] / 2, (price[what] + step).quantize(Decimal("0.01")))
    feed.tick(price[what], what)
    return f"tick {what} {price[what]}"


def start(trader: Trader, n: int, price: dict[str, Decimal]) -> tuple[Daemon, Feed]:
    """A daemon following a new replay file that starts at the current prices."""
    feed = Feed(trader.state_dir.parent / f"feed-{n}.csv")
    for symbol in SYMBOLS:
        feed.tick(price[symbol], symbol)
    daemon = trader.daemon(f"daemon-{n}.log", TRADER_FEED=f"replay:{feed.path}", **ENV)
    return daemon.start().wait_ready(), feed


def unsettled(trader: Trader) -> int:
    return int(
        trader.db.fetchval(
            "SELECT (SELECT count(*) FROM monitoring.signals WHERE status IN "
            "('new', 'processing')) + (SELECT count(*) FROM monitoring.commands WHERE status "
            "IN ('new', 'processing'))"
        )
    )


@pytest.mark.timeout(900)
def test_kill_anywhere_leaves_every_position_protected_after_restart(trader: Trader) -> None:
    """SIGKILL at random moments of bursts of opens, closes and stop moves: after every
    restart each venue position is stopped for its full quantity and owned by exactly one
    position row, no stop rests on a flat market, every venue fill is a trade row."""
    iterations = max(3, scaled(100))
    rng = random.Random(chaos_seed(13))
    price = dict(START)
    tally = Tally()
    failures: list[str] = []
    started = time.monotonic()
    daemon, feed = start(trader, 0, price)
    for n in range(1, iterations + 1):
        actions = plan_burst(rng, price, open_rows(trader))
        kill_at = rng.uniform(0, KILL_WINDOW_S)
        sent: list[str] = []
        begun = time.monotonic()
        for action in actions:
            if time.monotonic() - begun >= kill_at:
                break
            delay = action[0] - (time.monotonic() - begun)
            if delay > 0:
                time.sleep(min(delay, max(0.0, kill_at - (time.monotonic() - begun))))
                if time.monotonic() - begun >= kill_at:
                    break
            sent.append(send(trader, feed, rng, price, action))
        time.sleep(max(0.0, kill_at - (time.monotonic() - begun)))
        daemon.kill()
        tally.kills += 1
        tally.signals += sum(s.startswith("signal") for s in sent)
        tally.closes += sum(s.startswith("close") for s in sent)
        tally.ticks += sum(s.startswith("tick") for s in sent)
        daemon, feed = start(trader, n, price)
        wait_until(lambda: unsettled(trader), lambda v: v == 0, OUTCOME_TIMEOUT_S, "outcomes")
        deadline = time.monotonic() + SETTLE_S
        while True:
            found, protected = violations(trader, venue_copy(trader.state_dir))
            if not found or time.monotonic() > deadline:
                break
            tally.settle_retries += 1
            time.sleep(0.25)
        if found:
            failures.append(
                f"iteration {n}: killed {kill_at:.3f}s into the burst after {sent}\n  "
                + "\n  ".join(found)
                + "\n  daemon log tail:\n"
                + "\n".join(daemon.text().splitlines()[-30:])
            )
            break
        tally.positions_protected += protected
    elapsed = time.monotonic() - started
    for table in ("signals", "commands"):
        for row in trader.db.fetch(f"SELECT status, reason FROM monitoring.{table}"):
            tally.outcomes[f"{table}_{row['status']}"] += 1
            if row["status"] == "failed" and "interrupted by a daemon restart" in (
                row["reason"] or ""
            ):
                tally.interrupted += 1
    daemon.terminate()
    positions = Counter(
        r["status"] for r in trader.db.fetch("SELECT status FROM monitoring.positions")
    )
    exits = Counter(
        r["exit_reason"]
        for r in trader.db.fetch(
            "SELECT exit_reason FROM monitoring.positions WHERE exit_reason IS NOT NULL"
        )
    )
    # Every stop after a position's first one is a move (trailing or break-even).
    stop_moves = trader.db.fetchval(
        "SELECT count(DISTINCT client_order_id) - count(DISTINCT position_id) "
        "FROM monitoring.orders WHERE type = 'STOP_MARKET'"
    )
    print(
        f"\nchaos crash iterations={n} kills={tally.kills} signals={tally.signals} "
        f"closes={tally.closes} ticks={tally.ticks} "
        f"positions_protected={tally.positions_protected} "
        f"interrupted_failed={tally.interrupted} settle_retries={tally.settle_retries} "
        f"stop_moves={stop_moves} positions={dict(positions)} exits={dict(exits)} "
        f"outcomes={dict(tally.outcomes)} "
        f"violations={len(failures)} elapsed_s={elapsed:.1f}"
    )
    assert not failures, "\n".join(failures)
    assert tally.positions_protected > 0  # the run really held positions through kills
