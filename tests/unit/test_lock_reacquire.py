"""The account lock taking itself back on a connection the pool hands out broken."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from database.lock import AccountLock


class BrokenConnection:
    """A pooled connection left mid-operation by a server restart."""

    async def fetchval(self, *_: Any, **__: Any) -> Any:
        raise asyncpg.InternalClientError("cannot switch to state 11; another operation")

    async def fetchrow(self, *_: Any, **__: Any) -> Any:
        raise asyncpg.InternalClientError("cannot switch to state 11; another operation")


class HealthyConnection:
    """A connection on which the advisory lock is free."""

    async def fetchval(self, *_: Any, **__: Any) -> Any:
        return True

    async def fetchrow(self, *_: Any, **__: Any) -> Any:
        return {"pid": 4242, "backend_start": datetime(2026, 1, 1, tzinfo=UTC)}


class Pool:
    def __init__(self, *conns: Any) -> None:
        self.conns = list(conns)
        self.released: list[Any] = []

    async def acquire(self, **_: Any) -> Any:
        return self.conns.pop(0)

    async def release(self, conn: Any, **_: Any) -> None:
        self.released.append(conn)


async def test_a_broken_connection_is_given_back_and_the_lock_taken_on_the_next() -> None:
    """asyncpg's InternalClientError on the re-take is a connection failure like any
    other: that connection is released and the next one takes the lock (it used to
    escape the watcher and stop the daemon as if another daemon held the lock)."""
    broken, healthy = BrokenConnection(), HealthyConnection()
    pool = Pool(broken, healthy)
    lock = AccountLock(pool, "main", retry_interval_s=0.001)  # type: ignore[arg-type]
    await lock._reacquire(None)
    assert lock._session is not None
    assert ([broken], 4242, healthy) == (pool.released, lock._session.pid, lock._conn)
