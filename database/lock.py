"""The account's single-instance lock: a PostgreSQL session advisory lock, watched.

Held on a dedicated connection for the daemon's lifetime; if the process dies, the
server drops the session and the lock with it, so a crashed daemon never blocks its
successor. A second daemon for the same account is refused with a clear message.

The lock lives exactly as long as its session, so the session is watched: asyncpg's
termination callback, and a ``SELECT 1`` every ``check_interval_s`` for a connection that
hangs instead of closing. When the session is gone (PostgreSQL restarted, the connection
dropped, the backend was terminated) the lock is taken again on a new session:

- the database does not answer: keep trying, for as long as it takes, while the daemon
  trades on (the audit writer spools). Losing the database is not losing the lock to
  someone else: a second daemon cannot start without the database either;
- the database answers and the lock is free: taken again, with an event saying so;
- another session holds it: another daemon for this account got in while ours was gone.
  Two daemons on one account are worse than none: :attr:`AccountLock.failed` is set
  (with :class:`LockLost` in :attr:`AccountLock.error`) and the daemon stops, exit 1;
- our own old session still holds it (the server has not noticed yet that the connection
  is dead): that backend is terminated and the lock taken again. If the lock cannot be
  had within ``reacquire_timeout_s`` of the database answering, the same as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self

import asyncpg

from config.logging import get_logger
from core.errors import TraderError
from core.records import Severity
from core.resource import AsyncResource
from database.errors import DB_ERRORS

log = get_logger("database.lock")

_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"
_SESSION = "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
# Who holds an advisory lock on a bigint key: pg_locks splits the key into two oids.
_HOLDER = """
SELECT l.pid, a.backend_start
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
LIMIT 1
"""


class AlreadyRunning(TraderError):
    """Another daemon holds this account's lock at start. Final: the new daemon exits."""


class LockLost(TraderError):
    """The lock's session was lost and the lock could not be taken back: another daemon
    holds it, or it could not be re-taken in time. Final: the daemon must stop."""


class EventSink(Protocol):
    """Where the lock reports what happens to it (core/journal.py's ``Journal``)."""

    def event(self, kind: str, message: str, *, severity: Severity = ..., **detail: Any) -> None:
        """Record a daemon event (``monitoring.events``) and log it."""


def lock_key(account: str) -> int:
    """A stable signed 64-bit key for ``account`` (advisory locks take a bigint)."""
    digest = hashlib.sha256(f"trader-account:{account}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _alive(conn: asyncpg.Connection) -> bool:
    """Whether ``conn`` is open. The pool detaches a pooled connection that died, and the
    detached proxy then refuses every call, this one included."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


@dataclass(frozen=True, slots=True)
class _Session:
    """A server session, named so that a recycled pid is not mistaken for it."""

    pid: int
    started: datetime | None


class AccountLock(AsyncResource):
    """Hold and watch the account's lock (``async with``). Raises :class:`AlreadyRunning`
    on entry if another daemon has it; later losses are reported through :attr:`failed`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        account: str,
        *,
        check_interval_s: float = 5.0,
        check_timeout_s: float = 10.0,
        retry_interval_s: float = 1.0,
        reacquire_timeout_s: float = 30.0,
    ) -> None:
        self.account = account
        self.key = lock_key(account)
        self.failed = asyncio.Event()
        self.error: LockLost | None = None
        self.journal: EventSink | None = None
        self.reacquired = 0
        self._pool = pool
        self._check_s = check_interval_s
        self._check_timeout_s = check_timeout_s
        self._retry_s = retry_interval_s
        self._reacquire_timeout_s = reacquire_timeout_s
        self._conn: asyncpg.Connection | None = None
        self._session: _Session | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def held(self) -> bool:
        """True while a live session of ours holds the lock (as far as we know)."""
        return self._conn is not None and _alive(self._conn)

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the session holding the lock (None while it is being re-taken)."""
        return self._session.pid if self._session is not None and self.held else None

    async def __aenter__(self) -> Self:
        conn = await self._pool.acquire()
        try:
            if not await conn.fetchval(_TRY_LOCK, self.key):
                raise AlreadyRunning(
                    f"another daemon is already running for account {self.account!r}; "
                    "refusing to start"
                )
            session = await self._session_of(conn)
        except BaseException:
            await self._pool.release(conn)
            raise
        self._conn, self._session = conn, session
        self._watcher = asyncio.create_task(self._watch(), name=f"account-lock-{self.account}")
        return self

    async def aclose(self) -> None:
        """Stop watching and release the lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait({self._watcher})
        conn, self._conn = self._conn, None
        if conn is not None:
            # If the session is gone, so is the lock: nothing to undo.
            with contextlib.suppress(*DB_ERRORS):
                await conn.execute(_UNLOCK, self.key, timeout=self._check_timeout_s)
            with contextlib.suppress(*DB_ERRORS):
                await self._pool.release(conn, timeout=self._check_timeout_s)

    # -- watching ----------------------------------------------------------------------
    async def _watch(self) -> None:
        try:
            await self._watch_forever()
        except Exception as exc:  # an unwatched lock is worse than a stopped daemon
            self.error = LockLost(f"watching the account lock failed: {exc!r}")
            self._report("account_lock_taken", str(self.error), Severity.CRITICAL)
            self.failed.set()

    async def _watch_forever(self) -> None:
        while True:
            await self._until_lost()
            stale = self._session
            await self._drop_connection()
            self._report(
                "account_lock_lost",
                "the database session holding the account lock is gone; taking it again "
                "(trading goes on meanwhile)",
                Severity.WARNING,
            )
            try:
                await self._reacquire(stale)
            except LockLost as exc:
                self.error = exc
                self._report("account_lock_taken", str(exc), Severity.CRITICAL)
                self.failed.set()
                return
            self.reacquired += 1
            self._report(
                "account_lock_reacquired",
                "the account lock is held again on a new database session",
                Severity.INFO,
            )

    async def _until_lost(self) -> None:
        """Return once the lock's session is gone (closed, terminated or not answering)."""
        conn = self._conn
        if conn is None or not _alive(conn):
            return
        lost = asyncio.Event()

        def on_terminated(_: object) -> None:
            lost.set()

        conn.add_termination_listener(on_terminated)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=self._check_s)
                if lost.is_set() or not _alive(conn):
                    return
                try:
                    await conn.fetchval("SELECT 1", timeout=self._check_timeout_s)
                except Exception as exc:  # whatever it is, the session is not healthy
                    log.warning("account_lock_check_failed", error=type(exc).__name__)
                    return
        finally:
            # A pooled connection that died has been detached by the pool already.
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.remove_termination_listener(on_terminated)

    async def _drop_connection(self) -> None:
        """Give the dead connection back to the pool, closing our end first: a connection
        that hangs rather than closes must not hold the lock on our behalf any longer."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(asyncpg.InterfaceError):  # detached by the pool already
            conn.terminate()
        with contextlib.suppress(*DB_ERRORS):
            await self._pool.release(conn, timeout=self._check_timeout_s)

    async def _reacquire(self, stale: _Session | None) -> None:
        """Take the lock on a new session; raise :class:`LockLost` if someone else has it,
        or if the database answers but the lock cannot be had in time."""
        loop = asyncio.get_running_loop()
        answering_since: float | None = None
        delay_s = self._retry_s
        waiting_logged = False
        while True:
            try:
                conn = await self._pool.acquire(timeout=self._check_timeout_s)
            except DB_ERRORS as exc:
                # The database does not answer: wait for it, however long, trading on.
                answering_since = None
                if not waiting_logged:
                    log.warning("account_lock_waiting_for_database", error=type(exc).__name__)
                    waiting_logged = True
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, max(self._retry_s, 5.0))
                continue
            delay_s = self._retry_s
            if answering_since is None:
                answering_since = loop.time()
            try:
                if await self._try_lock(conn, stale):
                    return
            except BaseException:
                await self._release_quietly(conn)
                raise
            await self._release_quietly(conn)
            if loop.time() - answering_since > self._reacquire_timeout_s:
                raise LockLost(
                    f"the lock of account {self.account!r} could not be taken back within "
                    f"{self._reacquire_timeout_s:g} s of the database answering; stopping "
                    "rather than risk two daemons on one account"
                )
            await asyncio.sleep(self._retry_s)

    async def _try_lock(self, conn: asyncpg.Connection, stale: _Session | None) -> bool:
        """One attempt on ``conn``: True (and ``conn`` kept) if the lock is ours again."""
        try:
            if await conn.fetchval(_TRY_LOCK, self.key, timeout=self._check_timeout_s):
                self._session = await self._session_of(conn)
                self._conn = conn
                return True
            holder = await self._holder(conn)
        except DB_ERRORS as exc:
            log.warning("account_lock_retry", error=type(exc).__name__)
            return False
        if holder is None:
            return False  # released between the two statements: try again
        if holder != stale:
            raise LockLost(
                f"another daemon took the lock of account {self.account!r} (database "
                f"session pid {holder.pid}) while ours was gone; stopping so that only one "
                "trades"
            )
        # Our own old session, which the server has not yet seen die: end it.
        log.warning("account_lock_ending_stale_session", pid=holder.pid)
        with contextlib.suppress(*DB_ERRORS):
            await conn.fetchval(
                "SELECT pg_terminate_backend($1)", holder.pid, timeout=self._check_timeout_s
            )
        return False

    async def _holder(self, conn: asyncpg.Connection) -> _Session | None:
        high, low = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        row = await conn.fetchrow(_HOLDER, high, low, timeout=self._check_timeout_s)
        return None if row is None else _Session(row["pid"], row["backend_start"])

    async def _session_of(self, conn: asyncpg.Connection) -> _Session:
        row = await conn.fetchrow(_SESSION, timeout=self._check_timeout_s)
        return _Session(row["pid"], row["backend_start"])

    async def _release_quietly(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(*DB_ERRORS):
            await self._pool.release(conn, timeout=self._check_timeout_s)

    def _report(self, kind: str, message: str, severity: Severity) -> None:
        """An event (and its log line) through the journal once there is one."""
        if self.journal is not None:
            self.journal.event(kind, message, severity=severity)
        else:
            getattr(log, severity.value)(kind, message=message, account=self.account)
