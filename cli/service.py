"""The composition root: builds the concrete daemon from settings and runs it.

Start-up order (DESIGN.md section 7): settings (already loaded by the caller), logging,
database and migrations, the account's single-instance lock, the audit writer (which
replays its spool first), the venue and the feed, reconciliation with the venue, re-arming
of emulated orders and trailing state, then the daemon's task group and READY=1.
Everything opened here is an async context manager on one AsyncExitStack, so shutdown
closes it in reverse order: feed, venue, audit writer (flushed), lock, database.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from cli.metrics import Sample, percentile, serve_metrics, since
from cli.systemd import Notifier, watchdog_interval_s
from config.logging import configure_logging, register_secrets
from config.settings import Settings
from core.atomic_position_manager import ApmConfig, AtomicPositionManager
from core.daemon import Daemon, DaemonConfig
from core.errors import TraderError
from core.execution import Executor
from core.intake import IntakeHandler
from core.journal import Journal
from core.order_manager import OrderManager
from core.position_book import PositionBook
from core.position_lifecycle import PositionLifecycle
from core.prices import PriceBoard
from core.reconciler import Reconciler
from core.tick_loop import TaskSet, TickLoop
from core.triggers import TrailingState, TriggerBook
from exchanges.base import ExchangeAdapter

log = structlog.get_logger("service")


def setup(settings: Settings) -> None:
    """Logging and secret redaction, before anything can log."""
    configure_logging(settings.log_format, settings.log_level)
    register_secrets(
        s.get_secret_value()
        for s in (
            settings.api_key,
            settings.api_secret,
            settings.api_password,
            settings.database_url,
        )
    )


def _run(coro: Any) -> int:
    """Run on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return int(asyncio.run(coro))
    return int(uvloop.run(coro))


def migrate_command(settings: Settings) -> int:
    setup(settings)

    async def go() -> int:
        from database.migrate import migrate
        from database.pool import open_database

        async with open_database(settings) as pool:
            applied = await migrate(pool)
        log.info("migrated", applied=applied or "nothing to do")
        return 0

    return _guarded(go())


def run_command(settings: Settings) -> int:
    setup(settings)
    return _guarded(run_daemon(settings))


def _guarded(coro: Any) -> int:
    """Known failures end as one line and exit 1; secrets are redacted by the logger."""
    try:
        return _run(coro)
    except TraderError as exc:
        log.error("fatal", error=str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


@asynccontextmanager
async def open_venue(settings: Settings) -> AsyncIterator[ExchangeAdapter]:
    """The paper venue or a ccxt adapter, closed on exit."""
    if settings.is_paper:
        from exchanges.paper import PaperExchange

        venue: Any = PaperExchange.from_settings(settings)
    else:
        from exchanges.ccxt_adapter import CcxtAdapter

        venue = CcxtAdapter.from_settings(settings)
    try:
        await venue.load_markets()
        yield venue
    finally:
        await venue.aclose()


def trailing_file(settings: Settings) -> Path:
    return settings.state_dir / f"trailing-{settings.account}.json"


def save_trailing(path: Path, states: list[TrailingState]) -> None:
    """Write atomically (temp file, fsync, rename): a crash leaves the old or the new."""
    data = [
        {
            "id": s.client_order_id,
            "activated": s.activated,
            "extreme": str(s.extreme) if s.extreme is not None else None,
        }
        for s in states
    ]
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def load_trailing(path: Path) -> list[TrailingState]:
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
        return [
            TrailingState(
                client_order_id=item["id"],
                activated=bool(item["activated"]),
                extreme=Decimal(item["extreme"]) if item["extreme"] is not None else None,
            )
            for item in raw
        ]
    except (ValueError, KeyError, TypeError) as exc:
        log.error("trailing_state_unreadable", path=str(path), error=repr(exc))
        return []


def install_signals(stop: asyncio.Event) -> None:
    """First SIGTERM / SIGINT: orderly stop. Second: exit at once."""
    loop = asyncio.get_running_loop()

    def first(signame: str) -> None:
        if stop.is_set():
            log.warning("second_signal_exit_now", signal=signame)
            sys.stdout.flush()
            os._exit(1)
        log.info("signal_received", signal=signame)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, first, sig.name)


async def run_daemon(settings: Settings, stop: asyncio.Event | None = None) -> int:
    from database.audit import AuditWriter
    from database.ids import PositionIdReserve
    from database.intake import IntakeListener
    from database.lock import account_lock
    from database.migrate import migrate
    from database.pool import open_database
    from database.repository import Repository
    from database.state import load_snapshot
    from exchanges.feeds import build_feed

    stop = stop or asyncio.Event()
    install_signals(stop)
    notifier = Notifier()
    async with AsyncExitStack() as stack:
        stack.callback(notifier.close)
        pool = await stack.enter_async_context(open_database(settings))
        await migrate(pool)
        await stack.enter_async_context(account_lock(pool, settings.account))
        audit = await stack.enter_async_context(AuditWriter.from_settings(pool, settings))
        journal = Journal(audit, settings.account)
        journal.event(
            "daemon_start", "daemon starting", exchange=settings.exchange, feed=settings.feed
        )
        repo = Repository(pool)
        ids = PositionIdReserve(repo)
        await ids.fill()
        stack.push_async_callback(ids.aclose)
        venue = await stack.enter_async_context(open_venue(settings))
        core = build_core(settings, venue, journal, ids)
        # Reconcile before trading: what the database knew, against what the venue holds.
        positions, orders = await load_snapshot(pool, settings.account, venue.name)
        core.reconciler.restore(positions, orders)
        core.orders.rearm((), load_trailing(trailing_file(settings)))
        await core.reconciler.reconcile()
        intake = IntakeListener(pool, core.intake_handler, settings.account)
        if interrupted := await intake.recover_interrupted():
            journal.event("intake_interrupted", f"{interrupted} requests were cut by a restart")
        feed = await stack.enter_async_context(build_feed(settings, venue))
        daemon = build_daemon(settings, core, feed, notifier)
        daemon.intake = intake
        daemon.reconcile = core.reconciler.reconcile
        daemon.housekeeping = lambda: _purge(repo)
        await stack.enter_async_context(
            serve_metrics(settings.metrics_port, lambda: collect_metrics(daemon, audit))
        )
        await daemon.run(stop)
        journal.event("daemon_stop", "daemon stopped cleanly")
    return 0


async def _purge(repo: Any) -> None:
    """Daily-ish housekeeping: position samples older than the retention period."""
    removed = await repo.purge_position_updates()
    if removed:
        log.info("position_updates_purged", rows=removed)


def collect_metrics(daemon: Daemon, audit: Any) -> list[Sample]:
    """What /metrics shows: positions, orders by status, audit health, feed, latency."""
    samples: list[Sample] = [
        ("trader_open_positions", "Positions not yet closed", {}, float(len(daemon.book))),
        (
            "trader_audit_queue_depth",
            "Audit records waiting in memory",
            {},
            float(audit.queue_depth),
        ),
        ("trader_audit_spool_bytes", "Audit records spooled to disk", {}, float(audit.spool_bytes)),
        ("trader_audit_lag_p99_seconds", "Record-to-commit lag, p99", {}, float(audit.lag_p99_s)),
        (
            "trader_feed_age_seconds",
            "Seconds since the last tick",
            {},
            since(daemon.tick_loop.last_tick_monotonic),
        ),
        ("trader_ticks_total", "Ticks processed", {}, float(daemon.tick_loop.ticks)),
    ]
    by_status: dict[str, int] = {}
    orders = [o for live in daemon.book for o in live.live_orders()]
    orders.extend(daemon.orders.active_orders())
    for order in orders:
        by_status[order.status.value] = by_status.get(order.status.value, 0) + 1
    for status, count in sorted(by_status.items()):
        samples.append(("trader_orders", "Live orders by status", {"status": status}, float(count)))
    latencies = list(daemon.orders.latencies_us)
    for pct in (50, 99):
        samples.append(
            (
                "trader_tick_to_submit_microseconds",
                "Tick arrival to order submit",
                {"quantile": f"0.{pct}"},
                percentile(latencies, pct),
            )
        )
    return samples


@dataclass
class Core:
    """The trading core wired over one venue and one journal."""

    executor: Executor
    book: PositionBook
    prices: PriceBoard
    apm: AtomicPositionManager
    lifecycle: PositionLifecycle
    triggers: TriggerBook
    orders: OrderManager
    tasks: TaskSet
    reconciler: Reconciler
    intake_handler: IntakeHandler
    venue: ExchangeAdapter
    journal: Journal


def build_core(settings: Settings, venue: ExchangeAdapter, journal: Journal, ids: Any) -> Core:
    executor = Executor(venue, journal)
    book = PositionBook()
    prices = PriceBoard()
    apm = AtomicPositionManager(
        venue,
        executor,
        book,
        ids,
        ApmConfig(
            account=settings.account,
            default_stop_pct=settings.stop_loss_percent,
            default_tp_pct=settings.take_profit_percent,
            breakeven_pct=settings.breakeven_percent,
            trailing_activation_pct=settings.trailing_activation_percent,
            trailing_callback_pct=settings.trailing_callback_percent,
            stop_tries=settings.stop_retries,
        ),
        last_price=prices.price,
    )
    lifecycle = PositionLifecycle(venue, executor, book, apm, prices)
    triggers = TriggerBook()
    orders = OrderManager(
        venue,
        executor,
        triggers,
        prices,
        account=settings.account,
        positions=book,
        linked_fills=lifecycle.apply_order_fills,
    )
    reconciler = Reconciler(
        venue,
        executor,
        book,
        apm,
        lifecycle,
        orders,
        account=settings.account,
        symbols=settings.symbols,
    )
    handler = IntakeHandler(settings.account, apm, lifecycle, orders)
    return Core(
        executor,
        book,
        prices,
        apm,
        lifecycle,
        triggers,
        orders,
        TaskSet("executions"),
        reconciler,
        handler,
        venue,
        journal,
    )


def build_daemon(settings: Settings, core: Core, feed: Any, notifier: Notifier) -> Daemon:
    """The run loop over a wired core and a feed."""
    hooks = (core.venue.on_tick,) if hasattr(core.venue, "on_tick") else ()
    loop = TickLoop(feed, core.prices, core.orders, core.lifecycle, core.tasks, venue_hooks=hooks)
    interval = watchdog_interval_s()
    path = trailing_file(settings)
    return Daemon(
        config=DaemonConfig(
            account=settings.account,
            reconcile_interval_s=settings.reconcile_interval_s,
            heartbeat_interval_s=min(interval, 5.0) if interval else 5.0,
        ),
        journal=core.journal,
        book=core.book,
        lifecycle=core.lifecycle,
        orders=core.orders,
        tick_loop=loop,
        tasks=core.tasks,
        notify=notifier,
        save_trailing=lambda states: save_trailing(path, states),
    )
