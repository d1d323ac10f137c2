"""The intake listener: ``monitoring.signals`` and ``monitoring.commands`` rows to actions.

A dedicated connection LISTENs on ``trader_intake`` (the tables' insert trigger NOTIFYs
it); a slow poll backs it up, so a notification lost while the database was away delays a
request by seconds, never forever. Rows are claimed one at a time, oldest first across
both tables, with ``FOR UPDATE SKIP LOCKED`` — except that close and cancel commands go
first, and rows the shared check refuses are rejected a batch at a time
(database/intake_queue.py) — handled, and their outcome written back. Only the row in
hand is ever ``processing``, so a crash interrupts that one request and no other
(:meth:`IntakeListener.recover_interrupted`). The outcome write is shielded from
cancellation and retried until the database takes it: a request that acted must say so.

Stopping is cooperative: :meth:`IntakeListener.stop` lets the request in hand finish (an
open is never cut between entry and stop by a shutdown) and then ends :meth:`run`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import asyncpg
import structlog

from core.intake import DONE, FAILED, IntakeHandler, Outcome
from database.daemons import UnservedWatch
from database.errors import DB_ERRORS, is_unavailable
from database.intake_queue import claim
from database.repository import Repository

log = structlog.get_logger("intake")
CHANNEL = "trader_intake"


class IntakeListener:
    """Claims and handles this account's intake rows until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        handler: IntakeHandler,
        account: str,
        *,
        poll_interval_s: float = 2.0,
        listen_pool: asyncpg.Pool | None = None,
    ) -> None:
        self._pool = pool
        # LISTEN needs a session: behind transaction pooling, a pool of its own.
        self._listen_pool = listen_pool or pool
        self._repo = Repository(pool)
        self._handler = handler
        self._account = account
        self._poll_s = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._unserved = UnservedWatch(pool)
        self.handled = 0

    def stop(self) -> None:
        """Finish the request in hand, take no more."""
        self._stopping.set()
        self._wake.set()

    async def recover_interrupted(self) -> int:
        """Rows left ``processing`` by a daemon that died: never re-run (it may have acted,
        and a second open must not happen); marked failed, pointing at the positions."""
        count = 0
        for table in ("monitoring.signals", "monitoring.commands"):
            result = await self._pool.execute(
                f"UPDATE {table} SET status = 'failed', processed_at = now(), reason = "
                "'interrupted by a daemon restart while processing; check positions and "
                "orders for what it did' WHERE status = 'processing' AND account = $1",
                self._account,
            )
            count += int(result.split()[-1])
        return count

    async def run(self) -> None:
        """Listen, claim, handle, record — until :meth:`stop`."""
        listener = asyncio.create_task(self._listen(), name="intake-listen")
        try:
            while not self._stopping.is_set():
                try:
                    worked = await self._drain_once()
                    await self._unserved.check()
                except DB_ERRORS as exc:
                    if not is_unavailable(exc) and not isinstance(exc, OSError):
                        log.error("intake_error", error=repr(exc))
                    worked = False
                if not worked:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _drain_once(self) -> bool:
        """Claim and handle requests one at a time until none is left or a stop is asked;
        True if there was anything."""
        worked = False
        while not self._stopping.is_set():
            async with self._pool.acquire() as conn:
                work = await claim(conn, self._account, self._handler.screen)
            for kind, row_id, reason in work.rejected:
                # Refused by the shared check: the same words the handler would write.
                log.warning(f"{kind}_rejected", reason=reason, **{f"{kind}_id": row_id})
            self.handled += len(work.rejected)
            worked = worked or bool(work.rejected)
            if work.taken is None:
                if work.rejected:
                    continue
                break
            kind, row = work.taken
            outcome = await self._handle(kind, row)
            await asyncio.shield(self._record(kind, row["id"], outcome))
            self.handled += 1
            worked = True
        return worked

    async def _handle(self, kind: str, row: Mapping[str, Any]) -> Outcome:
        structlog.contextvars.bind_contextvars(**{f"{kind}_id": row["id"]})
        try:
            if kind == "signal":
                return await self._handler.signal(row)
            return await self._handler.command(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must fail the request, not the daemon
            log.exception("intake_handler_crashed", kind=kind)
            return Outcome(FAILED, f"internal error: {type(exc).__name__}")
        finally:
            structlog.contextvars.unbind_contextvars(f"{kind}_id")

    async def _record(self, kind: str, row_id: int, outcome: Outcome) -> None:
        ids: dict[str, Any] = {f"{kind}_id": row_id}
        if outcome.position_id is not None:
            ids["position_id"] = outcome.position_id
        delay = 0.2
        while True:
            try:
                if kind == "signal":
                    await self._repo.finish_signal(
                        row_id,
                        outcome.status,
                        outcome.reason,
                        outcome.position_id,
                        dict(outcome.result),
                    )
                else:
                    result = dict(outcome.result)
                    await self._repo.finish_command(row_id, outcome.status, outcome.reason, result)
                break
            except DB_ERRORS as exc:
                log.warning("intake_outcome_retry", error=type(exc).__name__, **ids)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if outcome.status == DONE:
            log.info(f"{kind}_done", **ids)
        else:
            # Refused or failed: someone has to read the reason and act on it.
            log.warning(f"{kind}_{outcome.status}", reason=outcome.reason, **ids)

    async def _listen(self) -> None:
        """Hold one pooled connection LISTENing; take another when it drops."""
        delay = 0.5
        while True:
            try:
                conn = await self._listen_pool.acquire(timeout=10)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("intake_listen_connect_failed", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            lost = asyncio.Event()
            on_notify, on_lost = self._callbacks(lost)
            broken = False
            try:
                conn.add_termination_listener(on_lost)
                await conn.add_listener(CHANNEL, on_notify)
                self._wake.set()  # catch up on anything inserted while not listening
                await lost.wait()
            except DB_ERRORS as exc:
                # Includes a connection the pool handed back in a bad protocol state after
                # a server restart ("another operation is in progress"): drop it, take
                # another. Losing the listener must never take the daemon down.
                broken = True
                log.warning("intake_listen_lost", error=type(exc).__name__)
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    if broken:
                        conn.terminate()
                    else:
                        await conn.remove_listener(CHANNEL, on_notify)
                with contextlib.suppress(Exception):
                    await self._listen_pool.release(conn, timeout=2)

    def _callbacks(self, lost: asyncio.Event) -> tuple[Any, Any]:
        def on_notify(*_: object) -> None:
            self._wake.set()

        def on_lost(*_: object) -> None:
            lost.set()

        return on_notify, on_lost
