"""Read-only SQL for the command line: listings, the performance report, migration status.

The performance figures come from ``monitoring.performance_since(since)`` (migrations
0003 and 0006), the one definition behind both the ``monitoring.performance`` view (``NULL`` = all
time) and ``report --since 7d``; a test holds the two to the same numbers. Daily P&L
follows ``monitoring.daily_pnl`` (realised P&L of the executions per UTC day), windowed
on the execution time.

Every statement is parameterised; nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from database.repository import TERMINAL_ORDER_STATUSES, TERMINAL_POSITION_STATUSES

# Positions whose result is realised: the view's definition of a finished trade.
FINISHED_STATUSES = ("closed", "rolled_back")

PERFORMANCE_SQL = "SELECT * FROM monitoring.performance_since($2) WHERE account = $1"

# What the figures are for an account with nothing finished in the window.
NO_TRADES: dict[str, Any] = {
    "closed_positions": 0,
    "rolled_back_positions": 0,
    "wins": 0,
    "losses": 0,
    "win_rate": None,
    "profit_factor": None,
    "avg_win": None,
    "avg_loss": None,
    "total_pnl": Decimal(0),
    "total_fees": Decimal(0),
    "max_drawdown": Decimal(0),
    "first_closed_at": None,
    "last_closed_at": None,
}

DAILY_SQL = """
SELECT (t.executed_at AT TIME ZONE 'UTC')::date                    AS day,
       count(*)                                                    AS trades,
       count(*) FILTER (WHERE t.realized_pnl IS NOT NULL)          AS exits,
       coalesce(sum(t.realized_pnl), 0)                            AS realized_pnl,
       coalesce(sum(t.fee), 0)                                     AS fees
FROM monitoring.trades t
JOIN monitoring.positions p ON p.id = t.position_id
WHERE p.account = $1 AND ($2::timestamptz IS NULL OR t.executed_at >= $2)
GROUP BY 1
ORDER BY 1
"""

EQUITY_SQL = """
SELECT closed_at, realized_pnl
FROM monitoring.positions
WHERE account = $1 AND status = ANY($3::text[]) AND closed_at IS NOT NULL
  AND ($2::timestamptz IS NULL OR closed_at >= $2)
ORDER BY closed_at, id
"""


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The cumulative realised P&L right after a position finished."""

    at: datetime
    pnl: Decimal
    equity: Decimal


async def performance(pool: asyncpg.Pool, account: str, since: datetime | None) -> dict[str, Any]:
    """The ``monitoring.performance`` figures of ``account`` over positions finished since
    ``since`` (all when None)."""
    row = await pool.fetchrow(PERFORMANCE_SQL, account, since)
    figures = (
        dict(NO_TRADES) if row is None else {k: v for k, v in dict(row).items() if k != "account"}
    )
    trades = figures["closed_positions"] + figures["rolled_back_positions"]
    return {"trades": trades, **figures}


async def daily_pnl(
    pool: asyncpg.Pool, account: str, since: datetime | None
) -> list[dict[str, Any]]:
    """Realised P&L and fees per UTC day of ``account``'s executions since ``since``, with
    the running total."""
    rows = await pool.fetch(DAILY_SQL, account, since)
    cumulative = Decimal(0)
    days: list[dict[str, Any]] = []
    for row in rows:
        cumulative += row["realized_pnl"]
        days.append({**dict(row), "cumulative_pnl": cumulative})
    return days


async def equity_curve(
    pool: asyncpg.Pool, account: str, since: datetime | None
) -> list[EquityPoint]:
    """Cumulative realised P&L after each finished position, in closing order."""
    rows = await pool.fetch(EQUITY_SQL, account, since, list(FINISHED_STATUSES))
    equity = Decimal(0)
    points: list[EquityPoint] = []
    for row in rows:
        equity += row["realized_pnl"]
        points.append(EquityPoint(row["closed_at"], row["realized_pnl"], equity))
    return points


async def list_positions(
    pool: asyncpg.Pool, account: str, *, include_terminal: bool
) -> list[dict[str, Any]]:
    """``account``'s positions, oldest first: open ones, or all with ``include_terminal``."""
    rows = await pool.fetch(
        "SELECT * FROM monitoring.positions WHERE account = $1 "
        "AND ($2 OR status <> ALL($3::text[])) ORDER BY id",
        account,
        include_terminal,
        list(TERMINAL_POSITION_STATUSES),
    )
    return [dict(r) for r in rows]


async def list_orders(
    pool: asyncpg.Pool, account: str, *, include_terminal: bool
) -> list[dict[str, Any]]:
    """``account``'s orders, oldest first: live ones, or all with ``include_terminal``."""
    rows = await pool.fetch(
        "SELECT * FROM monitoring.orders WHERE account = $1 "
        "AND ($2 OR status <> ALL($3::text[])) ORDER BY created_at, id",
        account,
        include_terminal,
        list(TERMINAL_ORDER_STATUSES),
    )
    return [dict(r) for r in rows]


async def schema_ready(pool: asyncpg.Pool) -> bool:
    """Whether the intake and audit tables exist (the daemon or ``migrate`` has run)."""
    ready = await pool.fetchval(
        "SELECT to_regclass('monitoring.signals') IS NOT NULL "
        "AND to_regclass('monitoring.commands') IS NOT NULL "
        "AND to_regclass('monitoring.positions') IS NOT NULL"
    )
    return bool(ready)


async def applied_migrations(pool: asyncpg.Pool) -> dict[str, str]:
    """Applied migration names and their checksums (empty when none ever ran)."""
    exists = await pool.fetchval("SELECT to_regclass('monitoring.schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await pool.fetch("SELECT name, checksum FROM monitoring.schema_migrations")
    return {r["name"]: r["checksum"] for r in rows}


RECENT_SQL = """
SELECT id, symbol, side, status, traded_quantity, entry_price, exit_price, realized_pnl,
       fees, exit_reason, closed_at
FROM monitoring.positions
WHERE account = $1 AND status = ANY($3::text[]) AND closed_at IS NOT NULL
  AND ($2::timestamptz IS NULL OR closed_at >= $2)
ORDER BY closed_at DESC, id DESC
LIMIT $4
"""

_HUNDRED = Decimal(100)


async def recent_trades(
    pool: asyncpg.Pool, account: str, since: datetime | None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest finished positions since ``since``, newest first, with the size they
    traded and their return: realised P&L (fees included) over the entry notional."""
    rows = await pool.fetch(RECENT_SQL, account, since, list(FINISHED_STATUSES), limit)
    out: list[dict[str, Any]] = []
    for row in rows:
        trade = dict(row)
        notional = (row["entry_price"] or 0) * row["traded_quantity"]
        trade["return_pct"] = row["realized_pnl"] / notional * _HUNDRED if notional else None
        out.append(trade)
    return out
