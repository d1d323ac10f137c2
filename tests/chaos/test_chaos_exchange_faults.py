"""Chaos scenario 1: every paper-venue fault mode at once, thousands of opens and closes.

The in-process trading stack (``tests/trading_harness.py``) runs on the in-memory paper
venue with all fault modes switched on together while each open or close is sent, across
four symbols, with random price ticks in between. After every operation the stack is
settled as the property test does (faults off, a tick per symbol, ``lifecycle.sync_all()``,
the task set drained) and the safety invariant is checked: every venue position is ours,
active, and covered by stops for its full quantity; no flat market keeps a stop; no market
has two open positions. At the end every position is closed, the venue must be flat with
no open order, and the audit trail (the memory sink) must match the venue: every venue
fill exactly once as a trade row, every order the venue knows as an order row.

As in the daemon, prices keep flowing while an operation runs: a background task ticks
every symbol at its current price every few milliseconds (partial fills complete on
ticks). The venue's clock runs ``VENUE_CLOCK_SPEED`` (5) times faster than real time, so
``position_lag_s=1`` hides a new or closed position for 0.2 s of real time: long enough to
defeat the first positions query of a rollback or close, short enough for thousands of
operations in a few minutes. Critical alerts (``not_flat``, naked positions...) are counted
from the journal's event rows and printed; they are not failures by themselves.

Size: ``CHAOS_SCALE`` (default 1) scales the 2,000 operations, e.g. ``CHAOS_SCALE=0.1``
runs 200. ``CHAOS_SEED`` (default 7) picks the dice (the background ticker makes a run
nearly, not exactly, reproducible). The run stops at the first violated invariant (it
would repeat after every later operation) and the failure shows the audit records of the
operation that broke it. Run with::

    python -m pytest tests/chaos/test_chaos_exchange_faults.py -q -s

and read the one ``chaos exchange_faults ...`` line it prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal

import pytest

from core.errors import PositionConflict, ValidationError
from core.money import utcnow
from core.order_model import OrderStatus, OrderType
from core.position_model import PositionStatus
from core.records import RecordKind
from exchanges.paper import PaperExchange
from tests.chaos.conftest import chaos_seed, scaled
from tests.trading_harness import BTC, ETH, Stack, build_stack, long_signal, short_signal

SOL = "SOL/USDT:USDT"
XRP = "XRP/USDT:USDT"
SYMBOLS = (BTC, ETH, SOL, XRP)
START = {BTC: Decimal(50000), ETH: Decimal(3000), SOL: Decimal(150), XRP: Decimal("0.6")}
AMOUNT = {BTC: "0.01", ETH: "0.1", SOL: "2", XRP: "500"}
# One random-walk step, about 0.2 % of the price: a few steps reach a 2 % stop.
STEP = {BTC: Decimal(100), ETH: Decimal(6), SOL: Decimal("0.3"), XRP: Decimal("0.0012")}
FAULTS = {
    "reject_stop": "0.1",
    "reject_entry": "0.05",
    "timeout_after_accept": "0.05",
    "no_average_price": "0.2",
    "no_status": "0.1",
    "id_only_reply": "0.1",
    "position_lag_s": "1",
    "partial_fill": "0.5",
    "latency_ms": "0",
}
VENUE_CLOCK_SPEED = 5
TICK_EVERY_S = 0.005
TERMINAL = {
    OrderStatus.FILLED,
    OrderStatus.CANCELLED,
    OrderStatus.REJECTED,
    OrderStatus.EXPIRED,
    OrderStatus.FAILED,
}


async def violations(stack: Stack) -> list[str]:
    """What breaks the invariant now (empty when it holds), per symbol."""
    stops = [o for o in await stack.venue.fetch_open_orders() if o.type is OrderType.STOP_MARKET]
    held = {p.symbol: abs(p.qty) for p in stack.venue._book.positions.values() if p.qty != 0}
    found = []
    for symbol in SYMBOLS:
        live = stack.book.on_symbol(symbol)
        owners = [p for p in stack.book if p.symbol == symbol]
        covered = sum(
            (s.amount or Decimal(0)) - (s.filled or Decimal(0)) for s in stops if s.symbol == symbol
        )
        qty = held.get(symbol, Decimal(0))
        if len(owners) > 1:
            found.append(f"{symbol}: {len(owners)} positions open at once")
        if qty:
            if live is None:
                found.append(f"{symbol}: venue position {qty} that no position owns")
            elif live.position.status is not PositionStatus.ACTIVE:
                found.append(f"{symbol}: venue holds {qty}, position is {live.position.status}")
            elif qty != live.position.quantity:
                found.append(f"{symbol}: venue holds {qty}, position says {live.position.quantity}")
            if covered < qty:
                found.append(f"{symbol}: {qty} held, stops cover {covered}")
        else:
            if covered:
                found.append(f"{symbol}: flat but a stop for {covered} remains")
            if live is not None and live.position.quantity != 0:
                found.append(f"{symbol}: flat venue, position says {live.position.quantity}")
    return found


def fast_clock(speed: int) -> Callable[[], datetime]:
    """A clock starting now and running ``speed`` times faster than real time."""
    origin = utcnow()
    return lambda: origin + (utcnow() - origin) * speed


@contextlib.asynccontextmanager
async def ticking(stack: Stack, price: dict[str, Decimal]) -> AsyncIterator[None]:
    """While the block runs, tick every symbol at its current price, as a live feed does."""

    async def run() -> None:
        while True:
            await asyncio.sleep(TICK_EVERY_S)
            for symbol in SYMBOLS:
                stack.tick(symbol, price[symbol])

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle(stack: Stack, price: dict[str, Decimal]) -> None:
    """Faults off; a tick per symbol; one sync pass; background work drained."""
    stack.venue.faults = {}
    for symbol in SYMBOLS:
        stack.tick(symbol, price[symbol])
    await stack.lifecycle.sync_all()
    await stack.tasks.drain(5)


def audit_mismatches(stack: Stack) -> list[str]:
    """Differences between the venue's books and the audit rows the stack recorded."""
    book = stack.venue._book
    found = []
    trades = Counter(r["trade_id"] for r in stack.rows(RecordKind.TRADE))
    fills = Counter(f.trade_id for f in book.fills)
    for trade_id, n in fills.items():
        if trades[trade_id] != n:
            found.append(f"venue fill {trade_id}: {trades[trade_id]} trade rows")
    found += [f"trade row {t} that the venue never filled" for t in trades if t not in fills]
    orders = stack.latest_orders()
    for order in book.orders.values():
        row = orders.get(order.client_order_id or "")
        if row is None:
            found.append(f"venue order {order.client_order_id} has no order row")
        elif order.status in TERMINAL and row["status"] not in {s.value for s in TERMINAL}:
            found.append(
                f"order {order.client_order_id}: venue {order.status.value}, row {row['status']}"
            )
        elif order.filled != row["filled"]:
            found.append(
                f"order {order.client_order_id}: venue filled {order.filled}, row {row['filled']}"
            )
    for row in stack.rows(RecordKind.POSITION):
        if row["status"] != "active":
            continue
        entry, stop = row["entry_price"], row["stop_loss_price"]
        wrong_side = stop is None or (stop >= entry if row["side"] == "long" else stop <= entry)
        if not entry or wrong_side:
            found.append(f"position {row['id']} active with entry {entry} and stop {stop}")
    return found


def trail(stack: Stack, since: int) -> list[str]:
    """The audit records from index ``since`` on, one short line each (for a failure)."""
    keys = ("id", "client_order_id", "kind", "status", "quantity", "filled", "message")
    return [
        f"{rec.kind.value}: " + " ".join(f"{k}={rec.row[k]}" for k in keys if k in rec.row)
        for rec in stack.sink.records[since:]
        if rec.kind is not RecordKind.POSITION_UPDATE
    ]


@pytest.mark.timeout(900)
async def test_all_fault_modes_at_once_never_leave_a_position_unprotected(
    quiet_logs: None,
) -> None:
    """Under every venue fault mode at once, after each of thousands of opens and closes
    the venue is protected or flat, one position per market; the audit trail holds every
    venue fill once and every venue order."""
    operations = scaled(2000)
    rng = random.Random(chaos_seed(7))
    venue = PaperExchange(None, seed=rng.randrange(10**6), now=fast_clock(VENUE_CLOCK_SPEED))
    stack = build_stack(venue=venue)
    price = dict(START)
    for symbol in SYMBOLS:
        stack.tick(symbol, price[symbol])
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    for n in range(operations):
        for _ in range(rng.randrange(4)):
            symbol = rng.choice(SYMBOLS)
            price[symbol] += STEP[symbol] * rng.randint(-3, 3)
            price[symbol] = max(price[symbol], START[symbol] / 2)
            stack.tick(symbol, price[symbol])
        symbol = rng.choice(SYMBOLS)
        mark = len(stack.sink.records)
        stack.venue.faults = FAULTS
        live = stack.book.on_symbol(symbol)
        async with ticking(stack, price):
            if live is None:
                signal = (long_signal if rng.random() < 0.5 else short_signal)(
                    AMOUNT[symbol], symbol=symbol
                )
                try:
                    position = await stack.apm.open_position_atomic(signal)
                except (PositionConflict, ValidationError) as exc:
                    outcomes[f"refused_{type(exc).__name__}"] += 1
                else:
                    outcomes["opens"] += 1
                    outcomes[position.status.value] += 1
            else:
                await stack.lifecycle.close_position(live.id, "signal")
                outcomes["closes"] += 1
        await settle(stack, price)
        if found := await violations(stack):
            failures.append(f"after operation {n} ({symbol}): {found}")
            failures += trail(stack, mark)
            break
    async with ticking(stack, price):
        for live in list(stack.book):
            await stack.lifecycle.close_position(live.id, "signal")
    await settle(stack, price)
    elapsed = time.monotonic() - started
    positions = {}
    for row in stack.rows(RecordKind.POSITION):
        positions[row["id"]] = row["status"]
    final = Counter(positions.values())
    left_open = await stack.venue.fetch_open_orders()
    held = [p for p in stack.venue._book.positions.values() if p.qty != 0]
    audit = audit_mismatches(stack)
    critical = Counter(
        r["kind"] for r in stack.rows(RecordKind.EVENT) if r["severity"] == "critical"
    )
    print(
        f"\nchaos exchange_faults operations={operations} opens={outcomes['opens']} "
        f"closes={outcomes['closes']} active={outcomes['active']} "
        f"rolled_back={outcomes['rolled_back']} failed={outcomes['failed']} "
        f"final_closed={final['closed']} final_rolled_back={final['rolled_back']} "
        f"final_failed={final['failed']} venue_fills={len(stack.venue._book.fills)} "
        f"venue_orders={len(stack.venue._book.orders)} "
        f"invariant_violations={len([f for f in failures if f.startswith('after')])} "
        f"audit_mismatches={len(audit)} critical_alerts={dict(critical) or 0} "
        f"elapsed_s={elapsed:.1f}"
    )
    assert not failures, "\n".join(failures)
    assert not audit, "\n".join(audit[:20])
    assert ([], []) == (held, left_open)
    assert outcomes["opens"] > operations // 3  # the run really traded
    assert set(final) <= {"closed", "rolled_back", "failed"}, final
