"""The daemon's Prometheus metrics, kept with prometheus_client in a registry of its own
and served by the library's own HTTP server on ``TRADER_METRICS_ADDRESS`` (loopback by
default) : ``TRADER_METRICS_PORT``.

Latencies are Histograms in seconds, with buckets from 10 µs to 10 s; counts are Counters
(exposed with ``_total``); levels are Gauges. The hot paths only call ``observe`` / ``inc``
(thread-safe in prometheus_client). Levels read from the daemon's structures (positions,
orders, the audit writer) are set by :meth:`TraderMetrics.refresh` when a scrape asks for
them, run in the event loop: the server's thread never walks a structure the loop is
changing, and nothing walks them when nobody scrapes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core.daemon import Daemon
from core.errors import TraderError
from core.reconciler import DISCREPANCY_EVENTS
from core.records import Severity

# 10 µs .. 10 s, about three buckets a decade: a tick-to-submit p99 of 1 ms and a venue
# call of 2 s are both resolved.
LATENCY_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class MetricsUnavailable(TraderError):
    """The metrics port cannot be bound (in use, not allowed). Final: fix the setting."""


class TraderMetrics:
    """Every metric the daemon exports, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Registered first, so the registry (which collects in registration order) sets
        # the levels before it reads the gauges below.
        self.registry.register(_RefreshOnScrape(self))
        self._source: tuple[Daemon, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._latencies(self.registry)
        self._counts(self.registry)
        self._levels(self.registry)
        self._ticks_seen = 0
        self._statuses: set[str] = set()

    def _latencies(self, reg: CollectorRegistry) -> None:
        self.tick_to_submit = Histogram(
            "trader_tick_to_submit_seconds",
            "From a tick's arrival to the submit of the emulated order it fired",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.venue_call = Histogram(
            "trader_venue_call_seconds",
            "Duration of a venue call, by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.audit_lag = Histogram(
            "trader_audit_lag_seconds",
            "From record() of a batch's oldest record to its commit in PostgreSQL",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.open_to_protected = Histogram(
            "trader_open_to_protected_seconds",
            "From a position's intent to its protective stop accepted by the venue",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )

    def _counts(self, reg: CollectorRegistry) -> None:
        self.ticks = Counter("trader_ticks", "Ticks processed", registry=reg)
        self.venue_errors = Counter(
            "trader_venue_errors", "Venue calls that failed, by error kind", ["kind"], registry=reg
        )
        self.events = Counter(
            "trader_events", "Events recorded, by severity", ["severity"], registry=reg
        )
        self.reconcile_discrepancies = Counter(
            "trader_reconcile_discrepancies",
            "Disagreements between our records and the venue found and acted on, by kind",
            ["kind"],
            registry=reg,
        )

    def _levels(self, reg: CollectorRegistry) -> None:
        self.ready = Gauge("trader_ready", "1 once start-up is complete", registry=reg)
        self.open_positions = Gauge(
            "trader_open_positions", "Positions not yet closed", registry=reg
        )
        self.unprotected = Gauge(
            "trader_positions_without_stop",
            "Positions holding a quantity without a working stop covering it (page if > 0)",
            registry=reg,
        )
        self.orders = Gauge("trader_orders", "Live orders by status", ["status"], registry=reg)
        self.audit_queue = Gauge(
            "trader_audit_queue_depth", "Audit records waiting in memory", registry=reg
        )
        self.audit_spool = Gauge(
            "trader_audit_spool_bytes", "Audit records spooled to disk", registry=reg
        )
        self.audit_degraded = Gauge(
            "trader_audit_degraded",
            "1 while records can be neither written nor spooled (no new risk is taken)",
            registry=reg,
        )
        self.dead_letters = Gauge(
            "trader_audit_dead_letters",
            "Audit records the database refused, waiting for main.py audit replay",
            registry=reg,
        )
        self.dead_letter_age = Gauge(
            "trader_audit_dead_letter_age_seconds",
            "Age of the oldest dead letter (0 when there are none)",
            registry=reg,
        )
        self.feed_age = Gauge(
            "trader_feed_age_seconds",
            "Seconds since the last tick of a symbol",
            ["symbol"],
            registry=reg,
        )

    # -- hooks the composition root wires into the core ------------------------------
    def on_event(self, kind: str, severity: Severity) -> None:
        """Count an event by severity, and the reconciliation discrepancies by kind."""
        self.events.labels(severity.value).inc()
        if kind in DISCREPANCY_EVENTS:
            self.reconcile_discrepancies.labels(kind).inc()

    # -- levels, read by the event loop --------------------------------------------------
    def bind(self, daemon: Daemon, audit: Any) -> None:
        """From now on a scrape reads the levels of ``daemon`` and ``audit``, in the event
        loop that calls this."""
        self._source = (daemon, audit)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def refresh_for_scrape(self) -> None:
        """Set the levels from the bound daemon, in its event loop (at most 5 s of waiting:
        a loop that busy, or closing, leaves the last levels standing)."""
        source = self._source
        if source is None:
            return
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self.refresh(*source)
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                self.refresh(*source)
            except BaseException as exc:  # handed to the scraping thread, never lost
                done.set_exception(exc)
            else:
                done.set_result(None)

        try:
            self._loop.call_soon_threadsafe(run)
            done.result(timeout=5)
        except (RuntimeError, TimeoutError):
            pass

    def refresh(self, daemon: Daemon, audit: Any) -> None:
        """Set the levels from the running daemon and its audit writer (event loop only)."""
        self.ready.set(1)
        self.open_positions.set(len(daemon.book))
        self.unprotected.set(sum(1 for live in daemon.book if live.unprotected))
        by_status: dict[str, int] = {}
        orders = [o for live in daemon.book for o in live.live_orders()]
        orders.extend(daemon.orders.active_orders())
        for order in orders:
            by_status[order.status.value] = by_status.get(order.status.value, 0) + 1
        for status in self._statuses - by_status.keys():
            self.orders.labels(status).set(0)  # a status that emptied shows 0, not its last count
        for status, count in by_status.items():
            self.orders.labels(status).set(count)
        self._statuses |= by_status.keys()
        ticks = daemon.tick_loop.ticks
        self.ticks.inc(ticks - self._ticks_seen)
        self._ticks_seen = ticks
        now = time.monotonic()
        for symbol, seen in daemon.tick_loop.symbol_seen.items():
            self.feed_age.labels(symbol).set(round(now - seen, 3))
        self.audit_queue.set(audit.queue_depth)
        self.audit_spool.set(audit.spool_bytes)
        self.audit_degraded.set(1 if audit.degraded else 0)
        self.dead_letters.set(audit.dead_letter_count)
        self.dead_letter_age.set(audit.dead_letter_oldest_age_s or 0.0)


class _RefreshOnScrape:
    """A collector of nothing: collecting it sets the levels for the scrape in progress."""

    def __init__(self, metrics: TraderMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Any]:
        return iter(())  # registering it must not collect (auto_describe would)

    def collect(self) -> Iterator[Any]:
        self._metrics.refresh_for_scrape()
        return iter(())


@asynccontextmanager
async def serve_metrics(address: str, port: int, metrics: TraderMetrics) -> AsyncIterator[None]:
    """Serve ``metrics`` at ``http://address:port/metrics`` while the context is open
    (port 0: not at all). A port that cannot be bound raises MetricsUnavailable."""
    if port == 0:
        yield
        return
    try:
        server, thread = start_http_server(port, addr=address, registry=metrics.registry)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another daemon, or another program, has it)"
        raise MetricsUnavailable(
            f"TRADER_METRICS_PORT={port}: cannot listen on {address}:{port}: {reason}"
        ) from None
    try:
        yield
    finally:
        # shutdown() waits for the serving thread's poll loop: off the event loop.
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join(timeout=5)
