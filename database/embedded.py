"""The embedded PostgreSQL: a private cluster under a directory, used when no URL is set.

It runs the PostgreSQL binaries bundled with the ``pgserver`` wheel, driven directly with
``initdb`` / ``pg_ctl`` rather than through ``pgserver.get_server``: that helper keeps
process-global state, stops servers from ``atexit`` and cannot stop and restart one
server on demand, which the outage tests (and a clean daemon shutdown) need.

Layout under ``root`` (``settings.embedded_db_dir``)::

    data/            PGDATA
    run/             the Unix socket (mode 0700: only the owner, and root, can connect)
    log/             the server log
    .control.lock    serialises start / stop between processes
    .users.lock      every process using the server holds it shared

The server listens on its Unix socket only (no TCP port: nothing to collide with, and
``trust`` authentication is then limited to whoever can open the socket directory).
Several processes (the daemon, a CLI call) may use one server: the first starts it, and
whoever leaves last stops it (:meth:`EmbeddedPostgres.aclose`).

Running as root: PostgreSQL refuses to, so (as pgserver does) the server runs as an
unprivileged system user: the owner of an existing data directory, else ``pgserver``
(created with ``useradd`` when missing). That user needs to traverse to the bundled
binaries and to ``root``; directories on the way that deny it get ``o+x`` (search only,
never read), and a warning names each one changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, Self

import asyncpg

from config.logging import get_logger
from core.resource import AsyncResource
from database.errors import DatabaseError

log = get_logger("database.embedded")

SERVER_USER = "pgserver"
PORT = 5432  # only names the socket file; there is no TCP listener
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def bundled_bin_dir() -> Path:
    """The ``bin`` directory of the PostgreSQL that ships inside the pgserver wheel.

    Found without importing pgserver: its import has side effects (and a warning).
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError("the embedded database needs the 'pgserver' package")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise DatabaseError(f"pgserver has no PostgreSQL binaries under {path}")
    return path


class EmbeddedPostgres(AsyncResource):
    """One embedded cluster. ``async with`` starts (or joins) it and yields ``self``.

    ``durable=False`` turns off fsync (tests only: a crash of the machine may corrupt it).
    """

    def __init__(self, root: Path, *, database: str = "trader", durable: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        self.database = database
        self.durable = durable
        self.data_dir = self.root / "data"
        self.log_file = self.root / "log" / "postgresql.log"
        self._bin = bundled_bin_dir()
        self._socket_dir = self._choose_socket_dir()
        self._users: IO[bytes] | None = None
        self._user: pwd.struct_passwd | None = None
        self._user_known = False
        self._closed = False

    # -- public ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """A libpq / asyncpg URL for the server's database (the socket directory as host)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self._socket_dir}&port={PORT}"

    async def start(self) -> str:
        """Initialise the cluster if new, start it unless running, create the database.

        Registers this object as a user of the server. Returns :attr:`url`.
        """
        await asyncio.to_thread(self._start_blocking)
        await self._ensure_database()
        return self.url

    async def stop(self, mode: str = "fast") -> None:
        """Stop the server now, whoever else uses it (``mode``: smart, fast, immediate).

        For tests (an outage) and for tools; the daemon leaves through :meth:`aclose`.
        """
        await asyncio.to_thread(self._stop_blocking, mode)

    async def aclose(self) -> None:
        """Stop using the server; stop it if no other process uses it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._release_blocking)

    def is_running(self) -> bool:
        """True when the postmaster of ``data/`` is alive."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._pg_ctl(["status"], check=False).returncode == 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    # -- start / stop (blocking: run in a thread) ------------------------------------
    def _start_blocking(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self._control_lock():
            if self._users is None:
                # Registered under the control lock, so a process leaving at the same
                # moment either sees us (and keeps the server) or stops before we start.
                self._users = (self.root / ".users.lock").open("ab")
                fcntl.flock(self._users, fcntl.LOCK_SH)
            self._closed = False
            self._prepare_dirs()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._write_config()
            if self._pg_ctl(["status"], check=False).returncode != 0:
                log.info("embedded_postgres_starting", root=str(self.root))
                result = self._pg_ctl(
                    ["-l", str(self.log_file), "-w", "-t", "60", "start"], check=False
                )
                if result.returncode != 0:
                    raise DatabaseError(
                        f"embedded PostgreSQL under {self.root} did not start: "
                        f"{result.stderr.strip() or result.stdout.strip()}; "
                        f"see {self.log_file}"
                    )

    def _stop_blocking(self, mode: str) -> None:
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown stop mode {mode!r}")
        with self._control_lock():
            self._stop_server(mode)

    def _release_blocking(self) -> None:
        users, self._users = self._users, None
        if users is None:
            return
        try:
            with self._control_lock():
                try:
                    # Exclusive only if no other process holds it shared: we are last.
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("embedded_postgres_left_running", reason="other users")
                    return
                self._stop_server("fast")
        finally:
            users.close()

    def _stop_server(self, mode: str) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            return
        result = self._pg_ctl(["-m", mode, "-w", "-t", "60", "stop"], check=False)
        # Exit status 1 with "no server running" is fine: stopping is idempotent.
        if result.returncode != 0 and self._pg_ctl(["status"], check=False).returncode == 0:
            raise DatabaseError(f"embedded PostgreSQL did not stop: {result.stderr.strip()}")
        log.info("embedded_postgres_stopped", root=str(self.root), mode=mode)

    def _initdb(self) -> None:
        log.info("embedded_postgres_initdb", root=str(self.root))
        args = [
            str(self._bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        if not self.durable:
            args.append("--no-sync")
        result = self._run(args, check=False)
        if result.returncode != 0:
            raise DatabaseError(f"initdb failed under {self.data_dir}: {result.stderr.strip()}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Settings of the trading daemon, rewritten at each start.\n")
            conf.write("include_if_exists = 'trader.conf'\n")

    def _write_config(self) -> None:
        lines = {
            "listen_addresses": "''",
            "port": str(PORT),
            "unix_socket_directories": _quote(str(self._socket_dir)),
            "unix_socket_permissions": "0700",
            "timezone": "'UTC'",
            "max_connections": "100",
        }
        if not self.durable:
            # Not synchronous_commit=off: that would lose acknowledged commits when the
            # server (not the machine) crashes, which the outage tests do on purpose.
            lines |= {"fsync": "off", "full_page_writes": "off"}
        path = self.data_dir / "trader.conf"
        path.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        self._give(path)

    # -- who runs it, and where ------------------------------------------------------
    def _server_user(self) -> pwd.struct_passwd | None:
        """None when we are not root (the server runs as us); else an unprivileged user."""
        if not self._user_known:
            self._user = self._find_server_user()
            self._user_known = True
        return self._user

    def _find_server_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        if self.data_dir.exists():
            owner = self.data_dir.stat().st_uid
            if owner != 0:
                return pwd.getpwuid(owner)
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            subprocess.run(
                [
                    useradd,
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVER_USER,
                ],
                check=True,
                capture_output=True,
            )
            log.warning("embedded_postgres_user_created", user=SERVER_USER)
            return pwd.getpwnam(SERVER_USER)

    def _prepare_dirs(self) -> None:
        self._server_user()
        for path in (self.data_dir, self._socket_dir, self.log_file.parent):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._give(path)
        if self._user is not None:
            for path in (self.data_dir, self._socket_dir, self.log_file.parent, self._bin):
                _grant_search(path.parent)

    def _give(self, path: Path) -> None:
        """Make ``path`` belong to the server user (only matters when we are root)."""
        if self._user is not None and path.stat().st_uid != self._user.pw_uid:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _choose_socket_dir(self) -> Path:
        preferred = self.root / "run"
        if len(str(preferred)) + len(f"/.s.PGSQL.{PORT}") <= _MAX_SOCKET_PATH:
            return preferred
        # A deep state directory: put the socket in a short, private, stable place.
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path("/tmp") / f"trader-pg-{digest}"

    # -- processes -------------------------------------------------------------------
    def _pg_ctl(self, args: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        return self._run([str(self._bin / "pg_ctl"), "-D", str(self.data_dir), *args], check=check)

    def _run(self, args: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        user = self._server_user()
        if user is not None:
            # Drop every root privilege, supplementary groups included.
            extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            args,
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            env=env,
            **extra,
        )

    def _control_lock(self) -> _FileLock:
        return _FileLock(self.root / ".control.lock")

    async def _ensure_database(self) -> None:
        try:
            conn = await asyncpg.connect(self.url_for("postgres"), timeout=30)
        except (OSError, asyncpg.PostgresError) as exc:
            raise DatabaseError(f"embedded PostgreSQL is not reachable: {exc}") from None
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                # Another process may create it at the same moment: that is fine.
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()


class _FileLock:
    """An exclusive ``flock`` held for a ``with`` block (released if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def __enter__(self) -> None:
        self._file = self.path.open("ab")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _grant_search(directory: Path) -> None:
    """Let other users traverse ``directory`` and its ancestors (``o+x``, not ``o+r``)."""
    for path in (directory, *directory.parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(mode | stat.S_IXOTH)
            log.warning("embedded_postgres_granted_search", directory=str(path))


@asynccontextmanager
async def embedded_database(root: Path, *, durable: bool = True) -> AsyncIterator[str]:
    """Start (or join) the embedded server under ``root`` and yield its URL."""
    async with EmbeddedPostgres(root, durable=durable) as server:
        yield server.url
