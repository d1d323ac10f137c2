"""The samples /metrics serves: what the running daemon and its audit writer report.

Separate from the composition root (cli/service.py): it only reads the built parts, and
the HTTP side lives in cli/metrics.py.
"""

from __future__ import annotations

from typing import Any

from cli.metrics import Sample, percentile, since
from core.daemon import Daemon


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
