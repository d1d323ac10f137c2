"""``main.py positions`` and ``main.py orders``: what is open now, or everything with ``--all``.

Plain-text output is an aligned table of the columns a trader scans (ids, market, side,
status, sizes, prices, P&L, ages); numbers are right-aligned, never in exponent form, and
rounded to the market's precision as the account's daemon published it (cli/numbers.py;
as stored, trailing zeros dropped, when unknown). ``--json`` prints every column of every
row as a JSON list: ``Decimal`` as a string (no precision lost), times as ISO-8601 UTC.
Only ``TRADER_ACCOUNT``'s rows are listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from cli.connect import EXIT_OK
from cli.numbers import precisions, rounded_row
from core.money import utcnow
from database.daemons import last_daemon
from database.reports import list_orders, list_positions

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def plain_number(value: Decimal | None) -> str:
    """``60012.50000`` -> ``60012.5``; ``1E+2`` -> ``100``; None -> ``-``."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def age(since: datetime | None, now: datetime) -> str:
    """A short age: ``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    if since is None:
        return "-"
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell; columns of numbers (or ``-``) right-aligned so
    their digits line up."""
    body = [list(r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    numeric = [
        any(_NUMBER.match(r[i]) for r in body)
        and all(_NUMBER.match(r[i]) or r[i] == "-" for r in body)
        for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in body)])


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


POSITION_HEADERS = (
    "ID",
    "SYMBOL",
    "SIDE",
    "STATUS",
    "QTY",
    "SIZE",
    "ENTRY",
    "PRICE",
    "STOP",
    "TP",
    "UPNL",
    "RPNL",
    "FEES",
    "OPENED",
    "CLOSED",
    "EXIT",
)


def position_cells(row: Mapping[str, Any], now: datetime) -> list[str]:
    """One table line of a position. PRICE is the exit price once it is closed; QTY is
    what is still open, SIZE the most it held (what a closed position traded)."""
    price = row["exit_price"] if row["closed_at"] is not None else row["current_price"]
    return [
        str(row["id"]),
        row["symbol"],
        row["side"],
        row["status"],
        plain_number(row["quantity"]),
        plain_number(row.get("traded_quantity")),
        plain_number(row["entry_price"]),
        plain_number(price),
        plain_number(row["stop_loss_price"]),
        plain_number(row["take_profit_price"]),
        plain_number(row["unrealized_pnl"]),
        plain_number(row["realized_pnl"]),
        plain_number(row["fees"]),
        age(row["opened_at"], now),
        age(row["closed_at"], now),
        _text(row["exit_reason"]),
    ]


ORDER_HEADERS = (
    "ID",
    "CLIENT ORDER ID",
    "POS",
    "SYMBOL",
    "SIDE",
    "TYPE",
    "PURPOSE",
    "STATUS",
    "SIZE",
    "FILLED",
    "PRICE",
    "TRIGGER",
    "AVG",
    "MODE",
    "AGE",
)


def _trigger(row: Mapping[str, Any]) -> str:
    """The level that fires the order: trigger price, or a trailing distance."""
    if row["trigger_price"] is not None:
        return plain_number(row["trigger_price"])
    if row["trail_percent"] is not None:
        return f"trail {plain_number(row['trail_percent'])}%"
    if row["trail_amount"] is not None:
        return f"trail {plain_number(row['trail_amount'])}"
    return "-"


def order_cells(row: Mapping[str, Any], now: datetime) -> list[str]:
    """One table line of an order."""
    price = row["price"] if row["price"] is not None else row["limit_price"]
    return [
        str(row["id"]),
        row["client_order_id"],
        _text(row["position_id"]),
        row["symbol"],
        row["side"],
        row["type"],
        row["purpose"],
        row["status"],
        plain_number(row["size"]),
        plain_number(row["filled"]),
        plain_number(price),
        _trigger(row),
        plain_number(row["average_price"]),
        "emulated" if row["emulated"] else "native",
        age(row["created_at"], now),
    ]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    """JSON with Decimals as strings and times as ISO-8601 UTC."""
    return json.dumps(value, default=_jsonable, indent=2)


def _print(
    rows: list[dict[str, Any]],
    as_json: bool,
    headers: Sequence[str],
    cells: Any,
    empty: str,
    markets: Any = None,
) -> int:
    if as_json:
        print(to_json(rows))
    elif not rows:
        print(empty)
    else:
        now = utcnow()
        known = precisions(markets)
        shown = (rounded_row(r, known.get(r["symbol"])) for r in rows)
        print(render_table(headers, (cells(r, now) for r in shown)))
    return EXIT_OK


async def _markets(pool: asyncpg.Pool, account: str) -> Any:
    """The markets' precision the account's daemon published (live or not)."""
    daemon = await last_daemon(pool, account)
    return daemon["markets"] if daemon is not None else None


async def positions_command(
    pool: asyncpg.Pool, account: str, *, everything: bool, as_json: bool
) -> int:
    """``main.py positions [--all] [--json]``."""
    rows = await list_positions(pool, account, include_terminal=everything)
    empty = "no positions" if everything else "no open positions"
    markets = await _markets(pool, account)
    return _print(rows, as_json, POSITION_HEADERS, position_cells, empty, markets)


async def orders_command(
    pool: asyncpg.Pool, account: str, *, everything: bool, as_json: bool
) -> int:
    """``main.py orders [--all] [--json]``."""
    rows = await list_orders(pool, account, include_terminal=everything)
    empty = "no orders" if everything else "no live orders"
    markets = await _markets(pool, account)
    return _print(rows, as_json, ORDER_HEADERS, order_cells, empty, markets)
