"""The intake queues: claiming with SKIP LOCKED and recording outcomes."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import pytest

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
