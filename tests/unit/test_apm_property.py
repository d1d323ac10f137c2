"""Property: under random venue faults, opens and closes never leave a position naked."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import PositionConflict, ValidationError
from core.models import OrderType
from tests.trading_harness import BTC, ETH, Stack, build_stack, long_signal, short_signal

FAULTS = [
    "reject_stop",
    "reject_entry",
    "timeout_after_accept",
    "no_average_price",
    "no_status",
    "id_only_reply",
    "partial_fill",
]
SYMBOLS = [BTC, ETH]
AMOUNT = {BTC: "0.05", ETH: "1"}

fault_sets = st.dictionaries(st.sampled_from(FAULTS), st.sampled_from(["0.3", "1"]), max_size=3)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.sampled_from(SYMBOLS), st.booleans(), fault_sets),
        st.tuples(st.just("close"), st.sampled_from(SYMBOLS), st.just(True), fault_sets),
        st.tuples(st.just("tick"), st.sampled_from(SYMBOLS), st.integers(-300, 300), st.just({})),
    ),
    min_size=1,
    max_size=12,
)


async def check_invariant(stack: Stack) -> None:
    """Every venue position is ours, active, and covered by stops for its full quantity;
    no flat market keeps a stop; no market has two open positions."""
    stops = [o for o in await stack.venue.fetch_open_orders() if o.type is OrderType.STOP_MARKET]
    held = {p.symbol: abs(p.qty) for p in stack.venue._book.positions.values() if p.qty != 0}
    for symbol in SYMBOLS:
        live = stack.book.on_symbol(symbol)
        covered = sum((s.amount or Decimal(0)) for s in stops if s.symbol == symbol)
        qty = held.get(symbol, Decimal(0))
        if qty:
            assert live is not None, f"{symbol}: venue position {qty} that no position owns"
            assert "active" == live.position.status.value, live.position
            assert qty == live.position.quantity
            assert covered >= qty, f"{symbol}: {qty} held, stops cover {covered}"
        else:
            assert covered == 0, f"{symbol}: flat but a stop for {covered} remains"
            assert live is None or live.position.quantity == 0


async def run_operations(ops: list[tuple[str, str, Any, dict[str, str]]], seed: int) -> None:
    stack = build_stack(seed=seed)
    price = {BTC: Decimal(50000), ETH: Decimal(3000)}
    for kind, symbol, arg, faults in ops:
        stack.venue.faults = faults
        if kind == "open":
            signal = (long_signal if arg else short_signal)(AMOUNT[symbol], symbol=symbol)
            with contextlib.suppress(PositionConflict, ValidationError):
                await stack.apm.open_position_atomic(signal)
        elif kind == "close" and (live := stack.book.on_symbol(symbol)) is not None:
            await stack.lifecycle.close_position(live.id, "signal")
        elif kind == "tick":
            price[symbol] += Decimal(arg) * (1 if symbol == BTC else Decimal("0.1"))
            stack.tick(symbol, price[symbol])
        stack.venue.faults = {}
        # Let partial entries complete and the venue's news reach the positions.
        for symbol_ in SYMBOLS:
            stack.tick(symbol_, price[symbol_])
        for live in list(stack.book):
            await stack.lifecycle.sync(live.id)
        await stack.tasks.drain(5)
        await check_invariant(stack)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=operations, seed=st.integers(0, 1000))
def test_random_faults_never_leave_a_position_unprotected(ops: Any, seed: int) -> None:
    """After every operation settles: protected or flat, one position per market, no
    stray stops — whatever the venue's faults did."""
    asyncio.run(run_operations(ops, seed))
