"""The account's single-instance lock: a PostgreSQL session advisory lock.

Held on a dedicated connection for the daemon's lifetime; if the process dies, the
server drops the session and the lock with it, so a crashed daemon never blocks its
successor. A second daemon for the same account is refused with a clear message.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from core.errors import TraderError


class AlreadyRunning(TraderError):
    """Another daemon holds this account's lock."""


def lock_key(account: str) -> int:
    """A stable signed 64-bit key for ``account`` (advisory locks take a bigint)."""
    digest = hashlib.sha256(f"trader-account:{account}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def account_lock(pool: asyncpg.Pool, account: str) -> AsyncIterator[None]:
    """Hold the account's lock; raise :class:`AlreadyRunning` if another daemon has it."""
    conn = await pool.acquire()
    try:
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(account))
        if not got:
            raise AlreadyRunning(
                f"another daemon is already running for account {account!r}; refusing to start"
            )
        try:
            yield
        finally:
            # If the session is gone, so is the lock: nothing to undo.
            with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(account))
    finally:
        await pool.release(conn)
