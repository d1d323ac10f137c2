"""``monitoring.daemons``: each running daemon says what it is, for the CLI to check against.

On entry the daemon's row for its account is upserted (host, pid, version, venue, the
symbols it trades and each one's price / amount precision); a task refreshes its
``heartbeat_at`` every few seconds; a clean exit sets ``stopped_at``. The CLI and
``check`` read ``monitoring.live_daemons`` (migration 0010): not stopped, heard from in
the last 30 seconds. A heartbeat write that fails (database away) is retried at the next
beat; the row merely looks stale meanwhile, which is the truth the CLI should see.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any, Self

import asyncpg
import structlog

from core.resource import AsyncResource
from core.venue import InvalidOrder
from database.codec import dumps_json
from database.errors import DB_ERRORS

log = structlog.get_logger("daemons")
HEARTBEAT_S = 5.0


def version() -> str:
    try:
        return metadata.version("trader")
    except metadata.PackageNotFoundError:
        return "unknown"


class DaemonRegistry(AsyncResource):
    """This daemon's row in ``monitoring.daemons``, kept fresh while it runs."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        account: str,
        venue: str,
        symbols: Sequence[str],
        markets: Mapping[str, Mapping[str, str]],
        *,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._pool = pool
        self._account = account
        self._venue = venue
        self._symbols = list(symbols)
        self._markets = dict(markets)
        self._beat_s = heartbeat_s
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._pool.execute(
            "INSERT INTO monitoring.daemons AS d (account, host, pid, version, venue, symbols, "
            "markets, started_at, heartbeat_at, stopped_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, now(), now(), NULL) "
            "ON CONFLICT (account) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, "
            "version = EXCLUDED.version, venue = EXCLUDED.venue, symbols = EXCLUDED.symbols, "
            "markets = EXCLUDED.markets, started_at = now(), heartbeat_at = now(), "
            "stopped_at = NULL",
            self._account,
            socket.gethostname(),
            os.getpid(),
            version(),
            self._venue,
            self._symbols,
            dumps_json(self._markets),
        )
        self._task = asyncio.create_task(self._beat(), name="daemon-heartbeat")
        return self

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._beat_s)
            try:
                await self._pool.execute(
                    "UPDATE monitoring.daemons SET heartbeat_at = now() "
                    "WHERE account = $1 AND pid = $2",
                    self._account,
                    os.getpid(),
                )
            except DB_ERRORS as exc:
                log.debug("daemon_heartbeat_not_written", error=type(exc).__name__)

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(*DB_ERRORS):
            await self._pool.execute(
                "UPDATE monitoring.daemons SET stopped_at = now() WHERE account = $1 AND pid = $2",
                self._account,
                os.getpid(),
            )


def market_precision(venue: Any, symbols: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each traded symbol's tick size and amount step, as the venue states them."""
    out: dict[str, dict[str, str]] = {}
    for symbol in symbols:
        try:
            market = venue.market(symbol)
        except InvalidOrder:  # the start reports an unknown symbol itself
            continue
        out[symbol] = {"tick_size": str(market.tick_size), "amount_step": str(market.amount_step)}
    return out


# -- reading (the CLI, `check`) -----------------------------------------------------------
async def live_daemon(pool: asyncpg.Pool, account: str) -> dict[str, Any] | None:
    """The live daemon serving ``account`` (monitoring.live_daemons), or None."""
    row = await pool.fetchrow("SELECT * FROM monitoring.live_daemons WHERE account = $1", account)
    return dict(row) if row is not None else None


async def last_daemon(pool: asyncpg.Pool, account: str) -> dict[str, Any] | None:
    """The last daemon that served ``account``, live or not, or None (never served)."""
    row = await pool.fetchrow("SELECT * FROM monitoring.daemons WHERE account = $1", account)
    return dict(row) if row is not None else None


async def waiting_requests(pool: asyncpg.Pool, limit: int = 20) -> list[dict[str, Any]]:
    """Requests no live daemon will take (monitoring.waiting_requests), oldest first."""
    rows = await pool.fetch(
        "SELECT * FROM monitoring.waiting_requests ORDER BY created_at, id LIMIT $1", limit
    )
    return [dict(r) for r in rows]


async def count_waiting(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM monitoring.waiting_requests") or 0)


def not_served(account: str, last: Mapping[str, Any] | None) -> str:
    """Why no live daemon serves ``account``, in words."""
    if last is None:
        return f"no daemon has ever served account {account!r}"
    if last["stopped_at"] is not None:
        return (
            f"the daemon of account {account!r} stopped at {last['stopped_at']:%Y-%m-%d %H:%M:%S%z}"
        )
    return (
        f"the daemon of account {account!r} (pid {last['pid']} on {last['host']}) has not "
        f"been heard from since {last['heartbeat_at']:%Y-%m-%d %H:%M:%S%z}"
    )


UNSERVED_EVERY_S = 5.0
UNSERVED_SHOWN = 5


class UnservedWatch:
    """Says (a warning) when requests appear that no live daemon will take — an account
    nobody serves, a daemon that died — so they do not wait silently. Looked at every few
    seconds; each request is reported once while it waits."""

    def __init__(self, pool: asyncpg.Pool, every_s: float = UNSERVED_EVERY_S) -> None:
        self._pool = pool
        self._every_s = every_s
        self._next = 0.0
        self._seen: set[tuple[str, int]] = set()

    async def check(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every_s
        rows = await waiting_requests(self._pool, 100)
        keys = {(r["request"], int(r["id"])) for r in rows}
        fresh = [r for r in rows if (r["request"], int(r["id"])) not in self._seen]
        self._seen = keys
        if fresh:
            log.warning(
                "intake_requests_unserved",
                waiting=await count_waiting(self._pool),
                requests=[
                    f"{r['request']} {r['id']} for {r['account']!r}: {r['why']}"
                    for r in fresh[:UNSERVED_SHOWN]
                ],
            )
