"""The daemon's Prometheus metrics (cli/metrics.py, cli/metered_venue.py): latencies as
histograms in seconds, venue calls and errors by kind, events and reconciliation
discrepancies counted, and the levels an operator pages on."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from cli.metered_venue import MeteredVenue
from cli.metrics import LATENCY_BUCKETS, TraderMetrics
from core.order_model import OrderStatus
from core.order_requests import parse_order_request
from core.records import Severity
from core.venue import OrderRejected
from tests.trading_harness import BTC, build_stack, long_signal


def _daemon(stack: Any) -> Any:
    return SimpleNamespace(book=stack.book, tick_loop=stack.loop, orders=stack.orders)


def _audit() -> Any:
    return SimpleNamespace(
        queue_depth=2,
        spool_bytes=0,
        degraded=False,
        dead_letter_count=0,
        dead_letter_oldest_age_s=None,
    )


def test_latency_buckets_resolve_10_microseconds_to_10_seconds() -> None:
    """The histogram buckets start at 10 µs, end at 10 s and rise strictly."""
    assert (1e-5, 10.0) == (LATENCY_BUCKETS[0], LATENCY_BUCKETS[-1])
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


async def test_an_open_is_timed_by_venue_method_and_from_intent_to_stop() -> None:
    """Opening through the metered venue: create_order timed at least twice (entry and
    stop), one open-to-protected observation, and the position counted as protected."""
    metrics = TraderMetrics()
    stack = build_stack(wrap=lambda venue: MeteredVenue(venue, metrics))
    stack.apm.on_protected = metrics.open_to_protected.observe
    position = await stack.apm.open_position_atomic(long_signal())
    metrics.refresh(_daemon(stack), _audit())
    value = metrics.registry.get_sample_value
    assert 2 <= (value("trader_venue_call_seconds_count", {"method": "create_order"}) or 0)
    assert 1.0 == value("trader_open_to_protected_seconds_count")
    assert (1.0, 0.0) == (
        value("trader_open_positions"),
        value("trader_positions_without_stop"),
    )
    assert 2.0 == value("trader_audit_queue_depth")
    live = stack.book.get(position.id)
    assert live is not None and live.stop is not None
    live.stop = live.stop.with_status(OrderStatus.CANCELLED)  # the stop is gone
    metrics.refresh(_daemon(stack), _audit())
    assert 1.0 == value("trader_positions_without_stop")


async def test_a_stop_smaller_than_the_position_leaves_it_unprotected() -> None:
    """A working stop that covers less than what is held counts as no stop."""
    stack = build_stack()
    position = await stack.apm.open_position_atomic(long_signal())
    live = stack.book.get(position.id)
    assert live is not None and live.stop is not None and not live.unprotected
    live.stop = replace(live.stop, amount=position.quantity / 2)
    assert live.unprotected


async def test_tick_to_submit_is_observed_in_seconds() -> None:
    """An emulated stop fired by a tick reports its tick-to-submit latency in seconds."""
    metrics = TraderMetrics()
    stack = build_stack()
    stack.orders.on_latency = metrics.tick_to_submit.observe
    spec = parse_order_request(
        {"symbol": BTC, "side": "sell", "amount": "0.01", "type": "stop_market"}
        | {"trigger_price": "49900"}
    )
    await stack.orders.place_order(spec)
    stack.tick(BTC, "49850")
    await stack.tasks.drain(5)
    value = metrics.registry.get_sample_value
    assert 1.0 == value("trader_tick_to_submit_seconds_count")
    assert 0 < (value("trader_tick_to_submit_seconds_sum") or 0) < 5  # seconds, not µs


async def test_venue_errors_are_counted_by_kind_and_the_error_still_raised() -> None:
    """A refused call counts under its error's name and reaches the caller unchanged;
    attributes outside the protocol's calls pass through."""
    metrics = TraderMetrics()

    class Refusing:
        name = "fake"

        async def create_order(self, request: Any) -> Any:
            raise OrderRejected("no")

    venue = MeteredVenue(Refusing(), metrics)
    with pytest.raises(OrderRejected):
        await venue.create_order(None)
    value = metrics.registry.get_sample_value
    assert 1.0 == value("trader_venue_errors_total", {"kind": "OrderRejected"})
    assert 1.0 == value("trader_venue_call_seconds_count", {"method": "create_order"})
    assert "fake" == venue.name


def test_events_are_counted_by_severity_and_discrepancies_by_kind() -> None:
    """Every event counts under its severity; reconciliation's findings also by kind."""
    metrics = TraderMetrics()
    metrics.on_event("orphan_cancelled", Severity.WARNING)
    metrics.on_event("daemon_ready", Severity.INFO)
    value = metrics.registry.get_sample_value
    assert 1.0 == value("trader_events_total", {"severity": "warning"})
    assert 1.0 == value("trader_events_total", {"severity": "info"})
    assert 1.0 == value("trader_reconcile_discrepancies_total", {"kind": "orphan_cancelled"})
    assert value("trader_reconcile_discrepancies_total", {"kind": "daemon_ready"}) is None


async def test_ticks_are_a_counter_and_feed_age_is_per_symbol() -> None:
    """Ticks counted since the last refresh are added (a counter never goes back); each
    ticked symbol has its own feed age."""
    metrics = TraderMetrics()
    stack = build_stack()
    stack.tick(BTC, "50000")
    metrics.refresh(_daemon(stack), _audit())
    value = metrics.registry.get_sample_value
    first = value("trader_ticks_total")
    stack.tick(BTC, "50001")
    metrics.refresh(_daemon(stack), _audit())
    assert (float(stack.loop.ticks - 1), float(stack.loop.ticks)) == (
        first,
        value("trader_ticks_total"),
    )
    age = value("trader_feed_age_seconds", {"symbol": BTC})
    assert age is not None and 0 <= age < 5


async def test_forwarded_methods_are_looked_up_once() -> None:
    """A forwarded method (the tick path's ``market``) is stored on the wrapper after its
    first look-up, so a tick pays no forwarding; values like ``name`` stay live."""
    metrics = TraderMetrics()

    class Venue:
        name = "first"

        def market(self, symbol: str) -> str:
            return symbol

    inner = Venue()
    venue = MeteredVenue(inner, metrics)
    assert "BTC" == venue.market("BTC")
    assert "market" in vars(venue)
    inner.name = "second"
    assert "second" == venue.name


async def test_a_scrape_reads_the_levels_of_the_bound_daemon_at_that_moment() -> None:
    """Once bound, each collection sets the levels from the daemon as it is then: no
    refresh loop, nothing walked between scrapes."""
    metrics = TraderMetrics()
    stack = build_stack()
    metrics.bind(_daemon(stack), _audit())
    value = metrics.registry.get_sample_value
    assert (1.0, 0.0) == (value("trader_ready"), value("trader_open_positions"))
    await stack.apm.open_position_atomic(long_signal())
    assert 1.0 == value("trader_open_positions")


def test_every_counted_discrepancy_is_an_event_the_core_raises() -> None:
    """Each kind the discrepancy counter matches is the first argument of some
    ``.event("kind", ...)`` call in core/ (or of the venue sweep's ``_report``, which raises
    its kind as an event), so a renamed event cannot go silently uncounted."""
    import ast
    from pathlib import Path

    from core.reconciler import DISCREPANCY_EVENTS

    raised = set()
    for path in (Path(__file__).resolve().parents[2] / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("event", "_report")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                raised.add(node.args[0].value)
    assert len(raised) > 20  # the scan found the journal's events at all
    assert set() == DISCREPANCY_EVENTS - raised
