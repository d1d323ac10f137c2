"""The daemon as a process: one per account, and its conversation with systemd."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BTC, Trader, wait_until


def test_second_daemon_for_an_account_is_refused_another_account_runs_beside(
    trader: Trader,
) -> None:
    """A second daemon for the same account exits 1 naming the reason; a daemon for
    another account (own state directory) runs beside the first."""
    first = trader.daemon().start().wait_ready()
    second = trader.daemon("second.log").start()
    assert 1 == second.wait_exit(timeout_s=30)
    refusals = [e for e in second.events() if e.get("level") == "error"]
    assert 1 == len(refusals), second.text()
    assert "already running for account 'main'" in str(refusals[0])
    other_state = trader.state_dir.parent / "other-state"
    other = trader.daemon(
        "other.log", TRADER_ACCOUNT="other", TRADER_STATE_DIR=str(other_state)
    ).start()
    other.wait_ready()
    assert first.running()
    assert 0 == other.terminate()
    assert 0 == first.terminate()


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    """A bound AF_UNIX datagram socket standing in for systemd (short path: sun_path)."""
    directory = Path(tempfile.mkdtemp(prefix="sdn-"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(directory / "notify"))
    sock.settimeout(0.2)
    try:
        yield sock
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def _receive(sock: socket.socket, until: str, timeout_s: float) -> list[str]:
    """Datagrams until one holding the line ``until`` (or the timeout)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        got.append(message)
        if until in message.splitlines():
            break
    return got


def test_sd_notify_ready_then_watchdog_then_stopping(
    trader: Trader, notify_socket: socket.socket
) -> None:
    """Under a NOTIFY_SOCKET with a 2 s watchdog the daemon sends READY=1, then WATCHDOG=1
    heartbeats, then STOPPING=1 after SIGTERM, in that order, and exits 0."""
    daemon = trader.daemon(
        NOTIFY_SOCKET=notify_socket.getsockname(), WATCHDOG_USEC="2000000"
    ).start()
    before_ready = _receive(notify_socket, "READY=1", 30)
    assert "READY=1" in before_ready[-1].splitlines(), before_ready
    first_beats = _receive(notify_socket, "WATCHDOG=1", 5)
    assert "WATCHDOG=1" in first_beats[-1].splitlines(), first_beats
    os.kill(daemon.pid, signal.SIGTERM)
    after = _receive(notify_socket, "STOPPING=1", 10)
    assert 0 == daemon.wait_exit(10)
    lines = [line for m in before_ready + first_beats + after for line in m.splitlines()]
    wanted = [line for line in lines if line in ("READY=1", "WATCHDOG=1", "STOPPING=1")]
    assert "READY=1" == wanted[0]
    assert "WATCHDOG=1" == wanted[1]
    assert "STOPPING=1" == wanted[-1]
    assert 1 == wanted.count("READY=1") == wanted.count("STOPPING=1")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_metrics_port_in_use_stops_the_start_before_anything_acts(trader: Trader) -> None:
    """A metrics port someone else holds ends the start with exit 1 and one fatal line
    naming the setting, before the daemon records or reconciles anything; no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = trader.daemon(TRADER_METRICS_PORT=str(port)).start()
        assert 1 == daemon.wait_exit(timeout_s=30)
    lines = daemon.text().splitlines()
    assert len(lines) == len(daemon.events()), lines  # every line is one JSON event
    fatal = [e["error"] for e in daemon.events() if e.get("event") == "fatal"]
    assert [
        f"TRADER_METRICS_PORT={port}: cannot listen on 127.0.0.1:{port}: address already in "
        "use (another daemon, or another program, has it)"
    ] == fatal
    assert 0 == trader.db.fetchval("SELECT count(*) FROM monitoring.events")


def test_second_signal_exits_at_once(trader: Trader) -> None:
    """A second SIGTERM while the orderly stop waits for work in hand (a slow open) ends
    the process at once: exit 1 within a second, with a line saying why."""
    daemon = trader.daemon(TRADER_PAPER_FAULTS="latency_ms=1500").start().wait_ready(90)
    signal_id = trader.db.fetchval(
        "INSERT INTO monitoring.signals (symbol, side, amount) VALUES ($1, 'long', 0.01) "
        "RETURNING id",
        BTC,
    )
    trader.db.wait_for(
        "SELECT status = 'processing' FROM monitoring.signals WHERE id = $1", signal_id
    )
    os.kill(daemon.pid, signal.SIGTERM)
    wait_until(
        lambda: [e for e in daemon.events() if e.get("event") == "daemon_stopping"],
        bool,
        10,
        "the orderly stop to begin",
    )
    assert daemon.running()  # still finishing the open in hand
    second = time.monotonic()
    os.kill(daemon.pid, signal.SIGTERM)
    code = daemon.wait_exit(10)
    took = time.monotonic() - second
    assert (1, True) == (code, took < 1.0), took
    assert ["SIGTERM"] == [
        e["signal"] for e in daemon.events() if e.get("event") == "second_signal_exit_now"
    ]
