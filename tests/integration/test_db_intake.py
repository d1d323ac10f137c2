"""The intake queues: claiming with SKIP LOCKED (one request at a time), recording
outcomes, and recovering the request a crashed daemon had in hand."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from core.intake import DONE, FAILED, REJECTED, Outcome
from database.intake import IntakeListener
from database.repository import Repository


async def _insert_signals(repo: Repository, n: int, account: str | None = "main") -> list[int]:
    return [
        await repo.insert_signal(
            account=account, symbol="BTC/USDT:USDT", side="long", amount=Decimal("0.01")
        )
        for _ in range(n)
    ]


async def test_concurrent_claimers_never_share_a_row(pool: asyncpg.Pool) -> None:
    """Four claimers racing over 200 signals: each row is claimed exactly once."""
    repo = Repository(pool)
    ids = await _insert_signals(repo, 200)
    claimed: list[list[int]] = [[] for _ in range(4)]

    async def claimer(mine: list[int]) -> None:
        while batch := await repo.claim_signals("main", limit=7):
            mine.extend(r["id"] for r in batch)
            await asyncio.sleep(0)

    await asyncio.gather(*(claimer(c) for c in claimed))
    everything = [i for c in claimed for i in c]
    assert sorted(everything) == ids  # every row once: no duplicates, none missed
    assert sum(1 for c in claimed if c) >= 2  # the claimers really overlapped
    statuses = await pool.fetch("SELECT DISTINCT status FROM monitoring.signals")
    assert [r["status"] for r in statuses] == ["processing"]


async def test_claim_takes_own_and_unassigned_rows_oldest_first(pool: asyncpg.Pool) -> None:
    """A daemon claims its account's rows and unassigned ones (which become its own),
    never another account's."""
    repo = Repository(pool)
    mine = await _insert_signals(repo, 2, "main")
    unassigned = await _insert_signals(repo, 1, None)
    await _insert_signals(repo, 1, "other")
    rows = await repo.claim_signals("main", limit=10)
    assert [r["id"] for r in rows] == mine + unassigned
    assert {r["account"] for r in rows} == {"main"}
    assert all(r["claimed_at"] is not None for r in rows)
    assert await repo.claim_signals("main", limit=10) == []
    strict = await _insert_signals(repo, 1, None)
    assert await repo.claim_signals("main", include_unassigned=False) == []
    assert [r["id"] for r in await repo.claim_signals("main")] == strict


async def test_finish_signal_records_the_outcome_once(pool: asyncpg.Pool) -> None:
    """A claimed signal ends done with its position id; finishing it again is refused."""
    repo = Repository(pool)
    [sid] = await _insert_signals(repo, 1)
    assert not await repo.finish_signal(sid, "done")  # not claimed yet
    await repo.claim_signals("main")
    assert await repo.finish_signal(sid, "done", position_id=42)
    assert not await repo.finish_signal(sid, "failed", reason="late")
    row = await repo.get_signal(sid)
    assert row is not None
    assert (row["status"], row["position_id"], row["reason"]) == ("done", 42, None)
    assert row["processed_at"] is not None


async def test_finish_command_stores_result_json(pool: asyncpg.Pool) -> None:
    """A command's result is stored as jsonb (Decimal as text) with its final status."""
    repo = Repository(pool)
    cid = await repo.insert_command("place_order", {"symbol": "BTC/USDT:USDT", "amount": "1"})
    [claimed] = await repo.claim_commands("main")
    assert claimed["payload"] == {"symbol": "BTC/USDT:USDT", "amount": "1"}
    assert await repo.finish_command(cid, "done", result={"price": Decimal("1.50")})
    row = await repo.get_command(cid)
    assert row is not None
    assert (row["status"], row["result"]) == ("done", {"price": "1.50"})


async def test_bad_outcome_status_is_refused(pool: asyncpg.Pool) -> None:
    """Only done / rejected / failed end a request."""
    repo = Repository(pool)
    with pytest.raises(ValueError):
        await repo.finish_signal(1, "processing")
    with pytest.raises(ValueError):
        await repo.finish_command(1, "ok")


async def test_intake_rows_check_their_enums(pool: asyncpg.Pool) -> None:
    """A hand-written row with a wrong side, entry type or kind is refused by the table."""
    repo = Repository(pool)
    with pytest.raises(asyncpg.CheckViolationError):
        await repo.insert_signal(symbol="X", side="buy", amount=Decimal(1))
    with pytest.raises(asyncpg.CheckViolationError):
        await repo.insert_signal(symbol="X", side="long", entry_type="stop")
    with pytest.raises(asyncpg.CheckViolationError):
        await repo.insert_command("explode", {})


async def _statuses(pool: asyncpg.Pool, table: str) -> list[tuple[int, str]]:
    rows = await pool.fetch(f"SELECT id, status FROM monitoring.{table} ORDER BY id")
    return [(r["id"], r["status"]) for r in rows]


class ScriptedHandler:
    """Stands in for core.intake.IntakeHandler: answers each request with a scripted
    outcome, optionally holding every request at a gate (a request still in hand)."""

    def __init__(self, outcomes: dict[tuple[str, int], Outcome] | None = None) -> None:
        self.outcomes = outcomes or {}
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.seen: list[tuple[str, int]] = []

    def screen(self, kind: str, row: Mapping[str, Any]) -> Outcome | None:
        """Every row passes the shared check: the script decides each outcome."""
        return None

    async def _answer(self, kind: str, row: Mapping[str, Any]) -> Outcome:
        self.seen.append((kind, row["id"]))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.outcomes.get((kind, row["id"]), Outcome(DONE))

    async def signal(self, row: Mapping[str, Any]) -> Outcome:
        return await self._answer("signal", row)

    async def command(self, row: Mapping[str, Any]) -> Outcome:
        return await self._answer("command", row)


def _listener(pool: asyncpg.Pool, handler: ScriptedHandler) -> IntakeListener:
    return IntakeListener(pool, handler, "main", poll_interval_s=0.1)  # type: ignore[arg-type]


async def test_claim_next_takes_one_request_oldest_first_across_both_queues(
    pool: asyncpg.Pool,
) -> None:
    """Requests are claimed singly in arrival order, signals and commands interleaved;
    the rest stay new until their turn."""
    repo = Repository(pool)
    [s1] = await _insert_signals(repo, 1)
    c1 = await repo.insert_command("close_position", {"position_id": 1}, "main")
    [s2] = await _insert_signals(repo, 1, None)
    first = await repo.claim_next_request("main")
    assert first is not None
    assert ("signal", s1, "processing") == (first[0], first[1]["id"], first[1]["status"])
    assert [(s1, "processing"), (s2, "new")] == await _statuses(pool, "signals")
    assert [(c1, "new")] == await _statuses(pool, "commands")
    rest = [await repo.claim_next_request("main") for _ in range(3)]
    assert [("command", c1), ("signal", s2), None] == [
        (r[0], r[1]["id"]) if r else None for r in rest
    ]
    assert "main" == (await repo.get_signal(s2) or {}).get("account")


async def test_a_crash_mid_request_interrupts_only_the_request_in_hand(
    pool: asyncpg.Pool,
) -> None:
    """The daemon dies while handling the first of six requests (a close: risk-reducing
    commands are claimed first): only that one was processing, so a restart marks one
    failed and leaves five to run."""
    repo = Repository(pool)
    signals = await _insert_signals(repo, 4)
    commands = [
        await repo.insert_command("close_position", {"position_id": n}, "main") for n in (1, 2)
    ]
    handler = ScriptedHandler()
    handler.gate = asyncio.Event()  # never opened: the first request hangs in hand
    running = asyncio.create_task(_listener(pool, handler).run())
    await asyncio.wait_for(handler.started.wait(), 10)
    running.cancel()  # the crash
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert [("command", commands[0])] == handler.seen
    interrupted = await _listener(pool, ScriptedHandler()).recover_interrupted()
    assert 1 == interrupted
    assert [(i, "new") for i in signals] == await _statuses(pool, "signals")
    assert [(commands[0], "failed"), (commands[1], "new")] == await _statuses(pool, "commands")
    row = await repo.get_command(commands[0])
    assert row is not None and "interrupted by a daemon restart" in row["reason"]


async def test_recover_interrupted_fails_this_accounts_processing_rows_only(
    pool: asyncpg.Pool,
) -> None:
    """Rows left processing by this account's dead daemon end failed with a reason
    pointing at positions and orders; other accounts' rows and finished rows are kept."""
    repo = Repository(pool)
    [mine, done, theirs] = await _insert_signals(repo, 3)
    await pool.execute("UPDATE monitoring.signals SET account = 'other' WHERE id = $1", theirs)
    command = await repo.insert_command("cancel_order", {"order_id": "x"}, "main")
    await pool.execute("UPDATE monitoring.signals SET status = 'processing'")
    await pool.execute("UPDATE monitoring.signals SET status = 'done' WHERE id = $1", done)
    await pool.execute("UPDATE monitoring.commands SET status = 'processing'")
    assert 2 == await _listener(pool, ScriptedHandler()).recover_interrupted()
    assert [(mine, "failed"), (done, "done"), (theirs, "processing")] == await _statuses(
        pool, "signals"
    )
    assert [(command, "failed")] == await _statuses(pool, "commands")
    row = await repo.get_command(command)
    assert row is not None and row["processed_at"] is not None
    assert (
        "interrupted by a daemon restart while processing; check positions and orders for "
        "what it did"
    ) == row["reason"]


async def test_outcome_lines_name_the_request_and_warn_when_refused(pool: asyncpg.Pool) -> None:
    """Each outcome is one line with signal_id / command_id (and position_id when there
    is one): done at info without a reason, rejected and failed at warning with it (the
    close first: risk-reducing commands are claimed before signals)."""
    repo = Repository(pool)
    [opened, broken] = await _insert_signals(repo, 2)
    refused = await repo.insert_command("close_position", {"position_id": 9}, "main")
    handler = ScriptedHandler(
        {
            ("signal", opened): Outcome(DONE, None, {"status": "active"}, 42),
            ("signal", broken): Outcome(FAILED, "venue: paper: no price"),
            ("command", refused): Outcome(REJECTED, "position_id: no such position"),
        }
    )
    listener = _listener(pool, handler)
    with capture_logs() as logs:
        running = asyncio.create_task(listener.run())
        while listener.handled < 3:  # noqa: ASYNC110 - the listener has no "handled" event
            await asyncio.sleep(0.01)
        listener.stop()
        await asyncio.wait_for(running, 10)
    outcomes = [
        {k: v for k, v in e.items() if k != "timestamp"}
        for e in logs
        if e["event"].startswith(("signal_", "command_"))
    ]
    assert [
        {
            "event": "command_rejected",
            "log_level": "warning",
            "command_id": refused,
            "reason": "position_id: no such position",
        },
        {"event": "signal_done", "log_level": "info", "signal_id": opened, "position_id": 42},
        {
            "event": "signal_failed",
            "log_level": "warning",
            "signal_id": broken,
            "reason": "venue: paper: no price",
        },
    ] == outcomes


class FlakyListenPool:
    """The pool, except that the first connection awaited from it (the listener's; the
    repository uses ``async with``) fails LISTEN the way a connection left in a bad
    protocol state by a server restart does."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        return _Acquire(self, self._pool.acquire(*args, **kwargs))

    def spoil(self, conn: Any) -> Any:
        if self.failed:
            return conn
        self.failed += 1
        return _BadListen(conn)

    async def release(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        inner = conn.conn if isinstance(conn, _BadListen) else conn
        return await self._pool.release(inner, *args, **kwargs)


class _BadListen:
    """A pooled connection whose LISTEN fails with asyncpg's InternalClientError."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def add_listener(self, *_: Any) -> None:
        raise asyncpg.InternalClientError(
            "cannot switch to state 11; another operation (2) is in progress"
        )


class _Acquire:
    def __init__(self, owner: FlakyListenPool, inner: Any) -> None:
        self._owner, self._inner = owner, inner

    def __await__(self) -> Any:
        return self._spoiled().__await__()

    async def _spoiled(self) -> Any:
        return self._owner.spoil(await self._inner)

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)


async def test_a_broken_listen_connection_is_replaced_and_intake_keeps_running(
    pool: asyncpg.Pool,
) -> None:
    """LISTEN failing with asyncpg's InternalClientError does not end the intake: the
    listener takes a fresh connection and a NOTIFY still wakes it (polling is off)."""
    flaky = FlakyListenPool(pool)
    handler = ScriptedHandler()
    intake = IntakeListener(flaky, handler, "main", poll_interval_s=3600)  # type: ignore[arg-type]
    running = asyncio.create_task(intake.run())
    try:
        await asyncio.sleep(1.5)  # the first LISTEN fails, the second takes
        [signal] = await _insert_signals(Repository(pool), 1)
        for _ in range(100):
            if handler.seen:
                break
            await asyncio.sleep(0.05)
        assert (1, [("signal", signal)], False) == (flaky.failed, handler.seen, running.done())
    finally:
        intake.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
