"""The service's small parts: sd_notify datagrams, the metrics endpoint, trailing state,
the top-level error line, the unit file, and the daemon's run loop (heartbeat, trailing
saves, shutdown) over fakes of the trading core."""

from __future__ import annotations

import asyncio
import configparser
import io
import json
import socket
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog

from cli.metrics import MetricsUnavailable, TraderMetrics, serve_metrics
from cli.service import _guarded
from cli.systemd import Notifier
from cli.trailing_state import load_trailing, save_trailing
from config.logging import configure_logging, register_secrets
from core.daemon import Daemon, DaemonConfig
from core.journal import Journal
from core.models import Tick
from core.money import utcnow
from core.position_book import PositionBook
from core.prices import PriceBoard
from core.records import MemorySink, RecordKind
from core.tick_loop import TaskSet, TickLoop
from core.triggers import TrailingState

ROOT = Path(__file__).resolve().parents[2]
BTC = "BTC/USDT:USDT"


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


async def test_metrics_endpoint_serves_the_registry_on_loopback() -> None:
    """GET /metrics on 127.0.0.1 returns the registry's text (prometheus_client's server);
    after the context closes nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = TraderMetrics()
    metrics.ready.set(1)
    async with serve_metrics("127.0.0.1", port, metrics):
        body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    assert "trader_ready 1.0" in body.splitlines()
    with pytest.raises(OSError):
        await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


def test_trailing_state_round_trips_through_its_file(tmp_path: Path) -> None:
    """Saved trailing extremes load back exactly (atomic write, Decimal preserved)."""
    path = tmp_path / "trailing-main.json"
    states = [
        TrailingState("td-main-r1-mo-1", True, Decimal("51234.5")),
        TrailingState("td-main-r2-mo-1", False, None),
    ]
    save_trailing(path, states)
    assert states == load_trailing(path)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '[{"id": "td-main-r1-mo-1", "activated": true, "extreme": "abc"}]',
        '{"id": "td-main-r1-mo-1"}',
        '[{"activated": true}]',
        '[{"id": "td-main-r1-mo-1", "activated": true, "extreme": "NaN"}]',
        '[{"id": 7, "activated": "yes", "extreme": null}]',
        None,  # a directory where the file should be: unreadable
    ],
)
def test_unreadable_trailing_state_is_moved_aside_and_start_up_goes_on(
    tmp_path: Path, content: str | None
) -> None:
    """A corrupt or unreadable trailing state file gives an empty state, is moved aside
    (so the next start does not meet it again), and an error event names both files."""
    path = tmp_path / "trailing-main.json"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    sink = MemorySink()
    assert [] == load_trailing(path, Journal(sink, "main"))
    [aside] = list(tmp_path.glob("trailing-main.json.corrupt-*"))
    events = [
        (e["kind"], e["severity"], e["detail"]["file"], e["detail"]["moved_to"])
        for e in sink.of(RecordKind.EVENT)
    ]
    assert ([("trailing_state_unreadable", "error", str(path), str(aside))], False) == (
        events,
        path.exists(),
    )
    assert [] == load_trailing(path, Journal(sink, "main"))  # the next start: nothing left


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_trailing_state_the_trigger_book_refuses_is_set_aside(tmp_path: Path) -> None:
    """A well-formed file naming an order that is not a trailing stop would stop every
    start (the trigger book refuses it): it is set aside with an event, nothing restored."""
    from cli.trailing_state import restore_trailing
    from core.order_requests import parse_order_request
    from tests.trading_harness import build_stack

    stack = build_stack()
    order = await stack.orders.place_order(
        parse_order_request(
            {"symbol": BTC, "side": "buy", "type": "limit", "amount": "0.01", "price": "49000"}
        )
    )
    path = tmp_path / "trailing-main.json"
    save_trailing(path, [TrailingState(order.client_order_id, True, Decimal("50000"))])
    restore_trailing(stack.orders, path, stack.journal)
    events = [
        e for e in stack.sink.of(RecordKind.EVENT) if e["kind"] == "trailing_state_unreadable"
    ]
    [left] = _names(tmp_path)
    assert (1, True) == (len(events), left.startswith("trailing-main.json.corrupt-"))
    assert "is not a trailing stop" in events[0]["message"]


async def test_metrics_port_in_use_is_one_line_naming_the_setting() -> None:
    """A port another program holds refuses the start with the setting and the reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsUnavailable) as refused:
            async with serve_metrics("127.0.0.1", port, TraderMetrics()):
                pass
    assert (
        f"TRADER_METRICS_PORT={port}: cannot listen on 127.0.0.1:{port}: address already in "
        "use (another daemon, or another program, has it)"
    ) == str(refused.value)


@pytest.fixture
def log_lines() -> Any:
    """The process's log lines (JSON) written while the test runs."""
    out = io.StringIO()
    configure_logging("json", "INFO", out)
    # Module loggers must not keep this stream once the test is over.
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        structlog.reset_defaults()


def test_unexpected_error_at_the_top_is_one_redacted_fatal_line(log_lines: Any) -> None:
    """A bug escaping the daemon ends as exit 1 and one 'fatal' line (traceback as a field)
    with secrets masked, never as a bare traceback."""
    register_secrets(["hunter2-db-password"])

    async def broken() -> int:
        raise RuntimeError("cannot reach postgresql://u:hunter2-db-password@db/x")

    assert 1 == _guarded(broken())
    [line] = log_lines()
    assert ("fatal", "error") == (line["event"], line["level"])
    assert "RuntimeError: cannot reach postgresql://u:***@db/x" == line["error"]
    assert "Traceback" in line["exception"]
    assert "hunter2" not in json.dumps(line)


def test_os_error_at_the_top_is_one_fatal_line(log_lines: Any) -> None:
    """An operating-system failure (a port in use, a disk full) is one line, exit 1."""

    async def no_room() -> int:
        raise OSError(28, "No space left on device")

    assert 1 == _guarded(no_room())
    assert [("fatal", "[Errno 28] No space left on device")] == [
        (line["event"], line["error"].removeprefix("OSError: ")) for line in log_lines()
    ]


def test_library_log_records_become_one_redacted_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A library's warning with a traceback (asyncpg's, during an outage) is one event
    line, the traceback a field and the secrets of the settings masked, not free text on
    stderr."""
    import logging

    from cli.service import LibraryLogBridge, setup
    from config.settings import load_settings

    setup(load_settings(log_format="json", api_key="s3cret-key-xyz"))
    structlog.configure(cache_logger_on_first_use=False)
    try:
        try:
            raise ConnectionError("refused, key=s3cret-key-xyz")
        except ConnectionError:
            logging.getLogger("asyncpg.pool").warning(
                "Failed to restore the pool connection floor; retrying", exc_info=True
            )
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, LibraryLogBridge)]:
            root.removeHandler(handler)
        structlog.reset_defaults()
    out, err = capsys.readouterr()
    [line] = [json.loads(text) for text in out.splitlines()]
    assert (
        "library_log",
        "warning",
        "asyncpg.pool",
        "Failed to restore the pool connection floor; retrying",
        "",
    ) == (line["event"], line["level"], line["source"], line["message"], err)
    assert "ConnectionError: refused, key=***" in line["exception"]
    assert "s3cret" not in out


def test_unit_sends_sigterm_to_the_daemon_only() -> None:
    """KillMode=mixed: SIGTERM reaches the daemon alone (the embedded PostgreSQL keeps
    serving its final audit flush); start limits sit in [Unit], where systemd reads them."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "trader.service")
    assert ("mixed", "SIGTERM", "notify") == (
        unit["Service"].get("KillMode"),
        unit["Service"].get("KillSignal"),
        unit["Service"].get("Type"),
    )
    assert ("300", "10", None) == (
        unit["Unit"].get("StartLimitIntervalSec"),
        unit["Unit"].get("StartLimitBurst"),
        unit["Service"].get("StartLimitIntervalSec"),
    )


# -- the daemon's run loop over fakes ------------------------------------------------------


class FakeNotify:
    """Records what the daemon tells systemd, with the time."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def ready(self, status: str = "") -> None:
        self.calls.append(("ready", time.monotonic()))

    def watchdog(self) -> None:
        self.calls.append(("watchdog", time.monotonic()))

    def status(self, text: str) -> None:
        self.calls.append(("status", time.monotonic()))

    def stopping(self) -> None:
        self.calls.append(("stopping", time.monotonic()))

    def times(self, what: str) -> list[float]:
        return [t for name, t in self.calls if name == what]


class QuietOrders:
    """The order manager as the daemon's loops see it: nothing fires, nothing to sync."""

    def __init__(self) -> None:
        self.states: list[TrailingState] = []

    def on_tick(self, tick: Tick) -> list[Any]:
        return []

    def active_orders(self) -> list[Any]:
        return []

    def trailing_states(self) -> list[TrailingState]:
        return list(self.states)

    async def sync_native(self) -> None:
        return None


class QuietLifecycle:
    """The position lifecycle as the daemon's loops see it: no positions."""

    def on_tick(self, tick: Tick) -> list[Any]:
        return []

    async def sync_all(self) -> None:
        return None


async def stalling_feed(ticks: int) -> AsyncIterator[Tick]:
    """``ticks`` prices, then nothing ever again: a feed that hangs without ending."""
    for n in range(ticks):
        yield Tick(BTC, Decimal(50000 + n), utcnow())
    await asyncio.Event().wait()


def make_daemon(
    *,
    ticks: int = 0,
    reconcile: Callable[[], Awaitable[None]] | None = None,
    save: Callable[[list[TrailingState]], None] | None = None,
    **config: float,
) -> tuple[Daemon, FakeNotify, MemorySink, QuietOrders]:
    orders, lifecycle, tasks, notify, sink = (
        QuietOrders(),
        QuietLifecycle(),
        TaskSet("t"),
        FakeNotify(),
        MemorySink(),
    )
    loop = TickLoop(stalling_feed(ticks), PriceBoard(), orders, lifecycle, tasks)  # type: ignore[arg-type]
    daemon = Daemon(
        config=DaemonConfig(account="main", **config),
        journal=Journal(sink, "main"),
        book=PositionBook(),
        lifecycle=lifecycle,  # type: ignore[arg-type]
        orders=orders,  # type: ignore[arg-type]
        tick_loop=loop,
        tasks=tasks,
        notify=notify,
        reconcile=reconcile,
        save_trailing=save,
    )
    return daemon, notify, sink, orders


async def run_for(daemon: Daemon, seconds: float) -> float:
    """Run the daemon, stop it after ``seconds``; how long the stop took."""
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    await asyncio.sleep(seconds)
    stopped_at = time.monotonic()
    stop.set()
    await asyncio.wait_for(running, 10)
    return time.monotonic() - stopped_at


async def test_heartbeat_goes_silent_when_the_feed_stalls() -> None:
    """WATCHDOG=1 flows while ticks do and stops once none came for stall_after_s, while
    STATUS= keeps coming: systemd's watchdog then restarts a daemon alive but blind."""
    daemon, notify, _, _ = make_daemon(ticks=3, heartbeat_interval_s=0.02, stall_after_s=0.3)
    await run_for(daemon, 0.9)
    last_tick = daemon.tick_loop.last_tick_monotonic
    assert last_tick is not None
    beats = notify.times("watchdog")
    late_beats = [t for t in beats if t - last_tick >= 0.3]
    statuses_when_stalled = [t for t in notify.times("status") if t - last_tick >= 0.35]
    assert (True, [], True) == (len(beats) >= 3, late_beats, len(statuses_when_stalled) >= 3)


async def test_trailing_state_is_saved_off_the_loop_and_only_when_changed() -> None:
    """Saves run in a worker thread, once per change of the state (not every interval),
    and the stop writes nothing the file already holds."""
    saved: list[tuple[bool, list[TrailingState]]] = []
    loop_thread = threading.get_ident()

    def save(states: list[TrailingState]) -> None:
        saved.append((threading.get_ident() != loop_thread, list(states)))

    daemon, _, _, orders = make_daemon(save=save, trailing_save_interval_s=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    await asyncio.sleep(0.2)
    state = TrailingState("td-main-r1-mo-1", True, Decimal("51000"))
    orders.states = [state]
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert [(True, []), (True, [state])] == saved


async def test_shutdown_lets_a_reconcile_pass_under_way_finish() -> None:
    """A stop during a reconcile pass waits for the pass to end (within the drain bound)
    instead of cutting it in the middle; no new pass starts."""
    passes: list[str] = []

    async def reconcile() -> None:
        passes.append("start")
        await asyncio.sleep(0.4)
        passes.append("end")

    daemon, _, sink, _ = make_daemon(
        reconcile=reconcile, reconcile_interval_s=0.05, drain_timeout_s=5
    )
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    while passes != ["start"]:  # noqa: ASYNC110 - the fake has no "started" event
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 10)
    cut = [e for e in sink.of(RecordKind.EVENT) if e["kind"] == "shutdown_cancelled_work"]
    assert (["start", "end"], []) == (passes, cut)


async def test_shutdown_cuts_a_pass_that_overruns_the_drain_bound() -> None:
    """A pass still running after drain_timeout_s is cancelled, and an event says which."""
    passes: list[str] = []

    async def reconcile() -> None:
        passes.append("start")
        await asyncio.sleep(60)
        passes.append("end")

    daemon, _, sink, _ = make_daemon(
        reconcile=reconcile, reconcile_interval_s=0.05, drain_timeout_s=0.3
    )
    took = await run_for(daemon, 0.2)
    cut = [
        e["message"] for e in sink.of(RecordKind.EVENT) if e["kind"] == "shutdown_cancelled_work"
    ]
    assert (["start"], ["did not finish in time: reconcile; the next start redoes it"]) == (
        passes,
        cut,
    )
    assert took < 2.0
