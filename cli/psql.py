"""``main.py psql`` and ``main.py db-url``: plain SQL on the daemon's database.

The database is ``TRADER_DATABASE_URL``, or the embedded server under the state directory
(the one the daemon and the other commands share; it is started for the session if the
daemon is not running, and stopped after unless the daemon still uses it). A password
never goes on psql's command line, where ``ps`` shows it to every user: it is passed in
the environment (``PGPASSWORD``), and the URL psql gets has none. ``db-url`` masks it
unless ``--show-secret``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from cli.connect import EXIT_FAILED, EXIT_OK, setup_cli
from config.settings import Settings
from database.errors import safe_url

INSTALL_HINT = (
    "psql: not found; install the PostgreSQL client (Debian: apt-get install postgresql-client)"
)


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password, and the password (None when it has none)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host)), unquote(parts.password)


def embedded_url(settings: Settings) -> str:
    """The URL of the embedded server of ``settings`` (whether or not it runs)."""
    from database.embedded import EmbeddedPostgres

    return EmbeddedPostgres(settings.embedded_db_dir).url


def db_url_command(settings: Settings, *, show_secret: bool) -> int:
    url = settings.database_url.get_secret_value() or embedded_url(settings)
    print(url if show_secret else safe_url(url))
    return EXIT_OK


def find_psql(embedded: bool) -> str | None:
    """The embedded server's own psql (same version), else the one on PATH."""
    from database.embedded import bundled_bin_dir

    bundled = None
    try:
        candidate = bundled_bin_dir() / "psql"
        bundled = str(candidate) if candidate.exists() else None
    except Exception:  # no pgserver: only a PATH psql can serve
        bundled = None
    system = shutil.which("psql")
    return (bundled or system) if embedded else (system or bundled)


def psql_command(settings: Settings, extra: Sequence[str]) -> int:
    setup_cli(settings)  # log lines as every command's (stderr): stdout is psql's
    url = settings.database_url.get_secret_value()
    exe = find_psql(embedded=not url)
    if exe is None:
        print(INSTALL_HINT)
        return EXIT_FAILED

    def run(target: str) -> int:
        plain, password = split_password(target)
        env = dict(os.environ)
        if password is not None:
            env["PGPASSWORD"] = password
        return subprocess.call([exe, plain, *extra], env=env)

    # psql handles Ctrl-C itself (it cancels the query); we must not die under it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return run(url) if url else asyncio.run(_on_embedded(settings, run))
    finally:
        signal.signal(signal.SIGINT, previous)


async def _on_embedded(settings: Settings, run: Callable[[str], int]) -> int:
    from database.embedded import EmbeddedPostgres

    root: Path = settings.embedded_db_dir
    async with EmbeddedPostgres(root) as server:
        return await asyncio.to_thread(run, server.url)
