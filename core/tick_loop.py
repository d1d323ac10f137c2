"""The tick loop: every price goes to the price board, the venue hooks (the paper venue
matches its resting orders), the TriggerBook and the position tracker, in that order.

Work a tick starts (executing a fired order, moving a stop) runs as a task of its own, so
a slow venue call never delays the evaluation of later ticks, on this symbol or another.
A fired order's task starts eagerly (core/eager.py): it is sent to the venue before the
tick loop goes on, not a loop turn later behind whatever else is waiting. The tasks are
tracked: their failures are logged, never lost, never fatal to the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable, Coroutine, Sequence
from typing import Any

import structlog

from core.eager import start_eagerly
from core.errors import TraderError
from core.models import Tick
from core.order_manager import OrderManager
from core.order_model import Order
from core.position_lifecycle import PositionLifecycle, StopMove
from core.prices import PriceBoard

TickHook = Callable[[Tick], None]
# Both clocks are read on every tick: module globals, not attribute lookups on ``time``.
_monotonic = time.monotonic
_perf_ns = time.perf_counter_ns


class TaskSet:
    """Fire-and-track background work: exceptions are logged, tasks awaited on close."""

    def __init__(self, name: str) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = structlog.get_logger(name)

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def start(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any] | None:
        """As :meth:`spawn`, but the work runs now, up to its first wait (core/eager.py);
        None when it ended there."""
        task, exc = start_eagerly(coro, what)
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._done)
        elif exc is not None:
            self._failed(what, exc)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._failed(task.get_name(), exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._log.error("task_failed", task=what, error=repr(exc))

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> int:
        """Wait for in-flight tasks up to ``timeout_s``; cancel the rest. Returns how many
        had to be cancelled."""
        if not self._tasks:
            return 0
        pending = set(self._tasks)
        _, still = await asyncio.wait(pending, timeout=timeout_s)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still)
        return len(still)


class TickLoop:
    """Consumes a feed and fans each tick out."""

    def __init__(
        self,
        feed: AsyncIterable[Tick],
        prices: PriceBoard,
        orders: OrderManager,
        positions: PositionLifecycle,
        tasks: TaskSet,
        *,
        venue_hooks: tuple[TickHook, ...] = (),
    ) -> None:
        self._feed = feed
        self._prices = prices
        self._orders = orders
        self._positions = positions
        self._tasks = tasks
        self._hooks = venue_hooks
        self.ticks = 0
        self.last_tick_monotonic: float | None = None
        # Per symbol, when its last tick arrived (monotonic): the feed age an operator
        # pages on when one market goes quiet while the others still tick.
        self.symbol_seen: dict[str, float] = {}
        self._log = structlog.get_logger("ticks")

    async def run(self) -> None:
        async for tick in self._feed:
            self.on_tick(tick)
            # Yield so spawned executions start promptly even under a fast replay.
            await asyncio.sleep(0)

    def on_tick(self, tick: Tick) -> None:
        """Everything one tick does, synchronously; slow work is spawned."""
        started = _perf_ns()
        self._prices.update(tick)
        for hook in self._hooks:
            try:
                hook(tick)
            except TraderError as exc:
                # The venue could not take this price (its store failed, say). Triggers and
                # positions still see the tick; the venue catches up on the next one.
                self._log.error("venue_hook_failed", symbol=tick.symbol, error=str(exc))
        # A bug in one order's or position's handling must not blind the daemon to every
        # later tick (a restart would only meet the same order again), nor keep the other
        # half from seeing this one: orders that fired are sent even if the positions'
        # handling fails.
        fired: Sequence[Order] = ()
        moves: Sequence[StopMove] = ()
        try:
            fired = self._orders.on_tick(tick)
        except Exception:
            self._log.exception("tick_handling_failed", symbol=tick.symbol, part="orders")
        try:
            moves = self._positions.on_tick(tick)
        except Exception:
            self._log.exception("tick_handling_failed", symbol=tick.symbol, part="positions")
        if fired or moves:  # most ticks start nothing
            self._spawn(fired, moves, started)
        self.ticks += 1
        self.last_tick_monotonic = self.symbol_seen[tick.symbol] = _monotonic()

    def _spawn(self, fired: Sequence[Order], moves: Sequence[StopMove], started: int) -> None:
        # A fired order is sent now, before the tick loop goes on (its submit is the
        # latency that matters); a stop move, a task of its own, follows in its turn.
        for order in fired:
            self._tasks.start(
                self._orders.execute(order, started), f"execute {order.client_order_id}"
            )
        for move in moves:
            self._tasks.spawn(
                self._positions.move_stop(move.position_id, move.price),
                f"move stop p{move.position_id}",
            )
