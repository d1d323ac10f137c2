"""The account lock across lost sessions: re-taken after a PostgreSQL restart, never shared.

Every test here runs its own embedded PostgreSQL (``embedded_pg``): they stop and start
the server, or freeze and end its backends, which must never happen to a shared one.
First the lock itself (database/lock.py), then the daemon as a process around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from database.embedded import EmbeddedPostgres
from database.lock import AccountLock, AlreadyRunning, lock_key
from database.pool import create_pool
from tests.e2e.conftest import (
    BTC,
    START_PRICE,
    Daemon,
    Db,
    Feed,
    Trader,
    base_env,
    wait_until,
)

FAST = {
    "check_interval_s": 0.1,
    "check_timeout_s": 0.5,
    "retry_interval_s": 0.1,
    "reacquire_timeout_s": 20.0,
}


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` every 20 ms; fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


async def holder_pid(url: str, account: str = "main") -> int | None:
    """The server pid of the session holding ``account``'s lock, seen from outside."""
    key = lock_key(account)
    conn = await asyncpg.connect(url, timeout=10)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 1 AND classid = $1::bigint::oid AND objid = $2::bigint::oid",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
    finally:
        await conn.close()
    return None if pid is None else int(pid)


@pytest.fixture
async def pool(embedded_pg: EmbeddedPostgres) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the test's own server (``pool`` of tests/conftest.py is shared)."""
    p = await create_pool(embedded_pg.url, min_size=1, max_size=4)
    try:
        yield p
    finally:
        p.terminate()


async def test_second_holder_is_refused_at_start(pool: asyncpg.Pool) -> None:
    """While one lock of an account is held, taking it again raises AlreadyRunning; another
    account's lock is independent."""
    async with AccountLock(pool, "main", **FAST):
        with pytest.raises(AlreadyRunning) as refused:
            await AccountLock(pool, "main", **FAST).__aenter__()
        async with AccountLock(pool, "other", **FAST) as other:
            assert other.held
    assert "already running for account 'main'" in str(refused.value)


async def test_lock_is_taken_again_after_a_postgresql_restart(
    embedded_pg: EmbeddedPostgres, pool: asyncpg.Pool
) -> None:
    """The server restarts under a held lock: while it is down nothing fails (the daemon
    trades on); once it is back the lock is held again, on a new session."""
    async with AccountLock(pool, "main", **FAST) as lock:
        before = lock.backend_pid
        await embedded_pg.stop(mode="immediate")
        await until(lambda: not lock.held, 5, "the loss to be noticed")
        await asyncio.sleep(1.0)  # down for a while: waiting, not failing
        assert (False, False) == (lock.held, lock.failed.is_set())
        await embedded_pg.start()
        await until(lambda: lock.held, 15, "the lock to be taken again")
        assert (1, False) == (lock.reacquired, lock.failed.is_set())
        assert lock.backend_pid == await holder_pid(embedded_pg.url)
        assert before != lock.backend_pid


async def test_lock_taken_by_another_session_meanwhile_is_fatal(
    embedded_pg: EmbeddedPostgres, pool: asyncpg.Pool
) -> None:
    """The lock's session is killed and another session takes the lock first: the lock
    reports failure naming the account; it never waits for the other to go."""
    async with AccountLock(pool, "main", **FAST) as lock:
        other = await asyncpg.connect(embedded_pg.url)
        try:
            # Ends our session, then queues for the lock: granted the moment it is free,
            # before our side can even open a new connection.
            await other.execute("SELECT pg_terminate_backend($1)", lock.backend_pid)
            await other.execute("SELECT pg_advisory_lock($1)", lock_key("main"))
            await asyncio.wait_for(lock.failed.wait(), 10)
            holder = await holder_pid(embedded_pg.url)
            assert holder == other.get_server_pid()
        finally:
            await other.close()
    assert lock.error is not None
    assert str(lock.error).startswith(
        f"another daemon took the lock of account 'main' (database session pid {holder})"
    )
    assert (False, 0) == (lock.held, lock.reacquired)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP a server backend (a session that hangs instead of closing); SIGCONT after."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except PermissionError:
        pytest.skip("needs permission to signal the embedded server's backends")
    try:
        yield None
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_own_hung_session_is_ended_and_the_lock_taken_again(
    embedded_pg: EmbeddedPostgres, pool: asyncpg.Pool
) -> None:
    """A session that stops answering still holds the lock on the server: it is recognised
    as our own, terminated, and the lock taken again once it is gone."""
    async with AccountLock(pool, "main", **FAST) as lock:
        stale = lock.backend_pid
        assert stale is not None
        with frozen(stale):
            await until(lambda: not lock.held, 5, "the hung session to be noticed")
            await asyncio.sleep(0.5)  # still held by the frozen backend: not ours to take
            assert (stale, False) == (await holder_pid(embedded_pg.url), lock.failed.is_set())
        await until(lambda: lock.held, 15, "the lock to be taken again")
        assert (1, False) == (lock.reacquired, lock.failed.is_set())
        assert lock.backend_pid == await holder_pid(embedded_pg.url) != stale


async def test_lock_that_cannot_be_taken_back_in_time_is_fatal(
    embedded_pg: EmbeddedPostgres, pool: asyncpg.Pool
) -> None:
    """If the database answers but the lock stays out of reach past the bound (our old
    session cannot be ended), the lock reports failure rather than wait on."""
    settings = {**FAST, "reacquire_timeout_s": 1.0}
    async with AccountLock(pool, "main", **settings) as lock:
        stale = lock.backend_pid
        assert stale is not None
        with frozen(stale):
            await asyncio.wait_for(lock.failed.wait(), 10)
    assert lock.error is not None
    assert (
        "the lock of account 'main' could not be taken back within 1 s of the database "
        "answering; stopping rather than risk two daemons on one account"
    ) == str(lock.error)


# -- the daemon ------------------------------------------------------------------------


@pytest.fixture
def deployment(embedded_pg: EmbeddedPostgres, tmp_path: Path) -> Iterator[Trader]:
    """A paper deployment on the test's own server, with a followed feed."""
    state = tmp_path / "state"
    state.mkdir()
    feed = Feed(tmp_path / "feed.csv")
    feed.tick(START_PRICE)
    trader = Trader(Db(embedded_pg.url), state, feed, base_env(embedded_pg.url, state, feed.path))
    try:
        yield trader
    finally:
        for daemon in trader.daemons:
            daemon.stop_quietly()


def _events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == name]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_daemon_trades_through_a_restart_and_stops_when_another_takes_its_lock(
    embedded_pg: EmbeddedPostgres, deployment: Trader
) -> None:
    """With PostgreSQL down the daemon keeps trading (a stop-out happens and is recorded
    once the database is back); the lock is then held again; when another session takes
    the lock the daemon stops: one critical line, exit 1. Every output line is an event."""
    daemon = deployment.daemon().start().wait_ready()
    opened = deployment.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01",
        "--stop-loss", "1%", "--wait", "20",
    )  # fmt: skip
    assert 0 == opened.returncode, opened.stderr
    asyncio.run(embedded_pg.stop(mode="fast"))
    wait_until(lambda: _events(daemon, "account_lock_lost"), bool, 15, "the loss noticed")
    deployment.feed.ticks([START_PRICE - 100, START_PRICE * Decimal("0.95")])
    time.sleep(3)  # the stop fills on the venue and the daemon learns it, database down
    assert daemon.running(), daemon.text()[-3000:]
    asyncio.run(embedded_pg.start())
    wait_until(lambda: _events(daemon, "account_lock_reacquired"), bool, 30, "re-taking")
    closed = deployment.db.wait_for(
        "SELECT exit_reason FROM monitoring.positions WHERE status = 'closed'", timeout_s=30
    )
    assert ("stop_loss", True) == (closed, daemon.running())

    async def take_the_lock() -> int:
        pid = await holder_pid(embedded_pg.url)
        other = await asyncpg.connect(embedded_pg.url)
        try:
            await other.execute("SELECT pg_terminate_backend($1)", pid)
            await other.execute("SELECT pg_advisory_lock($1)", lock_key("main"))
            return await asyncio.to_thread(daemon.wait_exit, 30)
        finally:
            await other.close()

    assert 1 == asyncio.run(take_the_lock())
    taken = _events(daemon, "account_lock_taken")
    assert ["critical"] == [e["level"] for e in taken], daemon.text()[-3000:]
    assert [] == _events(daemon, "fatal")
    # Through all of it, one event per line: the library's reconnect tracebacks too.
    assert [] == [line for line in daemon.text().splitlines() if not line.startswith("{")]
