"""The service's small parts: sd_notify datagrams, the metrics endpoint, trailing state."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from pathlib import Path

from cli.metrics import percentile, render, serve_metrics
from cli.service import load_trailing, save_trailing
from cli.systemd import Notifier
from core.triggers import TrailingState


def test_notifier_sends_ready_watchdog_stopping_in_order(tmp_path: Path) -> None:
    """Messages arrive on $NOTIFY_SOCKET as sd_notify datagrams, in the order sent."""
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    notifier = Notifier(path)
    notifier.ready("positions=0")
    notifier.watchdog()
    notifier.stopping()
    got = [server.recv(4096).decode() for _ in range(3)]
    assert ["READY=1\nSTATUS=positions=0", "WATCHDOG=1", "STOPPING=1"] == got
    notifier.close()
    server.close()


def test_notifier_without_socket_is_silent() -> None:
    """Outside systemd nothing is sent and nothing fails."""
    notifier = Notifier("")
    assert (False, False) == (notifier.enabled, notifier.send("READY=1"))


def test_render_is_prometheus_text() -> None:
    """One HELP/TYPE per metric, labels quoted and escaped."""
    text = render(
        [
            ("trader_orders", "Live orders", {"status": "NEW"}, 2.0),
            ("trader_orders", "Live orders", {"status": 'a"b'}, 1.0),
        ]
    )
    expected = (
        "# HELP trader_orders Live orders\n# TYPE trader_orders gauge\n"
        'trader_orders{status="NEW"} 2.0\ntrader_orders{status="a\\"b"} 1.0\n'
    )
    assert expected == text


def test_percentile_nearest_rank() -> None:
    """p50 / p99 by nearest rank; empty input is 0."""
    assert (50.0, 99.0, 0.0) == (
        percentile(range(1, 101), 50),
        percentile(range(1, 101), 99),
        percentile([], 99),
    )


async def test_metrics_endpoint_serves_on_loopback() -> None:
    """GET /metrics on 127.0.0.1 returns the collected samples; other paths 404."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with serve_metrics(port, lambda: [("trader_up", "Up", {}, 1.0)]):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        body = (await reader.read()).decode()
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /nope HTTP/1.0\r\n\r\n")
        missing = (await reader.read()).decode()
        writer.close()
    assert body.startswith("HTTP/1.0 200 OK")
    assert body.endswith("trader_up 1.0\n")
    assert missing.startswith("HTTP/1.0 404")


def test_trailing_state_round_trips_through_its_file(tmp_path: Path) -> None:
    """Saved trailing extremes load back exactly (atomic write, Decimal preserved)."""
    path = tmp_path / "trailing-main.json"
    states = [
        TrailingState("td-main-r1-mo-1", True, Decimal("51234.5")),
        TrailingState("td-main-r2-mo-1", False, None),
    ]
    save_trailing(path, states)
    assert states == load_trailing(path)
    path.write_text("{not json")
    assert [] == load_trailing(path)
