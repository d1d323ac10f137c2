"""End-to-end fixtures: the daemon as a subprocess (``python main.py``) on a fresh database.

Each test gets its own database on the session's PostgreSQL server (see tests/conftest.py:
``TEST_DATABASE_URL``, else the local server, else an embedded one), created empty and
dropped after the test with ``WITH (FORCE)``, so no test sees another's rows. The daemon
runs on the paper venue with a replay feed that the test drives by appending prices to a
CSV (``TRADER_FEED_FOLLOW=true``, ``TRADER_FEED_SPEED=max``), logs JSON lines to a file the
test reads, and keeps its state (paper venue, audit spool) in a temporary directory.

Database access from the tests is synchronous (:class:`Db`: one short connection per
call) because the hypothesis test cannot run inside an event loop and the others gain
nothing from one.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.conftest import TEST_DB_PREFIX

ROOT = Path(__file__).resolve().parents[2]
BTC = "BTC/USDT:USDT"
START_PRICE = Decimal(60000)
READY_TIMEOUT_S = 30.0
T = TypeVar("T")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (host, port, user and query kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` set (trust authentication accepts any)."""
    parts = urlsplit(url)
    if not parts.hostname:  # a Unix-socket URL (host in the query): nothing to put it on
        return url
    user = parts.username or "postgres"
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


class Db:
    """Synchronous SQL helpers over short-lived asyncpg connections."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _run(self, work: Callable[[asyncpg.Connection], Any]) -> Any:
        async def go() -> Any:
            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                return await work(conn)
            finally:
                await conn.close()

        return asyncio.run(go())

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self._run(lambda c: c.fetch(sql, *args))]

    def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = self._run(lambda c: c.fetchrow(sql, *args))
        return dict(row) if row is not None else None

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self._run(lambda c: c.fetchval(sql, *args))

    def execute(self, sql: str, *args: Any) -> str:
        return str(self._run(lambda c: c.execute(sql, *args)))

    def wait_for(
        self, sql: str, *args: Any, timeout_s: float = 15.0, until: Callable[[Any], bool] = bool
    ) -> Any:
        """Poll ``fetchval(sql)`` every 100 ms until ``until(value)``; fail after the timeout."""
        return wait_until(lambda: self.fetchval(sql, *args), until, timeout_s, sql)


def wait_until(
    probe: Callable[[], T],
    until: Callable[[T], bool],
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
) -> T:
    """Call ``probe`` every ``interval_s`` until ``until`` holds for its value; fail after
    the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for: {what} (last: {value!r})")
        time.sleep(interval_s)


class Feed:
    """The replay CSV the daemon follows: appending a line is a tick."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("ts,symbol,price\n")

    def tick(self, price: Decimal | str | int, symbol: str = BTC) -> None:
        stamp = datetime.now(UTC).isoformat()
        with self.path.open("a") as handle:
            handle.write(f"{stamp},{symbol},{price}\n")

    def ticks(self, prices: Sequence[Decimal | str | int], symbol: str = BTC) -> None:
        for price in prices:
            self.tick(price, symbol)


@dataclass
class Daemon:
    """One ``python main.py`` subprocess with its log file."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _offset: int = field(default=0)

    def start(self, *args: str) -> Daemon:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "main.py", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def text(self) -> str:
        """Everything this run has written so far."""
        with self.log_path.open("rb") as handle:
            handle.seek(self._offset)
            return handle.read().decode(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """This run's JSON log lines (other lines skipped)."""
        out = []
        for line in self.text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> Daemon:
        """Until the ``daemon_ready`` line; fail (with the log) if the process ends first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(e.get("event") == "daemon_ready" for e in self.events()):
                return self
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited {self.proc.returncode} at start:\n{self.text()}")
            time.sleep(0.05)
        pytest.fail(f"daemon not ready after {timeout_s}s:\n{self.text()}")

    def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def terminate(self, timeout_s: float = 10.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, like a crash or an OOM kill."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop_quietly(self) -> None:
        """Teardown: make sure the process is gone."""
        if self.running():
            try:
                self.terminate(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Trader:
    """A test's deployment: database, state directory, feed and environment."""

    db: Db
    state_dir: Path
    feed: Feed
    env: dict[str, str]
    daemons: list[Daemon] = field(default_factory=list)

    def daemon(self, log_name: str = "daemon.log", **overrides: str) -> Daemon:
        """A daemon (not started) with this deployment's environment plus ``overrides``."""
        env = dict(self.env)
        env.update(overrides)
        daemon = Daemon(env, self.state_dir.parent / log_name)
        self.daemons.append(daemon)
        return daemon

    def cli(
        self, *args: str, timeout_s: float = 60.0, **overrides: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python main.py ARGS`` with this environment; output captured as text."""
        env = dict(self.env)
        env.update(overrides)
        return subprocess.run(
            [sys.executable, "main.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert 0 == done.returncode, done.stderr
        return json.loads(done.stdout)


def base_env(db_url: str, state_dir: Path, feed: Path) -> dict[str, str]:
    """The process environment without any inherited ``TRADER_*`` or systemd variable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADER_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
    }
    env.update(
        {
            "TRADER_DATABASE_URL": db_url,
            "TRADER_STATE_DIR": str(state_dir),
            "TRADER_EXCHANGE": "paper",
            "TRADER_FEED": f"replay:{feed}",
            "TRADER_FEED_FOLLOW": "true",
            "TRADER_FEED_SPEED": "max",
            "TRADER_SYMBOLS": BTC,
            "TRADER_LOG_FORMAT": "json",
            "TRADER_RECONCILE_INTERVAL_S": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


async def _create(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def fresh_db_url(database_url: str) -> Iterator[str]:
    """An empty database of its own on the session's server, dropped after the test.

    Named with the session's prefix and pid, so tests/conftest.py drops it should this
    process die before its teardown."""
    admin = with_database(database_url, "postgres")
    name = f"{TEST_DB_PREFIX}{os.getpid()}_e2e_{secrets.token_hex(4)}"
    asyncio.run(_create(admin, name))
    try:
        yield with_database(database_url, name)
    finally:
        asyncio.run(_drop(admin, name))


@pytest.fixture
def trader(fresh_db_url: str, tmp_path: Path) -> Iterator[Trader]:
    """A deployment on a fresh database; every daemon it started is stopped after."""
    state = tmp_path / "state"
    state.mkdir()
    feed = Feed(tmp_path / "feed.csv")
    feed.tick(START_PRICE)
    deployment = Trader(Db(fresh_db_url), state, feed, base_env(fresh_db_url, state, feed.path))
    try:
        yield deployment
    finally:
        for daemon in deployment.daemons:
            daemon.stop_quietly()
