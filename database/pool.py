"""The asyncpg pool: where the database is, how to connect, and the database errors.

:func:`open_database` is the one entry point the daemon and the CLI use: it connects to
``TRADER_DATABASE_URL`` or, when that is empty, starts the embedded PostgreSQL under
``settings.embedded_db_dir`` (database/embedded.py) and connects to that.

Every connection speaks UTC (``timezone`` is set per session) and encodes ``json`` /
``jsonb`` with :func:`database.codec.dumps_json`, so a ``dict`` holding ``Decimal`` or
``datetime`` values is stored as JSON without a conversion at the call site.

asyncpg's exceptions do not leave ``database/``: connection failures become
:class:`DatabaseUnavailable`. The URL is a secret (it may carry a password): it is never
logged, and error messages show it with the password masked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from config.logging import get_logger, redact, register_secrets
from core.errors import TraderError
from database.codec import dumps_json

if TYPE_CHECKING:
    from config.settings import Settings

log = get_logger("database")

# Errors meaning "the server is not there right now" (as opposed to "this statement is
# wrong"): refused or reset connections, timeouts, and the server-side classes 08
# (connection exception), 53 (insufficient resources), 57 (operator intervention:
# shutdown, crash recovery, cancelled statement).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


class DatabaseError(TraderError):
    """Something went wrong talking to PostgreSQL. The message never holds a password."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached now (down, restarting, unreachable, timing out).

    Retrying later is safe; the audit writer spools to disk meanwhile.
    """


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for a message or a log line."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable database url>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


# Everything the database layer raises when the server or the connection to it failed (as
# opposed to a bad request): worth a retry on a fresh connection, never worth stopping
# for. asyncpg's InternalClientError is not an InterfaceError; it comes from a pooled
# connection left mid-operation by a server restart ("another operation is in progress").
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the server is unreachable rather than the request is bad."""
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        # InterfaceError covers "connection is closed" and "pool is closing"; its
        # subclass DataError (bad client-side input) is a request problem.
        return not isinstance(exc, ValueError)
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    return False


def translate(exc: BaseException, url: str | None = None) -> DatabaseError:
    """Our error for an asyncpg / OS error, with any password masked."""
    where = f" ({safe_url(url)})" if url else ""
    text = redact(f"{type(exc).__name__}: {exc}")
    if url:
        password = urlsplit(url).password
        if password:
            text = text.replace(password, "***")
    cls = DatabaseUnavailable if is_unavailable(exc) else DatabaseError
    return cls(f"database{where}: {text}")


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
        pool = await create_pool(url, min_size=min_size, max_size=max_size, wait_s=wait_s)
        try:
            yield pool
        finally:
            await _close_pool(pool)
        return
    # Imported here: the embedded server (and pgserver) is only needed without a URL.
    from database.embedded import EmbeddedPostgres

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
