"""The composition root: builds the concrete daemon from settings and runs it.

Start-up order (docs/architecture.md, "Data flow"): settings (already loaded by the
caller), logging, database and migrations, the account's single-instance lock, the audit
writer (which replays its spool first), the venue and the feed, reconciliation with the
venue, re-arming of emulated orders and trailing state, then the daemon's task group and
READY=1. Everything opened here is an async context manager on one AsyncExitStack, so
shutdown closes it in reverse order: feed, venue, audit writer (flushed), lock,
database.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
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
from cli.systemd import Notifier, audit_status, watchdog_interval_s
from config.logging import configure_logging, register_secrets
from config.settings import Settings
from core.atomic_position_manager import ApmConfig, AtomicPositionManager
from core.audit_gate import TrailHealth
from core.daemon import Daemon, DaemonConfig
from core.errors import TraderError, ValidationError
from core.execution import Executor
from core.intake import IntakeHandler
from core.journal import Journal
from core.money import utcnow
from core.order_manager import OrderManager
from core.position_book import PositionBook
from core.position_lifecycle import PositionLifecycle
from core.prices import PriceBoard
from core.reconciler import Reconciler
from core.records import Severity
from core.tick_loop import TaskSet, TickLoop
from core.triggers import TrailingState, TriggerBook
from core.venue import ExchangeAdapter

log = structlog.get_logger("service")


class LibraryLogBridge(logging.Handler):
    """Log records of libraries (asyncpg, asyncio, ccxt) as our own events: one line each,
    secrets masked, a traceback as a field. Without it the logging module prints them to
    stderr as multi-line text that no redaction ever sees (asyncpg does, with a traceback,
    every time the pool cannot reconnect during a database outage)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            method = getattr(_library_log, record.levelname.lower(), _library_log.warning)
            extra: dict[str, Any] = {"exc_info": record.exc_info} if record.exc_info else {}
            method("library_log", source=record.name, message=record.getMessage(), **extra)
        except Exception:
            self.handleError(record)


_library_log = structlog.get_logger("library")


def setup(settings: Settings) -> None:
    """Logging and secret redaction, before anything can log."""
    configure_logging(settings.log_format, settings.log_level)
    root = logging.getLogger()
    if not any(isinstance(h, LibraryLogBridge) for h in root.handlers):
        root.addHandler(LibraryLogBridge(logging.WARNING))
    register_secrets(settings.secret_values())


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
    """Every failure that reaches the top ends as one ``fatal`` log line and exit 1, never
    as a bare traceback: the logger redacts secrets from the line, and a traceback printed
    by the interpreter would bypass it. Known failures (ours, and the operating system's:
    a port in use, a disk full) are the message alone; anything else is a bug, so its
    traceback rides along as a field of that same line."""
    try:
        return _run(coro)
    except KeyboardInterrupt:
        return 130
    except (TraderError, OSError) as exc:
        log.error("fatal", error=_describe(exc))
        return 1
    except Exception as exc:
        log.error("fatal", error=_describe(exc), exc_info=exc)
        return 1


def _describe(exc: BaseException) -> str:
    """One line about ``exc``; for a task group's failure, about what failed inside it."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    if isinstance(exc, TraderError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    """Write atomically (temp file, fsync, rename): a crash leaves the old or the new.

    Blocking file I/O: the daemon calls it in a worker thread (core/daemon.py)."""
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


def _parse_trailing(text: str) -> list[TrailingState]:
    raw = json.loads(text)
    if not isinstance(raw, list):
        raise TypeError("not a list of trailing states")
    states = []
    for item in raw:
        cid, activated, extreme = item["id"], item["activated"], item["extreme"]
        if not isinstance(cid, str) or not cid or not isinstance(activated, bool):
            raise ValueError(f"malformed entry {item!r}")
        peak = None if extreme is None else Decimal(str(extreme))
        if peak is not None and not (peak.is_finite() and peak > 0):
            raise ValueError(f"extreme of {cid} is not a positive price: {extreme!r}")
        states.append(TrailingState(cid, activated, peak))
    return states


def load_trailing(path: Path, journal: Journal | None = None) -> list[TrailingState]:
    """The trailing state a previous run saved; empty when there is none.

    A file that cannot be read or parsed must not stop every start-up from now on: it is
    set aside (:func:`set_aside_trailing`) and the daemon starts without it.
    """
    if not path.exists():
        return []
    try:
        return _parse_trailing(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, ArithmeticError) as exc:
        set_aside_trailing(path, f"{type(exc).__name__}: {exc}", journal)
    return []


def set_aside_trailing(path: Path, error: str, journal: Journal | None = None) -> None:
    """Move an unusable trailing state file to ``<name>.corrupt-<UTC time>`` (kept for a
    person to look at) and say so with an error event naming both files. Trailing orders
    then resume from the current price instead of their saved extreme."""
    aside = path.with_name(f"{path.name}.corrupt-{utcnow():%Y%m%dT%H%M%SZ}")
    try:
        path.replace(aside)
        moved = str(aside)
    except OSError as exc:
        moved = f"not moved ({exc.strerror})"
    message = f"trailing state file {path} is unusable ({error}); moved to {moved}"
    if journal is not None:
        journal.event(
            "trailing_state_unreadable",
            message,
            severity=Severity.ERROR,
            file=str(path),
            moved_to=moved,
        )
    else:
        log.error("trailing_state_unreadable", file=str(path), moved_to=moved, error=error)


def restore_trailing(orders: OrderManager, path: Path, journal: Journal) -> None:
    """Resume the trailing stops re-armed from the database where they were. States the
    trigger book refuses (naming an order that is not a trailing stop, an active one
    without a price) set the file aside like an unreadable one: nothing is restored."""
    states = load_trailing(path, journal)
    try:
        orders.rearm((), states)
    except ValidationError as exc:
        set_aside_trailing(path, f"ValidationError: {exc}", journal)


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
    from database.daemons import DaemonRegistry, market_precision
    from database.ids import PositionIdReserve
    from database.intake import IntakeListener
    from database.lock import AccountLock
    from database.migrate import migrate
    from database.pool import open_database
    from database.repository import Repository
    from database.schema_check import refuse_mismatch, refuse_newer
    from database.state import load_snapshot
    from exchanges.feeds import build_feed

    stop = stop or asyncio.Event()
    install_signals(stop)
    notifier = Notifier()
    metrics = MetricsSource()
    async with AsyncExitStack() as stack:
        stack.callback(notifier.close)
        pool = await stack.enter_async_context(open_database(settings))
        # Schema drift ends the start with one line (database/schema_check.py).
        await refuse_newer(pool)
        await migrate(pool)
        await refuse_mismatch(pool)
        lock = await stack.enter_async_context(AccountLock(pool, settings.account))
        # A lock lost to another daemon stops this one (database/lock.py).
        watch = asyncio.create_task(_stop_when(lock.failed, stop), name="lock-lost")
        stack.callback(watch.cancel)
        # Bound before anything acts on the venue: a port in use ends the start here.
        await stack.enter_async_context(serve_metrics(settings.metrics_port, metrics.collect))
        audit = await stack.enter_async_context(AuditWriter.from_settings(pool, settings))
        metrics.audit = audit
        journal = Journal(audit, settings.account)
        lock.journal = journal
        journal.event(
            "daemon_start", "daemon starting", exchange=settings.exchange, feed=settings.feed
        )
        repo = Repository(pool)
        ids = PositionIdReserve(repo)
        await ids.fill()
        stack.push_async_callback(ids.aclose)
        venue = await stack.enter_async_context(open_venue(settings))
        # What this daemon is, for the CLI to check requests against (database/daemons.py).
        await stack.enter_async_context(
            DaemonRegistry(
                pool,
                settings.account,
                venue.name,
                settings.symbols,
                market_precision(venue, settings.symbols),
            )
        )
        core = build_core(settings, venue, journal, ids, trail=audit)
        # Reconcile before trading: what the database knew, against what the venue holds.
        positions, orders = await load_snapshot(pool, settings.account, venue.name)
        core.reconciler.restore(positions, orders)
        restore_trailing(core.orders, trailing_file(settings), journal)
        await core.reconciler.reconcile()
        intake = IntakeListener(pool, core.intake_handler, settings.account)
        if interrupted := await intake.recover_interrupted():
            journal.event("intake_interrupted", f"{interrupted} requests were cut by a restart")
        feed = await stack.enter_async_context(build_feed(settings, venue))
        daemon = build_daemon(settings, core, feed, notifier)
        daemon.intake = intake
        daemon.summary = lambda: status_line(daemon, audit)
        daemon.reconcile = core.reconciler.reconcile
        daemon.housekeeping = lambda: _purge(repo)
        metrics.daemon = daemon
        # Everything built so far (markets, ccxt's tables, the restored book) lives as long
        # as the process: out of the collector's sight, a full collection no longer walks
        # it, which keeps GC pauses on the tick path short (~10x measured under load).
        gc.collect()
        gc.freeze()
        await daemon.run(stop)
        if lock.error is not None:
            journal.event(
                "daemon_stop",
                f"daemon stopped: {lock.error}",
                severity=Severity.CRITICAL,
            )
            return 1
        journal.event("daemon_stop", "daemon stopped cleanly")
    return 0


def status_line(daemon: Daemon, audit: Any) -> str:
    """``STATUS=``: positions and orders held, and the audit trail's state when not whole."""
    line = f"positions={len(daemon.book)} orders={len(daemon.orders.active_orders())}"
    trail = audit_status(audit)
    return f"{line} {trail}" if trail else line


async def _stop_when(event: asyncio.Event, stop: asyncio.Event) -> None:
    await event.wait()
    stop.set()


async def _purge(repo: Any) -> None:
    """Daily-ish housekeeping: position samples older than the retention period."""
    removed = await repo.purge_position_updates()
    if removed:
        log.info("position_updates_purged", rows=removed)


class MetricsSource:
    """What /metrics reads: filled in as start-up builds the parts, so the endpoint can
    be bound first (a port in use must stop the start before anything acts)."""

    def __init__(self) -> None:
        self.daemon: Daemon | None = None
        self.audit: Any = None

    def collect(self) -> list[Sample]:
        ready = self.daemon is not None and self.audit is not None
        samples: list[Sample] = [
            ("trader_ready", "1 once start-up is complete", {}, 1.0 if ready else 0.0)
        ]
        if self.daemon is not None and self.audit is not None:
            samples += collect_metrics(self.daemon, self.audit)
        return samples


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
            "trader_audit_degraded",
            "1 while records can be neither written nor spooled (no new risk is taken)",
            {},
            1.0 if audit.degraded else 0.0,
        ),
        (
            "trader_audit_dead_letters",
            "Audit records the database refused, waiting for main.py audit replay",
            {},
            float(audit.dead_letter_count),
        ),
        (
            "trader_audit_dead_letter_age_seconds",
            "Age of the oldest dead letter (0 when there are none)",
            {},
            float(audit.dead_letter_oldest_age_s or 0.0),
        ),
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


def build_core(
    settings: Settings,
    venue: ExchangeAdapter,
    journal: Journal,
    ids: Any,
    trail: TrailHealth | None = None,
) -> Core:
    """The trading core; ``trail`` (the audit writer) gates new risk (core/audit_gate.py)."""
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
            stop_move_min_ticks=settings.stop_move_min_ticks,
            stop_move_interval_s=settings.stop_move_interval_s,
            leverage=settings.leverage or getattr(venue, "leverage", None),
        ),
        last_price=prices.price,
        trail=trail,
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
        trail=trail,
    )
    # Orders placed for a position (--position) end with it, whatever ends it.
    apm.on_position_end(orders.end_position_orders)
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
    handler = IntakeHandler(
        settings.account, apm, lifecycle, orders, symbols=settings.symbols, book=book
    )
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
