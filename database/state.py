"""What the database knows that a restarted daemon needs: open positions and their orders.

Read once at start-up, before trading, so awaiting the database here is fine.
"""

from __future__ import annotations

import asyncpg

from core.order_model import Order
from core.position_model import Position
from core.restore import order_from_row, position_from_row

_TERMINAL_POSITIONS = ("closed", "rolled_back", "failed")
_TERMINAL_ORDERS = ("FILLED", "CANCELLED", "REJECTED", "EXPIRED", "FAILED")


async def load_snapshot(
    pool: asyncpg.Pool, account: str, exchange: str
) -> tuple[list[Position], list[Order]]:
    """Non-terminal positions of ``account`` on ``exchange``; every order of those; and
    the other live orders of the account (manual ones, emulated or native)."""
    positions = await pool.fetch(
        "SELECT * FROM monitoring.positions WHERE account = $1 AND exchange = $2"
        " AND status <> ALL($3::text[]) ORDER BY id",
        account,
        exchange,
        list(_TERMINAL_POSITIONS),
    )
    ids = [row["id"] for row in positions]
    orders = await pool.fetch(
        "SELECT * FROM monitoring.orders WHERE account = $1 AND exchange = $2"
        " AND (position_id = ANY($3::bigint[]) OR status <> ALL($4::text[])) ORDER BY id",
        account,
        exchange,
        ids,
        list(_TERMINAL_ORDERS),
    )
    return [position_from_row(r) for r in positions], [order_from_row(r) for r in orders]
