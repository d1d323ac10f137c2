"""How a CLI command reaches the database: logging to stderr, one small pool, one-line errors.

The tools talk only to PostgreSQL (never to the daemon), so they work whether or not the
daemon runs. :func:`run_with_pool` opens a pool with :func:`database.pool.open_database`
(``TRADER_DATABASE_URL``, or the embedded server under the state directory, which it
joins when the daemon already started it), runs one command, and turns a database failure
into one line on stderr and exit 1. Error lines never show the URL (it may hold a
password): the password is masked and the URL left out.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import asyncpg

from config.logging import configure_logging, redact, register_secrets
from config.settings import Settings
from database.errors import DatabaseError, safe_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CONNECT_WAIT_S = 3.0

PoolCommand = Callable[[asyncpg.Pool], Awaitable[int]]


class CommandFailed(Exception):
    """A command cannot go on; ``str()`` is the one line to print, exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        self.code = code
        super().__init__(message)


def setup_cli(settings: Settings) -> None:
    """Log warnings only, to stderr (stdout is for results and ``--json``); mask secrets."""
    configure_logging(settings.log_format, "WARNING", stream=sys.stderr)
    register_secrets(settings.secret_values())


def database_problem(exc: BaseException, settings: Settings) -> str:
    """A one-line description of a database failure, starting ``database: ``, without the
    URL or its password."""
    text = str(exc)
    url = settings.database_url.get_secret_value()
    if url:
        text = text.replace(f" ({safe_url(url)})", "").replace(safe_url(url), "<url>")
    if not isinstance(exc, DatabaseError):
        text = f"database: {type(exc).__name__}: {text}"
    return redact(" ".join(text.split()))


def run_with_pool(settings: Settings, command: PoolCommand) -> int:
    """Run ``command`` with a pool on a migrated database; database errors and
    :class:`CommandFailed` become one line on stderr."""
    setup_cli(settings)

    async def go() -> int:
        from database.pool import open_database
        from database.reports import schema_ready

        async with open_database(settings, min_size=1, max_size=2, wait_s=CONNECT_WAIT_S) as pool:
            if not await schema_ready(pool):
                raise CommandFailed(
                    "the monitoring schema is missing: run `python main.py migrate` "
                    "(or start the daemon) first"
                )
            return await command(pool)

    return run_guarded(settings, go())


def run_guarded(settings: Settings, coro: Awaitable[int]) -> int:
    """Run a coroutine to its exit code, reporting known failures as one line."""
    try:
        return asyncio.run(_as_coroutine(coro))
    except CommandFailed as exc:
        print(redact(str(exc)), file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader went away (``| head``): nothing left to say, and nobody to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (DatabaseError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        print(database_problem(exc, settings), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


async def _as_coroutine(awaitable: Awaitable[int]) -> int:
    return await awaitable
