"""Chaos scenario 5: load. 1,000 trailing positions and 100,000 resting emulated orders on
20 symbols, fed at 2,000 ticks/s for 5 minutes.

Run with::

    python -m pytest tests/chaos/test_chaos_load.py -q -s

and read the one ``chaos load ...`` line it prints. ``CHAOS_SCALE`` (default 1) scales the
300 s of feed (``CHAOS_SCALE=0.1``: 30 s; the accounts, positions and orders stay the
same at any scale); ``CHAOS_SEED`` (default 5) picks the prices and the orders.

Why one process with 50 accounts: the daemon trades one account, and allows at
most one open position per (account, exchange, symbol), so 1,000 positions on 20 symbols
are 50 accounts. Fifty daemon processes on this 2-core machine would measure the OS
scheduler, so the scenario wires 50 account cores into ONE process the way the daemon
wires its one (cli/core_wiring.py): per account its own ``Settings``, its own in-memory paper
venue (20 markets defined here, ``core.models.Market``), a ``Journal(audit, account)``, a
``PositionIdReserve`` on the database sequence, ``build_core`` and the ``TickLoop`` that
``build_daemon`` builds, plus the daemon's periodic work: a venue sync every second,
trailing-state saves every 5 s and a reconciliation every 30 s, staggered across accounts.
All journals share one real ``database.audit.AuditWriter`` on real PostgreSQL (50 writers
would hold 100 connections); its lag and queue therefore carry all 50 accounts at once.
Logs are JSON at INFO into /dev/null, so the figures include the daemon's own log lines.
The event loop is uvloop, as the daemon's.

Each account opens 20 positions of 10 units (long on even symbols, short on odd), stop-loss
2 %, trailing activation 0.2 % and callback 1.5 % (the ``TRADER_TRAILING_*`` settings),
and arms 2,000 emulated reduce-only orders against them (``OrderManager.place_order``,
linked to the position): a quarter TRAILING_STOP, the rest LIMIT, STOP_MARKET, STOP_LIMIT
and TAKE_PROFIT_MARKET. 2 % of them are placed inside the range the prices will visit and
fire during the run (each fill reduces its position and resizes its stop); the others rest
far away, which is what a trigger book mostly holds.

The feed is a seeded walk per symbol in whole ticks of 0.01: a step of -1, 0 or +1 tick
per tick, reflected at ±0.4 % around a line that trends one tick per 5 s (up on the long
symbols, down on the short ones). Prices keep making new highs (lows), so trailing stops
keep moving, while pullbacks stay inside the 1.5 % callback, so the 1,000 positions stay
open (any that closes is counted and reported). A feed task generates the ticks on a
real-time schedule into a bounded queue (2 s of ticks; when full, the feed waits and falls
behind its schedule: reported, never hidden); one consumer hands every tick to all 50
tick loops (``TickLoop.on_tick``) and yields to the event loop after each tick, as
``TickLoop.run`` does. Tick-to-submit latency (``OrderManager.latencies_us``) runs from
the start of the firing account's own ``on_tick``; the fired order starts eagerly inside
it, so the other accounts' share of the fan-out is not in it, as in a daemon of one.

The figures of the line: ``ticks`` processed / scheduled and ``rate_per_s`` achieved;
``feed_behind_max_s`` (the most the feed fell behind its schedule), ``queue_max`` and
``tick_age_p99_ms`` (generation to processing); ``tick_path_us``, the time to hand one
tick to all 50 tick loops (the tick path itself: 50 account-ticks); ``fired`` (emulated
orders that fired) and ``tick_to_submit_p50_us`` / ``_p99_us``; ``stop_moves`` (stops
placed after the opening ones: trailing moves, resizes after fills, any placed by
reconciliation); ``audit_records``, ``audit_lag_p99_ms`` (record to commit: the worst p99
of the writer's 1,024-batch window, sampled every second) and ``audit_queue_max``;
``gc_pause_max_ms``; ``rss_mb`` / ``rss_start_mb`` / ``rss_peak_mb`` (end of run, after
the build, peak); ``cpu_s`` and ``cpu_pct`` (process CPU over the run, and its share of
the run's wall time); ``build_s``. The trailing-state saves (10 a second across the 50
accounts) run in threads, as the daemon's do.

Invariants (the test fails on any): no tick dropped (every scheduled tick generated,
processed, and counted by every account's tick loop); no in-flight work left; every
position still open is active, holds what its venue holds, and has exactly one stop on the
venue for its full quantity, and no venue position or stop is unowned; no audit record
lost: the writer committed every record the journals handed it (none dead-lettered or left
in the spool), every append-only table holds exactly the rows handed to it, every order
armed or sent is in ``monitoring.orders`` with the status and fill the order manager or
the venue has, every venue fill is in ``monitoring.trades`` once, and every open position's
row matches the book.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import tempfile
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cli.core_wiring import Core, build_core
from cli.trailing_state import save_trailing
from config.logging import configure_logging
from config.settings import Settings
from core.journal import Journal
from core.models import Market, PositionSide, Signal, Tick
from core.money import utcnow
from core.order_model import OrderType
from core.order_requests import OrderSpec
from core.position_model import PositionStatus
from core.records import AuditRecord, RecordKind
from core.tick_loop import TickLoop
from database.audit import AuditWriter
from database.ids import PositionIdReserve
from database.pool import create_pool
from database.repository import Repository
from exchanges.paper import PaperExchange
from exchanges.paper_store import decode_delta
from tests.chaos.conftest import chaos_seed, scaled
from tests.conftest import truncate_monitoring
from tests.figures import percentile

ACCOUNTS = 50
SYMBOLS = tuple(f"L{i:02d}/USDT:USDT" for i in range(20))
MARKETS = {
    symbol: Market(
        symbol=symbol,
        id=symbol.replace("/USDT:USDT", "USDT"),
        base=symbol.split("/")[0],
        quote="USDT",
        tick_size=Decimal("0.01"),
        amount_step=Decimal("0.01"),
        min_amount=Decimal("0.01"),
        min_cost=Decimal(5),
    )
    for symbol in SYMBOLS
}
ORDERS_PER_ACCOUNT = 2000
TICKS_PER_S = 2000
FULL_DURATION_S = 300
START_TICKS = 10_000  # 100.00 in ticks of 0.01
BAND_TICKS = 40  # ±0.4 % around the trend line
TREND_EVERY = 500  # symbol ticks per tick of trend: 100 ticks/s per symbol → 1 tick / 5 s
POSITION_QTY = Decimal(10)
ORDER_QTY = Decimal("0.01")
BALANCE = Decimal(10**9)
STOP_LOSS_PCT = Decimal(2)
TRAILING_ACTIVATION_PCT = Decimal("0.2")
TRAILING_CALLBACK_PCT = Decimal("1.5")
NEAR_SHARE = 0.02  # orders placed where the prices will go: they fire during the run
FAR_TICKS = (300, 2000)  # 3 % to 20 % away: never reached
QUEUE_BOUND = 2 * TICKS_PER_S
PACE_S = 0.005
SYNC_INTERVAL_S = 1.0
TRAILING_SAVE_EVERY = 5  # sync rounds
RECONCILE_EVERY = 30  # sync rounds
DRAIN_TIMEOUT_S = 30.0

# Kept open for the whole session: structlog caches loggers bound to it on first use.
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115


@dataclass
class Account:
    """One account's core, venue and tick loop, wired as cli/core_wiring.py wires the daemon's."""

    name: str
    venue: PaperExchange
    core: Core
    loop: TickLoop
    ids: PositionIdReserve
    armed: list[str] = field(default_factory=list)


class GcPauses:
    """The longest garbage-collection pause while registered in ``gc.callbacks``."""

    def __init__(self) -> None:
        self.max_s = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.max_s = max(self.max_s, time.perf_counter() - self._started)


class CountingSink:
    """The journals' sink: counts the records of each table, then hands them to the writer."""

    def __init__(self, writer: AuditWriter) -> None:
        self._writer = writer
        self.counts: Counter[RecordKind] = Counter()

    def record(self, rec: AuditRecord) -> None:
        self.counts[rec.kind] += 1
        self._writer.record(rec)


class Walk:
    """The seeded price path of every symbol, in whole ticks (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._offset = [0] * len(SYMBOLS)
        self._steps = [0] * len(SYMBOLS)
        self._next = 0

    def tick(self) -> Tick:
        i = self._next
        self._next = (i + 1) % len(SYMBOLS)
        offset = self._offset[i] + self._rng.randrange(3) - 1
        if abs(offset) > BAND_TICKS:
            offset = (2 * BAND_TICKS if offset > 0 else -2 * BAND_TICKS) - offset
        self._offset[i] = offset
        self._steps[i] += 1
        line = START_TICKS + favour(i) * (self._steps[i] // TREND_EVERY)
        return Tick(SYMBOLS[i], Decimal(line + offset).scaleb(-2), utcnow())


@dataclass
class RunStats:
    scheduled: int
    generated: int = 0
    processed: int = 0
    fan_out_s: float = 0.0  # handing ticks to the tick loops (the tick path itself)
    queue_max: int = 0
    behind_max_s: float = 0.0
    ages_s: array[float] = field(default_factory=lambda: array("d"))
    lag_p99_max_s: float = 0.0
    audit_queue_max: int = 0


def favour(symbol_index: int) -> int:
    """+1 where the accounts are long (prices trend up), -1 where short (down)."""
    return 1 if symbol_index % 2 == 0 else -1


def reach_of(scheduled: int) -> int:
    """How far (ticks) prices go in the positions' favour over ``scheduled`` ticks of the
    walk: the trend, plus half the band."""
    return scheduled // len(SYMBOLS) // TREND_EVERY + BAND_TICKS // 2


def at(symbol_index: int, ticks: int) -> Decimal:
    """The price ``ticks`` ticks from the start, in the positions' favour (negative: against)."""
    return Decimal(START_TICKS + favour(symbol_index) * ticks).scaleb(-2)


def proc_status_kb(field_name: str) -> int:
    """A ``VmRSS`` / ``VmHWM`` style figure of this process, in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise LookupError(field_name)


async def no_feed() -> AsyncIterator[Tick]:
    """Tick loops here are fed by the scenario's consumer, never by ``TickLoop.run``."""
    return
    yield


# -- building the accounts --------------------------------------------------------------
async def open_account(index: int, sink: CountingSink, pool: asyncpg.Pool) -> Account:
    """Settings, venue, journal, ids, core and tick loop of one account; its positions open."""
    name = f"load{index:02d}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        account=name,
        symbols=SYMBOLS,
        stop_loss_percent=STOP_LOSS_PCT,
        take_profit_percent=None,
        breakeven_percent=None,
        trailing_activation_percent=TRAILING_ACTIVATION_PCT,
        trailing_callback_percent=TRAILING_CALLBACK_PCT,
        stop_retries=3,
        reconcile_interval_s=SYNC_INTERVAL_S * RECONCILE_EVERY,
    )
    venue = PaperExchange(None, markets=MARKETS, balance=BALANCE, seed=index)
    await venue.load_markets()
    ids = PositionIdReserve(Repository(pool), block=len(SYMBOLS))
    await ids.fill()
    core = build_core(settings, venue, Journal(sink, name), ids)
    # What build_daemon does, without its feed and systemd notifier.
    loop = TickLoop(
        no_feed(),
        core.prices,
        core.orders,
        core.lifecycle,
        core.tasks,
        venue_hooks=(venue.on_tick,),
    )
    for i, symbol in enumerate(SYMBOLS):
        loop.on_tick(Tick(symbol, at(i, 0), utcnow()))
    for i, symbol in enumerate(SYMBOLS):
        side = PositionSide.LONG if favour(i) > 0 else PositionSide.SHORT
        position = await core.apm.open_position_atomic(
            Signal(symbol=symbol, side=side, amount=POSITION_QTY)
        )
        assert position.status is PositionStatus.ACTIVE, position
    return Account(name, venue, core, loop, ids)


def order_specs(rng: random.Random, account: Account, reach: int) -> list[OrderSpec]:
    """The account's emulated orders: mixed types, reduce-only, linked to the positions.

    ``reach`` is how far (ticks) prices are expected to go in the positions' favour during
    the run: near orders sit inside it, the others 3-20 % away.
    """
    specs = []
    for n in range(ORDERS_PER_ACCOUNT):
        i = n % len(SYMBOLS)
        live = account.core.book.on_symbol(SYMBOLS[i])
        assert live is not None
        side = live.position.side.exit_side
        near = rng.random() < NEAR_SHARE
        far = rng.randint(*FAR_TICKS)
        common: dict[str, Any] = {"reduce_only": True, "position_id": live.id}
        if rng.random() < 0.25:
            if near:  # activates inside the range, fires on a 0.1-0.3 % pullback
                pct, activation = Decimal(rng.randint(10, 30)) / 100, rng.randint(1, reach)
            else:
                pct, activation = Decimal(rng.randint(200, 800)) / 100, rng.choice((None, far))
            common["trail_percent"] = pct
            if activation is not None:
                common["activation_price"] = at(i, activation)
            kind = OrderType.TRAILING_STOP
        else:
            kind = rng.choice(
                (
                    OrderType.LIMIT,
                    OrderType.TAKE_PROFIT_MARKET,
                    OrderType.STOP_MARKET,
                    OrderType.STOP_LIMIT,
                )
            )
            if kind in (OrderType.LIMIT, OrderType.TAKE_PROFIT_MARKET):  # fire in our favour
                level = at(i, rng.randint(1, reach) if near else far)
                common["price" if kind is OrderType.LIMIT else "trigger_price"] = level
            else:  # stops fire against us
                ticks = -rng.randint(1, BAND_TICKS // 2) if near else -far
                common["trigger_price"] = at(i, ticks)
                if kind is OrderType.STOP_LIMIT:
                    common["price"] = at(i, ticks - 5)
        specs.append(OrderSpec(SYMBOLS[i], side, kind, ORDER_QTY, **common))
    return specs


# -- the run ----------------------------------------------------------------------------
async def feed(walk: Walk, queue: asyncio.Queue[Any], stats: RunStats) -> None:
    """Generate ``stats.scheduled`` ticks on a real-time schedule into ``queue``; a full
    queue makes it wait, and fall behind its schedule."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while stats.generated < stats.scheduled:
        due = min(stats.scheduled, int((loop.time() - started) * TICKS_PER_S))
        stats.behind_max_s = max(stats.behind_max_s, (due - stats.generated) / TICKS_PER_S)
        while stats.generated < due:
            await queue.put((time.perf_counter(), walk.tick()))
            stats.generated += 1
            stats.queue_max = max(stats.queue_max, queue.qsize())
        await asyncio.sleep(PACE_S)
    await queue.put(None)


async def consume(queue: asyncio.Queue[Any], accounts: list[Account], stats: RunStats) -> None:
    """Hand every tick to every account's tick loop; yield after each, as TickLoop.run."""
    loops = [a.loop for a in accounts]
    ages = stats.ages_s
    clock = time.perf_counter
    while (item := await queue.get()) is not None:
        born, tick = item
        started = clock()
        ages.append(started - born)
        for loop in loops:
            loop.on_tick(tick)
        stats.fan_out_s += clock() - started
        stats.processed += 1
        await asyncio.sleep(0)


async def upkeep(account: Account, index: int, stop: asyncio.Event, state_dir: Path) -> None:
    """The daemon's periodic work for one account: venue sync every second, trailing
    state saved every 5 s, reconciliation every 30 s; phases staggered across accounts."""
    core = account.core
    path = state_dir / f"trailing-{account.name}.json"
    await pause(stop, SYNC_INTERVAL_S * index / ACCOUNTS)
    rounds = 0
    while not stop.is_set():
        await core.lifecycle.sync_all()
        await core.orders.sync_native()
        rounds += 1
        if rounds % TRAILING_SAVE_EVERY == 0:
            # As the daemon does (core/daemon.py): off the event loop, in a thread.
            await asyncio.to_thread(save_trailing, path, core.orders.trailing_states())
        if rounds % RECONCILE_EVERY == 0:
            await core.reconciler.reconcile()
        await pause(stop, SYNC_INTERVAL_S)


async def monitor(audit: AuditWriter, stats: RunStats, stop: asyncio.Event) -> None:
    """Sample what the writer only knows now: its lag window and its queue."""
    while not stop.is_set():
        stats.lag_p99_max_s = max(stats.lag_p99_max_s, audit.lag_p99_s)
        stats.audit_queue_max = max(stats.audit_queue_max, audit.queue_depth)
        await pause(stop, 1.0)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# -- the checks -------------------------------------------------------------------------
class Findings:
    """Violated invariants by kind: how many of each, and the first few in full."""

    def __init__(self) -> None:
        self._by_kind: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, detail: str) -> None:
        self._by_kind[kind].append(detail)

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_kind.values())

    def report(self) -> list[str]:
        return [
            f"{kind}: {len(items)}, e.g. " + " | ".join(items[:3])
            for kind, items in self._by_kind.items()
        ]


def check_venue(account: Account, found: Findings) -> None:
    """Open positions against the venue: active, same quantity, exactly one full stop."""
    state = decode_delta(account.venue.export_state())
    held = {s: abs(p.qty) for s, p in state.positions.items() if p is not None and p.qty}
    stops: dict[str, list[Any]] = defaultdict(list)
    for order in state.orders:
        if order.is_live and order.type is OrderType.STOP_MARKET:
            stops[order.symbol].append(order)
    owned = set()
    for live in account.core.book:
        where = f"{account.name} {live.symbol} p{live.id}"
        owned.add(live.symbol)
        qty = live.position.quantity
        if live.position.status is not PositionStatus.ACTIVE:
            found.add("open position not active", f"{where}: {live.position.status.value}")
        if held.get(live.symbol) != qty:
            found.add(
                "position and venue disagree",
                f"{where}: position {qty}, venue {held.get(live.symbol)}",
            )
        on_venue = stops.get(live.symbol, [])
        ours = None if live.stop is None else live.stop.client_order_id
        if [o.client_order_id for o in on_venue] != [ours]:
            found.add(
                "not exactly our one stop on the venue",
                f"{where}: ours {ours}, venue {[o.client_order_id for o in on_venue]}",
            )
        elif on_venue[0].remaining != qty:
            found.add(
                "stop not for the full quantity",
                f"{where}: stop {on_venue[0].remaining}, position {qty}",
            )
    for symbol in held.keys() - owned:
        found.add("venue position nobody owns", f"{account.name} {symbol}")
    for symbol in stops.keys() - owned:
        found.add("stop without a position", f"{account.name} {symbol}")


async def check_audit(
    pool: asyncpg.Pool, accounts: list[Account], audit: AuditWriter, sink: CountingSink
) -> Findings:
    """Everything the journals handed over, and everything the venues did, in PostgreSQL."""
    found = Findings()
    handed = sum(sink.counts.values())
    if (audit.written, audit.dead_letters, audit.spool_bytes) != (handed, 0, 0):
        found.add(
            "writer",
            f"{handed} records handed, {audit.written} written, "
            f"{audit.dead_letters} dead-lettered, {audit.spool_bytes} bytes spooled",
        )
    for kind in (
        RecordKind.ORDER_EVENT,
        RecordKind.TRADE,
        RecordKind.POSITION_UPDATE,
        RecordKind.EVENT,
    ):
        rows = await pool.fetchval(f"SELECT count(*) FROM monitoring.{kind.value}")
        if rows != sink.counts[kind]:
            found.add("rows handed", f"monitoring.{kind.value}: {rows} of {sink.counts[kind]}")
    orders = {
        r["client_order_id"]: r
        for r in await pool.fetch("SELECT client_order_id, status, filled FROM monitoring.orders")
    }
    trades = {
        (r["client_order_id"], r["trade_id"]): r["symbol"]
        for r in await pool.fetch("SELECT client_order_id, trade_id, symbol FROM monitoring.trades")
    }
    trade_keys = {(symbol, trade_id) for (_, trade_id), symbol in trades.items()}
    positions = {r["id"]: r for r in await pool.fetch("SELECT * FROM monitoring.positions")}
    known = 0
    for account in accounts:
        state = decode_delta(account.venue.export_state())
        for order in state.orders:
            row = orders.get(order.client_order_id or "")
            if row is None:
                found.add("venue order without a row", f"{order.client_order_id}")
            elif (row["status"], row["filled"]) != (order.status.value, order.filled):
                found.add(
                    "venue order and row disagree",
                    f"{order.client_order_id}: venue {order.status.value} {order.filled}, "
                    f"row {row['status']} {row['filled']}",
                )
        manager = account.core.orders
        for cid in account.armed:
            row = orders.get(cid)
            mine = manager.get_order(cid)
            if row is None or mine is None:
                found.add("emulated order lost", f"{cid}: row {row}, manager {mine}")
            elif (row["status"], row["filled"]) != (mine.status.value, mine.filled):
                found.add(
                    "emulated order and row disagree",
                    f"{cid}: manager {mine.status.value} {mine.filled}, "
                    f"row {row['status']} {row['filled']}",
                )
        known += len({o.client_order_id for o in state.orders} | set(account.armed))
        for fill in state.fills:
            if (fill.client_order_id, fill.trade_id) in trades:
                continue
            if (fill.symbol, fill.trade_id) in trade_keys:
                # Before migration 0007 trades were unique on (exchange, symbol, trade_id):
                # another account's fill with the same venue trade id took the row.
                kind = "venue fill without a trade row, its trade id taken by another account"
            else:
                kind = "venue fill without a trade row"
            found.add(kind, f"{fill.trade_id} of {fill.client_order_id}")
        for live in account.core.book:
            row = positions.get(live.id)
            mine = live.position
            if row is None or (row["status"], row["quantity"], row["stop_loss_price"]) != (
                mine.status.value,
                mine.quantity,
                mine.stop_loss_price,
            ):
                found.add("position row and book disagree", f"row {row and dict(row)}, {mine}")
    if len(orders) != known:
        found.add("monitoring.orders rows", f"{len(orders)} rows, {known} orders known")
    return found


# -- the scenario -----------------------------------------------------------------------
@pytest.fixture
def production_logs() -> None:
    """JSON at INFO into /dev/null: the daemon's own log lines are part of its load."""
    configure_logging("json", "INFO", _DEVNULL)


def run_on_uvloop(coro: Coroutine[Any, Any, Any]) -> Any:
    """The daemon's event loop (cli/service.py runs on uvloop where it is installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


@pytest.mark.timeout(1800)
def test_load_drops_no_tick_and_loses_no_record(migrated_url: str, production_logs: None) -> None:
    """Under load: no tick dropped, every open position keeps one full stop, no record lost."""
    with tempfile.TemporaryDirectory(prefix="chaos-load-") as state_dir:
        line, violations, mismatches = run_on_uvloop(scenario(migrated_url, Path(state_dir)))
    print(f"\n{line}")
    if violations or mismatches:
        pytest.fail("\n".join(violations.report() + mismatches.report()), pytrace=False)


async def scenario(url: str, state_dir: Path) -> tuple[str, Findings, Findings]:
    seed = chaos_seed(5)
    duration_s = scaled(FULL_DURATION_S)
    scheduled = duration_s * TICKS_PER_S
    reach = reach_of(scheduled)
    pool = await create_pool(url, min_size=2, max_size=8)
    try:
        await truncate_monitoring(pool)
        audit = AuditWriter(pool, state_dir / "audit-spool")
        await audit.start()
        try:
            return await run(pool, audit, state_dir, seed, duration_s, scheduled, reach)
        finally:
            await audit.aclose()
    finally:
        await pool.close()


async def run(
    pool: asyncpg.Pool,
    audit: AuditWriter,
    state_dir: Path,
    seed: int,
    duration_s: int,
    scheduled: int,
    reach: int,
) -> tuple[str, Findings, Findings]:
    sink = CountingSink(audit)
    built = time.perf_counter()
    accounts = await build_accounts(pool, audit, sink, seed, reach)
    build_s = time.perf_counter() - built
    # As the daemon does once started (cli/service.py run_daemon): what start-up built
    # lives as long as the process, so it is frozen out of the collector's sight.
    gc.collect()
    gc.freeze()
    ticks_before = [a.loop.ticks for a in accounts]
    rss_start_kb = proc_status_kb("VmRSS")

    stats = RunStats(scheduled=scheduled)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_BOUND)
    stop = asyncio.Event()
    gc_pauses = GcPauses()
    gc.callbacks.append(gc_pauses)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for index, account in enumerate(accounts):
                group.create_task(upkeep(account, index, stop, state_dir))
            group.create_task(monitor(audit, stats, stop))
            group.create_task(feed(Walk(seed), queue, stats))
            await group.create_task(consume(queue, accounts, stats))
            stop.set()
    finally:
        gc.callbacks.remove(gc_pauses)
        gc.unfreeze()  # the rest of the pytest session is not a daemon
    wall_s = time.perf_counter() - wall_start
    cpu_s = time.process_time() - cpu_start
    rss_end_kb = proc_status_kb("VmRSS")
    stats.lag_p99_max_s = max(stats.lag_p99_max_s, audit.lag_p99_s)

    violations = Findings()
    # In-flight executions and stop moves finish; a stop that fired on a venue in the last
    # second is learnt, as the daemon's next sync would.
    for account in accounts:
        if cancelled := await account.core.tasks.drain(DRAIN_TIMEOUT_S):
            violations.add("work left running", f"{account.name}: {cancelled} tasks")
        await account.core.lifecycle.sync_all()
        await account.core.tasks.drain(DRAIN_TIMEOUT_S)
    if (stats.generated, stats.processed) != (scheduled, scheduled) or not queue.empty():
        violations.add(
            "ticks dropped",
            f"{scheduled} scheduled, {stats.generated} generated, {stats.processed} processed",
        )
    for account, before in zip(accounts, ticks_before, strict=True):
        if account.loop.ticks - before != stats.processed:
            violations.add(
                "ticks not taken by a tick loop",
                f"{account.name}: {account.loop.ticks - before} of {stats.processed}",
            )
    for account in accounts:
        check_venue(account, violations)
    latencies = [us for a in accounts for us in a.core.orders.latencies_us]
    open_end = sum(len(a.core.book) for a in accounts)
    for account in accounts:
        await account.ids.aclose()
    await audit.aclose()
    mismatches = await check_audit(pool, accounts, audit, sink)

    opened = await pool.fetchval("SELECT count(*) FROM monitoring.positions")
    stops = await pool.fetchval(
        "SELECT count(*) FROM monitoring.orders WHERE purpose = 'stop_loss'"
    )
    fired = await pool.fetchval(
        "SELECT count(*) FROM monitoring.orders WHERE emulated AND triggered_at IS NOT NULL"
    )
    ages_ms = [age * 1000 for age in stats.ages_s]
    figures = {
        "accounts": ACCOUNTS,
        "symbols": len(SYMBOLS),
        "positions": opened,
        "open_at_end": open_end,
        "emulated_orders": sum(len(a.armed) for a in accounts),
        "duration_s": duration_s,
        "ticks": f"{stats.processed}/{scheduled}",
        "rate_per_s": f"{stats.processed / wall_s:.0f}",
        "feed_behind_max_s": f"{stats.behind_max_s:.2f}",
        "queue_max": stats.queue_max,
        "tick_age_p99_ms": f"{percentile(ages_ms, 99):.1f}",
        "tick_path_us": f"{stats.fan_out_s / max(stats.processed, 1) * 1e6:.0f}",
        "fired": fired,
        "tick_to_submit_p50_us": f"{percentile(latencies, 50):.0f}",
        "tick_to_submit_p99_us": f"{percentile(latencies, 99):.0f}",
        "stop_moves": stops - opened,
        "audit_records": sum(sink.counts.values()),
        "audit_lag_p99_ms": f"{stats.lag_p99_max_s * 1000:.0f}",
        "audit_queue_max": stats.audit_queue_max,
        "gc_pause_max_ms": f"{gc_pauses.max_s * 1000:.0f}",
        "rss_mb": f"{rss_end_kb / 1024:.0f}",
        "rss_start_mb": f"{rss_start_kb / 1024:.0f}",
        "rss_peak_mb": f"{proc_status_kb('VmHWM') / 1024:.0f}",
        "cpu_s": f"{cpu_s:.1f}",
        "cpu_pct": f"{cpu_s / wall_s * 100:.0f}",
        "build_s": f"{build_s:.1f}",
        "violations": len(violations),
        "audit_mismatches": len(mismatches),
    }
    line = "chaos load " + " ".join(f"{k}={v}" for k, v in figures.items())
    return line, violations, mismatches


async def build_accounts(
    pool: asyncpg.Pool, audit: AuditWriter, sink: CountingSink, seed: int, reach: int
) -> list[Account]:
    """The 50 accounts, their positions open and their emulated orders armed."""
    rng = random.Random(seed)
    accounts = []
    for index in range(ACCOUNTS):
        account = await open_account(index, sink, pool)
        for spec in order_specs(rng, account, reach):
            account.armed.append((await account.core.orders.place_order(spec)).client_order_id)
        accounts.append(account)
        await audit.flush(60)  # the build's records are written before the next account
    return accounts
