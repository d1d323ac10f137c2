"""The asyncpg pool: where the database is and how to connect to it.

:func:`open_database` is the one entry point the daemon and the CLI use: it connects to
``TRADER_DATABASE_URL`` or, when that is empty, starts the embedded PostgreSQL under
``settings.embedded_db_dir`` (database/embedded.py) and connects to that.

Every connection speaks UTC (``timezone`` is set per session) and encodes ``json`` /
``jsonb`` with :func:`database.codec.dumps_json`, so a ``dict`` holding ``Decimal`` or
``datetime`` values is stored as JSON without a conversion at the call site.

asyncpg's exceptions are translated by database/errors.py: connection failures become
:class:`DatabaseUnavailable`. The URL is a secret (it may carry a password): it is never
logged, and error messages show it with the password masked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg

from config.logging import get_logger, register_secrets
from database.codec import dumps_json
from database.embedded import EmbeddedPostgres
from database.errors import DatabaseUnavailable, translate

if TYPE_CHECKING:
    from config.settings import Settings

log = get_logger("database")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=dumps_json, decoder=json.loads, format="text"
        )


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout_s: float = 10.0,
    wait_s: float = 0.0,
    **kwargs: Any,
) -> asyncpg.Pool:
    """Connect a pool to ``url`` (UTC sessions, JSON codecs).

    ``wait_s`` keeps retrying a refused connection for that long (a server still
    starting); after that, or for any other error, raise :class:`DatabaseError`.
    """
    password = urlsplit(url).password
    if password:
        register_secrets([password, url])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay_s = 0.1
    while True:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout_s,
                init=_init_connection,
                server_settings={"timezone": "UTC", "application_name": "trader"},
                **kwargs,
            )
            return pool
        except Exception as exc:
            error = translate(exc, url)
            if isinstance(error, DatabaseUnavailable) and loop.time() + delay_s < deadline:
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
                continue
            raise error from None


def statement_cache_size(settings: Settings) -> int:
    """asyncpg's prepared-statement cache: on against a server or a session pool; off
    behind PgBouncer's transaction pooling, where a named statement prepared on one
    server connection is unknown to the next transaction's (PgBouncer 1.18 does not
    track them). Queries still run as unnamed statements, COPY included."""
    return 0 if settings.database_pool_mode == "transaction" else 100


@asynccontextmanager
async def open_session_pool(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The pool whose connections are sessions (the account lock, LISTEN): ``pool`` itself
    unless ``TRADER_SESSION_DATABASE_URL`` names another way to the same database."""
    url = settings.session_database_url.get_secret_value()
    if not url:
        yield pool
        return
    session = await create_pool(url, min_size=1, max_size=3, wait_s=10.0)
    try:
        yield session
    finally:
        await _close_pool(session)


@asynccontextmanager
async def open_database(
    settings: Settings, *, min_size: int = 1, max_size: int = 10, wait_s: float = 10.0
) -> AsyncIterator[asyncpg.Pool]:
    """Yield a connected pool for ``settings``; close it (and the embedded server) after.

    With ``TRADER_DATABASE_URL`` set, connect there. Otherwise start (or join) the
    embedded PostgreSQL under ``settings.embedded_db_dir``; it is stopped when the last
    process using it leaves.
    """
    url = settings.database_url.get_secret_value()
    if url:
        pool = await create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            wait_s=wait_s,
            statement_cache_size=statement_cache_size(settings),
        )
        try:
            yield pool
        finally:
            await _close_pool(pool)
        return

    async with EmbeddedPostgres(settings.embedded_db_dir) as server:
        pool = await create_pool(server.url, min_size=min_size, max_size=max_size, wait_s=wait_s)
        try:
            yield pool
        finally:
            await _close_pool(pool)


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close gracefully, but never hang shutdown on a dead server."""
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("database_pool_close_failed", error=type(exc).__name__)
        pool.terminate()
