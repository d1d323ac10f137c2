"""The database errors, and the one translation of asyncpg's exceptions into them.

asyncpg's exceptions do not leave ``database/``: a connection failure becomes
:class:`DatabaseUnavailable` (retry later), anything else :class:`DatabaseError`. A
database URL may carry a password, so every message here shows it masked.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

from config.logging import redact
from core.errors import TraderError

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
