"""The daemon's run loop: the long-lived tasks, health, and an orderly shutdown.

Resources (database pool, audit writer, venue, feed) are opened by the composition root
(cli/service.py) in an AsyncExitStack and handed in already built, so this module knows
only protocols. :meth:`Daemon.run` starts the loops in a TaskGroup — ticks, venue sync,
intake, periodic reconciliation, heartbeat, trailing-state saves — and on ``stop``:

1. stops taking requests: the request in hand runs to its end (bounded), then intake
   stops;
2. stops the tick loop, lets in-flight venue calls finish and lets a reconcile / sync /
   housekeeping pass already under way complete, all within one ``drain_timeout_s``
   (no new pass starts; what is still running then is cancelled);
3. persists the trailing state;
4. returns, and the exit stack flushes the audit writer and closes the rest.

The trailing state is also saved every ``trailing_save_interval_s`` while it changes, in
a worker thread: the write ends in an ``fsync``, which must not stall the event loop.

Native stops stay on the venue: a stopped daemon leaves every position protected.
A loop that dies with an unexpected error takes the group down and the process exits
non-zero, so systemd restarts it; expected errors are handled inside each loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from core.journal import Journal
from core.order_manager import OrderManager
from core.position_book import PositionBook
from core.position_lifecycle import PositionLifecycle
from core.records import Severity
from core.tick_loop import TaskSet, TickLoop
from core.triggers import TrailingState

log = structlog.get_logger("daemon")


class Intake(Protocol):
    """The request intake (database/intake.py): runs until asked to stop, finishing the
    request in hand first."""

    async def run(self) -> None: ...
    def stop(self) -> None: ...


class Notify(Protocol):
    """systemd notification (cli/systemd.py), or anything with the same calls."""

    def ready(self, status: str = "") -> None: ...
    def watchdog(self) -> None: ...
    def status(self, text: str) -> None: ...
    def stopping(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    account: str
    sync_interval_s: float = 1.0
    reconcile_interval_s: float = 30.0
    heartbeat_interval_s: float = 5.0
    stall_after_s: float = 30.0
    trailing_save_interval_s: float = 5.0
    drain_timeout_s: float = 10.0
    housekeeping_interval_s: float = 3600.0


@dataclass
class Daemon:
    """Runs the loops until ``stop`` is set."""

    config: DaemonConfig
    journal: Journal
    book: PositionBook
    lifecycle: PositionLifecycle
    orders: OrderManager
    tick_loop: TickLoop
    tasks: TaskSet
    notify: Notify
    intake: Intake | None = None
    reconcile: Callable[[], Awaitable[None]] | None = None
    housekeeping: Callable[[], Awaitable[None]] | None = None
    save_trailing: Callable[[list[TrailingState]], None] | None = None
    summary: Callable[[], str] | None = None
    _winding_down: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _trailing_saved: list[TrailingState] | None = field(default=None, init=False)

    async def run(self, stop: asyncio.Event) -> None:
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            ticks = group.create_task(self.tick_loop.run(), name="ticks")
            heartbeat = group.create_task(self._heartbeat(started), name="heartbeat")
            loops = self._start_loops(group)
            intake = group.create_task(self.intake.run(), name="intake") if self.intake else None
            self.notify.ready(self._summary())
            self.journal.event("daemon_ready", "start-up complete; trading")
            stop_wait = group.create_task(stop.wait(), name="stop")
            await asyncio.wait({stop_wait, ticks}, return_when=asyncio.FIRST_COMPLETED)
            self.notify.stopping()
            self.journal.event("daemon_stopping", "stop requested; finishing in-flight work")
            await self._wind_down(ticks, intake, loops)
            await self._save_trailing_final()  # 3.
            heartbeat.cancel()
            stop_wait.cancel()

    def _start_loops(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """The periodic loops: sync always; reconcile, trailing saves and housekeeping
        where they are wired."""
        cfg = self.config
        loops = [group.create_task(self._every(cfg.sync_interval_s, self._sync), name="sync")]
        if self.reconcile is not None:
            loops.append(
                group.create_task(
                    self._every(cfg.reconcile_interval_s, self.reconcile, skip_first=True),
                    name="reconcile",
                )
            )
        if self.save_trailing is not None:
            loops.append(
                group.create_task(
                    self._every(cfg.trailing_save_interval_s, self._save_trailing),
                    name="trailing",
                )
            )
        if self.housekeeping is not None:
            loops.append(
                group.create_task(
                    self._every(cfg.housekeeping_interval_s, self.housekeeping),
                    name="housekeeping",
                )
            )
        return loops

    async def _wind_down(
        self,
        ticks: asyncio.Task[None],
        intake: asyncio.Task[None] | None,
        loops: list[asyncio.Task[None]],
    ) -> None:
        """Steps 1 and 2 of the orderly stop; what was cut short is said in an event."""
        if self.intake is not None and intake is not None:
            # 1. no new requests; the one in hand (an open, say) runs to its end.
            self.intake.stop()
            await asyncio.wait({intake}, timeout=self.config.drain_timeout_s)
            intake.cancel()
        ticks.cancel()
        # 2. no new pass of any loop; the passes and venue calls under way finish.
        self._winding_down.set()
        cut_loops, cut_calls = await asyncio.gather(
            self._finish(loops, self.config.drain_timeout_s),
            self.tasks.drain(self.config.drain_timeout_s),
        )
        if cut_calls:
            self.journal.event(
                "shutdown_cancelled_work",
                f"{cut_calls} venue calls did not finish in time; reconciliation resumes them",
                severity=Severity.WARNING,
            )
        if cut_loops:
            self.journal.event(
                "shutdown_cancelled_work",
                f"did not finish in time: {', '.join(cut_loops)}; the next start redoes it",
                severity=Severity.WARNING,
            )

    @staticmethod
    async def _finish(loops: list[asyncio.Task[None]], timeout_s: float) -> list[str]:
        """Wait up to ``timeout_s`` for the loops to end their current pass (they start no
        new one once winding down); cancel the rest. The names of those cut short."""
        if not loops:
            return []
        _, still = await asyncio.wait(loops, timeout=timeout_s)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still)
        return sorted(task.get_name() for task in still)

    async def _every(
        self, interval_s: float, work: Callable[[], Awaitable[None]], *, skip_first: bool = False
    ) -> None:
        """Run ``work`` every ``interval_s``; an error is logged and the loop goes on.
        Once the daemon winds down no new pass starts, and the loop ends."""
        if skip_first and await self._pause(interval_s):
            return
        while not self._winding_down.is_set():
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a loop must outlive any one failure
                log.error("loop_error", work=getattr(work, "__name__", repr(work)), error=repr(exc))
            if await self._pause(interval_s):
                return

    async def _pause(self, interval_s: float) -> bool:
        """Sleep ``interval_s``, or less if the daemon starts winding down: True then."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._winding_down.wait(), timeout=interval_s)
        return self._winding_down.is_set()

    async def _sync(self) -> None:
        """Learn from the venue: fills of stops / take-profits / entries, native orders."""
        await self.lifecycle.sync_all()
        await self.orders.sync_native()

    async def _heartbeat(self, started: float) -> None:
        """WATCHDOG=1 while ticks flow; silence when the feed or tick loop stalls, so
        systemd's watchdog restarts a daemon that is alive but blind."""
        while True:
            last = self.tick_loop.last_tick_monotonic or started
            if time.monotonic() - last < self.config.stall_after_s:
                self.notify.watchdog()
            else:
                log.error("feed_stalled", seconds=round(time.monotonic() - last, 1))
            self.notify.status(self._summary())
            await asyncio.sleep(self.config.heartbeat_interval_s)

    def _summary(self) -> str:
        if self.summary is not None:
            return self.summary()
        return f"positions={len(self.book)} orders={len(self.orders.active_orders())}"

    async def _save_trailing(self) -> None:
        """Persist the trailing state if it changed since the last save, in a worker thread.

        The write runs to its end even if this task is cancelled (a thread cannot be
        stopped): the task then waits for it, so two writes of the file never overlap.
        """
        if self.save_trailing is None:
            return
        states = self.orders.trailing_states()
        if states == self._trailing_saved:
            return
        write = asyncio.ensure_future(asyncio.to_thread(self.save_trailing, states))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait({write})
            raise
        self._trailing_saved = states

    async def _save_trailing_final(self) -> None:
        """The last save, at shutdown: a failure is logged, never a reason to skip the
        audit flush that follows."""
        try:
            await self._save_trailing()
        except Exception as exc:
            log.error("trailing_state_save_failed", error=repr(exc))
