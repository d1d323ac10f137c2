"""The daemon's run loop: the long-lived tasks, health, and an orderly shutdown.

Resources (database pool, audit writer, venue, feed) are opened by the composition root
(cli/service.py) in an AsyncExitStack and handed in already built, so this module knows
only protocols. :meth:`Daemon.run` starts the loops in a TaskGroup — ticks, venue sync,
intake, periodic reconciliation, heartbeat, trailing-state saves — and on ``stop``:

1. stops taking requests (the intake task is cancelled first);
2. lets in-flight venue calls finish, bounded (``drain_timeout_s``);
3. persists the trailing state;
4. returns, and the exit stack flushes the audit writer and closes the rest.

Native stops stay on the venue: a stopped daemon leaves every position protected.
A loop that dies with an unexpected error takes the group down and the process exits
non-zero, so systemd restarts it; expected errors are handled inside each loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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

    async def run(self, stop: asyncio.Event) -> None:
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            ticks = group.create_task(self.tick_loop.run(), name="ticks")
            loops = [
                group.create_task(
                    self._every(self.config.sync_interval_s, self._sync), name="sync"
                ),
                group.create_task(self._heartbeat(started), name="heartbeat"),
            ]
            if self.reconcile is not None:
                loops.append(
                    group.create_task(
                        self._every(
                            self.config.reconcile_interval_s, self.reconcile, skip_first=True
                        ),
                        name="reconcile",
                    )
                )
            if self.save_trailing is not None:
                loops.append(
                    group.create_task(
                        self._every(
                            self.config.trailing_save_interval_s, self._save_trailing_async
                        ),
                        name="trailing",
                    )
                )
            if self.housekeeping is not None:
                loops.append(
                    group.create_task(
                        self._every(self.config.housekeeping_interval_s, self.housekeeping),
                        name="housekeeping",
                    )
                )
            intake = group.create_task(self.intake.run(), name="intake") if self.intake else None
            self.notify.ready(self._summary())
            self.journal.event("daemon_ready", "start-up complete; trading")
            stop_wait = group.create_task(stop.wait(), name="stop")
            await asyncio.wait({stop_wait, ticks}, return_when=asyncio.FIRST_COMPLETED)
            self.notify.stopping()
            self.journal.event("daemon_stopping", "stop requested; finishing in-flight work")
            if self.intake is not None and intake is not None:
                # 1. no new requests; the one in hand (an open, say) runs to its end.
                self.intake.stop()
                await asyncio.wait({intake}, timeout=self.config.drain_timeout_s)
                intake.cancel()
            ticks.cancel()
            cancelled = await self.tasks.drain(self.config.drain_timeout_s)  # 2.
            if cancelled:
                self.journal.event(
                    "shutdown_cancelled_work",
                    f"{cancelled} venue calls did not finish in time; reconciliation resumes them",
                    severity=Severity.WARNING,
                )
            self._save_trailing()  # 3.
            for task in loops:
                task.cancel()
            stop_wait.cancel()

    async def _every(
        self, interval_s: float, work: Callable[[], Awaitable[None]], *, skip_first: bool = False
    ) -> None:
        """Run ``work`` every ``interval_s``; an error is logged and the loop goes on."""
        if skip_first:
            await asyncio.sleep(interval_s)
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a loop must outlive any one failure
                log.error("loop_error", work=getattr(work, "__name__", repr(work)), error=repr(exc))
            await asyncio.sleep(interval_s)

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

    def _save_trailing(self) -> None:
        if self.save_trailing is not None:
            self.save_trailing(self.orders.trailing_states())

    async def _save_trailing_async(self) -> None:
        self._save_trailing()
