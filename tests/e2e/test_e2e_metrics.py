"""/metrics as an operator's Prometheus meets it: a running daemon scraped over HTTP after a
trade, its text clean by ``promtool check metrics``, with the figures an operator pages on."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.request

import pytest

from tests.e2e.conftest import BTC, Trader, wait_until


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert 200 == reply.status
        return str(reply.read().decode())


def _value(text: str, sample: str) -> float:
    """The value of one sample line, ``name{labels}`` exactly as exposed."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not exported:\n{text}")


def promtool() -> str | None:
    """promtool from $PROMTOOL or the PATH (.ci/run unpacks Debian's prometheus package)."""
    return os.environ.get("PROMTOOL") or shutil.which("promtool")


def test_a_scrape_after_a_trade_shows_what_an_operator_pages_on(trader: Trader) -> None:
    """After a signal opens and protects a position: one open position, none without a
    stop, the open-to-protected and venue-call histograms filled (seconds), ticks counted,
    feed age per symbol, the audit healthy; only Prometheus' own types are used."""
    port = _free_port()
    daemon = trader.daemon(TRADER_METRICS_PORT=str(port)).start().wait_ready()
    trader.feed.ticks([50_000, 50_010])
    signal_id = trader.db.fetchval(
        "INSERT INTO monitoring.signals (symbol, side, amount, stop_loss_price)"
        " VALUES ($1, 'long', 0.01, 49000) RETURNING id",
        BTC,
    )
    trader.db.wait_for(
        "SELECT status = 'done' FROM monitoring.signals WHERE id = $1", signal_id, timeout_s=30
    )
    trader.feed.ticks([50_020, 50_030])
    trader.db.wait_for("SELECT count(*) FROM monitoring.positions WHERE status = 'active'")
    # Recorded in SQL first; the scrape shows it (and the later ticks) a moment after.
    text = wait_until(
        lambda: _scrape(port),
        lambda body: (
            "trader_open_positions 1.0" in body.splitlines()
            and _value(body, "trader_ticks_total") >= 4
        ),
        10,
        "one open position and the four ticks on /metrics",
    )
    assert 1.0 == _value(text, "trader_ready")
    assert 1.0 == _value(text, "trader_open_positions")
    assert 0.0 == _value(text, "trader_positions_without_stop")
    assert 1.0 == _value(text, "trader_open_to_protected_seconds_count")
    assert 2.0 <= _value(text, 'trader_venue_call_seconds_count{method="create_order"}')
    assert 0.0 < _value(text, 'trader_venue_call_seconds_bucket{le="10.0",method="create_order"}')
    assert 4.0 <= _value(text, "trader_ticks_total")
    assert 0.0 <= _value(text, f'trader_feed_age_seconds{{symbol="{BTC}"}}') < 60
    assert 0.0 == _value(text, "trader_audit_degraded")
    assert 'le="1e-05"' in text  # the buckets resolve 10 µs
    assert not re.search(r"^# TYPE \S+ (untyped|summary)$", text, re.MULTILINE)
    assert 0 == daemon.terminate()


def test_promtool_finds_nothing_wrong_in_a_live_scrape(trader: Trader) -> None:
    """``promtool check metrics`` on a running daemon's /metrics exits 0 and says nothing
    (no bad units, no counters without _total, no quantile labels on gauges)."""
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (apt-get download prometheus; .ci/run does)")
    port = _free_port()
    daemon = trader.daemon(TRADER_METRICS_PORT=str(port)).start().wait_ready()
    trader.feed.ticks([50_000, 50_010])
    trader.db.wait_for(
        "SELECT count(*) FROM monitoring.events WHERE kind = 'daemon_ready'", timeout_s=30
    )
    text = _scrape(port)
    checked = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert (0, "", "") == (checked.returncode, checked.stdout, checked.stderr), text
    assert 0 == daemon.terminate()
