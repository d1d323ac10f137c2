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
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog

from cli.core_wiring import Core, build_core, build_daemon
from cli.metered_venue import MeteredVenue
from cli.metrics import TraderMetrics, serve_metrics
from cli.systemd import Notifier, audit_status
from cli.trailing_state import restore_trailing, trailing_file
from config.logging import configure_logging, register_secrets
from config.settings import Settings
from core.daemon import Daemon
from core.errors import TraderError
from core.journal import Journal
from core.records import Severity
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
        from database.pool import open_database, open_session_pool

        async with (
            open_database(settings) as pool,
            open_session_pool(settings, pool) as session,
        ):
            applied = await migrate(session)  # its advisory lock needs a session
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


async def _open_checked_database(stack: AsyncExitStack, settings: Settings) -> tuple[Any, Any]:
    """The pool and the session pool (the same one unless TRADER_SESSION_DATABASE_URL is
    set), migrated, on ``stack``."""
    from database.migrate import migrate
    from database.pool import open_database, open_session_pool
    from database.schema_check import refuse_mismatch, refuse_newer

    pool = await stack.enter_async_context(open_database(settings))
    session = await stack.enter_async_context(open_session_pool(settings, pool))
    # Schema drift ends the start with one line (database/schema_check.py).
    await refuse_newer(session)
    await migrate(session)  # its advisory lock is a session's
    await refuse_mismatch(session)
    return pool, session


async def _reconcile_first(pool: Any, settings: Settings, core: Core) -> None:
    from database.state import load_snapshot

    # Reconcile before trading: what the database knew, against what the venue holds.
    positions, orders = await load_snapshot(pool, settings.account, core.venue.name)
    core.reconciler.restore(positions, orders)
    restore_trailing(core.orders, trailing_file(settings), core.journal)
    await core.reconciler.reconcile()


async def _register(stack: AsyncExitStack, pool: Any, settings: Settings, venue: Any) -> None:
    from database.daemons import DaemonRegistry, market_precision

    await stack.enter_async_context(
        DaemonRegistry(
            pool,
            settings.account,
            venue.name,
            settings.symbols,
            market_precision(venue, settings.symbols),
        )
    )


def _wire_daemon(
    settings: Settings,
    core: Core,
    feed: Any,
    notifier: Notifier,
    intake: Any,
    audit: Any,
    repo: Any,
) -> Daemon:
    daemon = build_daemon(settings, core, feed, notifier)
    daemon.intake = intake
    daemon.summary = lambda: status_line(daemon, audit)
    daemon.reconcile = core.reconciler.reconcile
    daemon.housekeeping = lambda: _maintain(repo.pool)
    return daemon


def _stop_on_lost_lock(stack: AsyncExitStack, lock: Any, stop: asyncio.Event) -> None:
    """A lock lost to another daemon stops this one (database/lock.py)."""
    watch = asyncio.create_task(_stop_when(lock.failed, stop), name="lock-lost")
    stack.callback(watch.cancel)


def _measure(metrics: TraderMetrics, daemon: Daemon, core: Any, audit: Any) -> None:
    """Point the core's and the audit writer's hooks at the metrics, and let a scrape read
    the levels of the running daemon."""
    core.journal.on_event = metrics.on_event
    core.orders.on_latency = metrics.tick_to_submit.observe
    core.apm.on_protected = metrics.open_to_protected.observe
    audit.on_lag = metrics.audit_lag.observe
    metrics.bind(daemon, audit)


async def run_daemon(settings: Settings, stop: asyncio.Event | None = None) -> int:
    from database.audit import AuditWriter
    from database.ids import PositionIdReserve
    from database.intake import IntakeListener
    from database.lock import AccountLock
    from database.repository import Repository
    from exchanges.feeds import build_feed

    stop = stop or asyncio.Event()
    install_signals(stop)
    notifier = Notifier()
    metrics = TraderMetrics()
    metered = settings.metrics_port != 0  # no endpoint: no measuring either
    async with AsyncExitStack() as stack:
        stack.callback(notifier.close)
        pool, session = await _open_checked_database(stack, settings)
        lock = await stack.enter_async_context(AccountLock(session, settings.account))
        _stop_on_lost_lock(stack, lock, stop)
        # Bound before anything acts on the venue: a port in use ends the start here.
        await stack.enter_async_context(
            serve_metrics(settings.metrics_address, settings.metrics_port, metrics)
        )
        audit = await stack.enter_async_context(AuditWriter.from_settings(pool, settings))
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
        await _register(stack, pool, settings, venue)
        traded = MeteredVenue(venue, metrics) if metered else venue
        core = build_core(settings, traded, journal, ids, trail=audit)
        await _reconcile_first(pool, settings, core)
        intake = IntakeListener(pool, core.intake_handler, settings.account, listen_pool=session)
        if interrupted := await intake.recover_interrupted():
            journal.event("intake_interrupted", f"{interrupted} requests were cut by a restart")
        feed = await stack.enter_async_context(build_feed(settings, venue))
        daemon = _wire_daemon(settings, core, feed, notifier, intake, audit, repo)
        if metered:
            _measure(metrics, daemon, core, audit)
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


async def _maintain(pool: Any) -> None:
    """Hourly housekeeping: the audit tables' partitions made ahead, their retention
    applied (database/partitions.py; it logs what it did)."""
    from database.partitions import maintain_partitions

    await maintain_partitions(pool)
