"""Migration 0011: closed positions recorded before it get their traded size back from
their entry-side trades."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg

from database.migrate import MIGRATIONS_DIR, migrate
from tests.e2e.conftest import fresh_db_url  # noqa: F401  (an empty database of its own)


async def test_migration_backfills_the_traded_size_of_closed_rows(
    fresh_db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A position closed before 0011 (quantity 0) gets traded_quantity = its entry fills."""
    empty_db_url = fresh_db_url
    before = tmp_path / "before"
    before.mkdir()
    for sql in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if sql.name < "0011":
            shutil.copy(sql, before / sql.name)
    await migrate(empty_db_url, before)
    conn = await asyncpg.connect(empty_db_url)
    try:
        await conn.execute(
            "INSERT INTO monitoring.positions (id, account, exchange, symbol, side, status,"
            " quantity) VALUES (7, 'main', 'paper', 'BTC/USDT:USDT', 'long', 'closed', 0)"
        )
        fills = (("a", "buy", "0.01"), ("b", "buy", "0.02"), ("c", "sell", "0.03"))
        for trade_id, side, qty in fills:
            await conn.execute(
                "INSERT INTO monitoring.trades (position_id, account, exchange, symbol, side,"
                " order_type, quantity, price, executed_qty, trade_id, executed_at)"
                " VALUES (7, 'main', 'paper', 'BTC/USDT:USDT', $1, 'MARKET', $2::numeric,"
                " 60000, $2::numeric, $3, now())",
                side,
                qty,
                trade_id,
            )
    finally:
        await conn.close()
    await migrate(empty_db_url)
    conn = await asyncpg.connect(empty_db_url)
    try:
        row = await conn.fetchrow(
            "SELECT quantity, traded_quantity FROM monitoring.positions WHERE id = 7"
        )
    finally:
        await conn.close()
    assert (0, "0.03") == (row["quantity"], str(row["traded_quantity"]))
