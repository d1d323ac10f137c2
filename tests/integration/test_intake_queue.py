"""Claiming intake rows (database/intake_queue.py): risk-reducing commands first, junk
rejected a batch at a time with the handler's own words, one row processing at most."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from core.intake import IntakeHandler
from database.intake_queue import claim

BTC = "BTC/USDT:USDT"


def _handler() -> IntakeHandler:
    # Screening needs only the account and the symbols; nothing is traded here.
    return IntakeHandler("main", None, None, None, symbols=[BTC])  # type: ignore[arg-type]


async def _statuses(pool: asyncpg.Pool, table: str) -> dict[int, tuple[str, Any]]:
    rows = await pool.fetch(f"SELECT id, status, reason FROM monitoring.{table} ORDER BY id")
    return {r["id"]: (r["status"], r["reason"]) for r in rows}


async def test_close_behind_junk_is_claimed_first_and_junk_rejected_in_bulk(
    pool: asyncpg.Pool,
) -> None:
    """600 junk signals and commands then a valid close: the first claim rejects the
    junk it read and takes the close; every junk row ends rejected naming its field and
    never more than one row is processing."""
    await pool.execute(
        "INSERT INTO monitoring.signals (account, symbol, side, amount) "
        "SELECT 'main', 'ETH/USDT:USDT', 'long', 1 FROM generate_series(1, 300)"
    )
    await pool.execute(
        "INSERT INTO monitoring.commands (account, kind, payload) "
        "SELECT 'main', 'place_order', '{}'::jsonb FROM generate_series(1, 300)"
    )
    close = await pool.fetchval(
        "INSERT INTO monitoring.commands (account, kind, payload) "
        "VALUES ('main', 'close_position', '{\"position_id\": 7}') RETURNING id"
    )
    async with pool.acquire() as conn:
        first = await claim(conn, "main", _handler().screen, batch=256)
    assert first.taken is not None
    assert ("command", close, "processing") == (
        first.taken[0],
        first.taken[1]["id"],
        first.taken[1]["status"],
    )
    assert 1 == await pool.fetchval(
        "SELECT (SELECT count(*) FROM monitoring.signals WHERE status = 'processing') "
        "+ (SELECT count(*) FROM monitoring.commands WHERE status = 'processing')"
    )
    handler = _handler()
    while True:
        async with pool.acquire() as conn:
            work = await claim(conn, "main", handler.screen, batch=256)
        if not work.rejected and work.taken is None:
            break
    signals = await _statuses(pool, "signals")
    commands = await _statuses(pool, "commands")
    reason = (
        "symbol: 'ETH/USDT:USDT' is not among the symbols this daemon trades "
        f"(TRADER_SYMBOLS={BTC})"
    )
    assert {("rejected", reason)} == set(signals.values())
    assert {("rejected", "symbol: is required and must be a market symbol")} == {
        v for k, v in commands.items() if k != close
    }


async def test_rejection_words_are_the_handlers_for_the_same_row(pool: asyncpg.Pool) -> None:
    """A row rejected in bulk carries exactly the reason the handler itself returns for
    that row; a valid signal behind it stays new until claimed, then is the one taken."""
    bad = await pool.fetchval(
        "INSERT INTO monitoring.signals (account, symbol, side, amount) "
        "VALUES ('main', 'BTC/USDT:USDT', 'long', -1) RETURNING id"
    )
    good = await pool.fetchval(
        "INSERT INTO monitoring.signals (account, symbol, side, amount) "
        "VALUES (NULL, 'BTC/USDT:USDT', 'long', 0.01) RETURNING id"
    )
    handler = _handler()
    row = dict(await pool.fetchrow("SELECT * FROM monitoring.signals WHERE id = $1", bad))
    expected = await handler.signal(row)
    async with pool.acquire() as conn:
        work = await claim(conn, "main", handler.screen)
    assert work.taken is not None and good == work.taken[1]["id"]
    assert "main" == work.taken[1]["account"]
    stored = await _statuses(pool, "signals")
    assert (expected.status, expected.reason) == stored[bad]
    assert ("rejected", "amount: must be greater than 0 (got -1)") == stored[bad]
    assert Decimal("0.01") == work.taken[1]["amount"]


async def test_other_accounts_rows_are_neither_screened_nor_taken(pool: asyncpg.Pool) -> None:
    """Junk of another account is left alone: its daemon (or the waiting view) owns it."""
    theirs = await pool.fetchval(
        "INSERT INTO monitoring.signals (account, symbol, side, amount) "
        "VALUES ('someoneelse', 'NOPE', 'long', -1) RETURNING id"
    )
    async with pool.acquire() as conn:
        work = await claim(conn, "main", _handler().screen)
    assert ([], None) == (work.rejected, work.taken)
    assert ("new", None) == (await _statuses(pool, "signals"))[theirs]
