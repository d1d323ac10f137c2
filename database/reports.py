"""Read-only SQL for the command line: listings, the performance report, migration status.

The performance figures come from ``monitoring.performance_since(since)`` (migrations
0003, 0006 and 0013), the one entry point behind both the ``monitoring.performance`` view
(``NULL`` = all time, from per-day summaries) and ``report --since 7d`` (from the
positions); tests hold the two to the same numbers. Daily P&L
follows ``monitoring.daily_pnl`` (realised P&L of the executions per UTC day), windowed
on the execution time; all time, it reads the view's per-day summaries.

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

# Over a window: the account's executions themselves (index on account, executed_at; the
# window's partitions alone). All time: the per-day summaries of migration 0013, the
# same sums. Both by the execution's own account, as the daily_pnl view.
DAILY_SQL = """
SELECT (t.executed_at AT TIME ZONE 'UTC')::date                    AS day,
       count(*)                                                    AS trades,
       count(*) FILTER (WHERE t.realized_pnl IS NOT NULL)          AS exits,
       coalesce(sum(t.realized_pnl), 0)                            AS realized_pnl,
       coalesce(sum(t.fee), 0)                                     AS fees
FROM monitoring.trades t
WHERE t.account = $1 AND t.executed_at >= $2
GROUP BY 1
ORDER BY 1
"""
DAILY_ALL_SQL = """
SELECT day, trades, exits, realized_pnl, fees
FROM monitoring.daily_pnl_days
WHERE account = $1
ORDER BY day
"""

FINISHED_SQL = """
SELECT opened_at, closed_at, realized_pnl, symbol
FROM monitoring.positions
WHERE account = $1 AND status = ANY($3::text[]) AND closed_at IS NOT NULL
  AND ($2::timestamptz IS NULL OR closed_at >= $2)
ORDER BY closed_at, id
"""

# Open P&L is net of the entry fees already paid on the open quantity, so that realised
# plus open is what the account would hold if everything were closed at the last price
# (less the exit fees): realised P&L carries its entry fees too.
OPEN_PNL_SQL = """
SELECT count(*)                                        AS positions,
       coalesce(sum(unrealized_pnl - open_entry_fees), 0) AS pnl,
       max(updated_at)                                 AS at,
       array_agg(DISTINCT symbol)                      AS symbols
FROM monitoring.positions
WHERE account = $1 AND status <> ALL($2::text[]) AND quantity > 0
"""


@dataclass(frozen=True, slots=True)
class FinishedTrade:
    """A finished position as the equity chart needs it: when it opened and closed, what
    it realised (net of fees), and its market."""

    opened_at: datetime
    closed_at: datetime
    pnl: Decimal
    symbol: str


@dataclass(frozen=True, slots=True)
class OpenPnl:
    """The open positions' P&L at the last price sample (``at``), net of entry fees."""

    positions: int
    pnl: Decimal
    at: datetime | None
    symbols: tuple[str, ...]


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
    if since is None:
        rows = await pool.fetch(DAILY_ALL_SQL, account)
    else:
        rows = await pool.fetch(DAILY_SQL, account, since)
    cumulative = Decimal(0)
    days: list[dict[str, Any]] = []
    for row in rows:
        cumulative += row["realized_pnl"]
        days.append({**dict(row), "cumulative_pnl": cumulative})
    return days


async def finished_trades(
    pool: asyncpg.Pool, account: str, since: datetime | None
) -> list[FinishedTrade]:
    """``account``'s positions finished since ``since`` (all when None), in closing order:
    the same set, in the same order, as the performance figures' equity curve."""
    rows = await pool.fetch(FINISHED_SQL, account, since, list(FINISHED_STATUSES))
    return [
        FinishedTrade(r["opened_at"], r["closed_at"], r["realized_pnl"], r["symbol"]) for r in rows
    ]


async def open_pnl(pool: asyncpg.Pool, account: str) -> OpenPnl:
    """The P&L of ``account``'s open positions now (as of their last sample)."""
    row = await pool.fetchrow(OPEN_PNL_SQL, account, list(TERMINAL_POSITION_STATUSES))
    symbols = tuple(s for s in (row["symbols"] or ()) if s is not None)
    return OpenPnl(row["positions"], row["pnl"], row["at"], symbols)


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
