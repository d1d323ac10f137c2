"""``main.py report [--since 7d] [--json] [--plot FILE.png|.svg]``: how the trading went.

The figures are those of the ``monitoring.performance`` and ``monitoring.daily_pnl``
views (database/reports.py computes them over a window): trades (finished positions),
win rate, profit factor, average win / loss, total realised P&L, fees, max drawdown of
the realised equity curve, and per UTC day the fills (executions: entries and exits),
the exits among them and their realised P&L. ``--plot FILE.png|FILE.svg`` draws the
equity curve, the open P&L now, the drawdown and each trade (cli/equity_chart.py says
what, cli/plot.py draws it).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from cli.connect import EXIT_OK, CommandFailed
from cli.equity_chart import build_equity_chart
from cli.listings import plain_number, render_table, to_json
from core.money import utcnow
from database.reports import daily_pnl, finished_trades, open_pnl, performance, recent_trades

SUMMARY_KEYS = (
    "trades",
    "closed_positions",
    "rolled_back_positions",
    "wins",
    "losses",
    "win_rate",
    "profit_factor",
    "avg_win",
    "avg_loss",
    "total_pnl",
    "total_fees",
    "max_drawdown",
    "first_closed_at",
    "last_closed_at",
)


def build_report(
    account: str,
    since: datetime | None,
    until: datetime,
    summary: dict[str, Any],
    days: list[dict[str, Any]],
) -> dict[str, Any]:
    """The report as one mapping (what ``--json`` prints)."""
    report: dict[str, Any] = {"account": account, "since": since, "until": until}
    report.update({k: summary.get(k) for k in SUMMARY_KEYS})
    report["fees"] = report.pop("total_fees")
    # A day counts executions (an entry and its exit are two), so it says "fills": the
    # word "trades" is taken by the finished positions of the headline.
    report["daily"] = [
        {("fills" if k == "trades" else k): v for k, v in day.items()} for day in days
    ]
    return report


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{plain_number((value * 100).quantize(Decimal('0.01')))}%"


def window_label(window: timedelta) -> str:
    """``7d``, ``24h``, ``30m`` or ``45s``: the largest unit that divides the window."""
    total = int(window.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if total % size == 0:
            return f"{total // size}{unit}"
    return f"{total}s"


def period_label(since: datetime | None, until: datetime) -> str:
    """``last 1w (since 2026-05-01 12:00 UTC)`` or ``all time``."""
    if since is None:
        return "all time"
    return f"last {window_label(until - since)} (since {since:%Y-%m-%d %H:%M} UTC)"


def format_report(report: dict[str, Any]) -> str:
    """The report as text: a summary block and the daily table."""
    span = period_label(report["since"], report["until"])
    lines = [
        f"account {report['account']}, {span}",
        "",
        f"trades          {report['trades']} ({report['closed_positions']} closed, "
        f"{report['rolled_back_positions']} rolled back)",
        f"win rate        {_pct(report['win_rate'])} ({report['wins']} won, "
        f"{report['losses']} lost)",
        f"profit factor   {plain_number(report['profit_factor'])}",
        f"average win     {plain_number(report['avg_win'])}",
        f"average loss    {plain_number(report['avg_loss'])}",
        f"total P&L       {plain_number(report['total_pnl'])}",
        f"fees            {plain_number(report['fees'])}",
        f"max drawdown    {plain_number(report['max_drawdown'])}",
    ]
    if report["daily"]:
        headers = ("DAY", "FILLS", "EXITS", "P&L", "FEES", "CUMULATIVE")
        rows = [
            (
                d["day"].isoformat(),
                str(d["fills"]),
                str(d["exits"]),
                plain_number(d["realized_pnl"]),
                plain_number(d["fees"]),
                plain_number(d["cumulative_pnl"]),
            )
            for d in report["daily"]
        ]
        table = render_table(headers, rows)
        lines += ["", "daily P&L (UTC days)", table]
    if report.get("recent"):
        lines += ["", "recent trades (newest first)", _recent_table(report["recent"])]
    return "\n".join(lines)


def _recent_table(recent: list[dict[str, Any]]) -> str:
    headers = ("ID", "SYMBOL", "SIDE", "SIZE", "ENTRY", "EXIT", "P&L", "RETURN", "EXIT BY")
    rows = [
        (
            str(t["id"]),
            t["symbol"],
            t["side"],
            plain_number(t["traded_quantity"]),
            plain_number(t["entry_price"]),
            plain_number(t["exit_price"]),
            plain_number(t["realized_pnl"]),
            "-" if t["return_pct"] is None else f"{t['return_pct']:.2f}%",
            t["exit_reason"] or "-",
        )
        for t in recent
    ]
    return render_table(headers, rows)


async def _plot(
    pool: asyncpg.Pool, path: Path, account: str, venue: str, since: datetime | None,
    until: datetime,
) -> None:  # fmt: skip
    """Draw the report's chart to ``path``; a file that cannot be written is one line."""
    from cli.plot import write_chart  # matplotlib adds 0.2-0.5 s of import: only for --plot

    chart = build_equity_chart(
        await finished_trades(pool, account, since),
        await open_pnl(pool, account),
        account=account,
        venue=venue,
        period=period_label(since, until),
        since=since,
        until=until,
    )
    try:
        write_chart(path, chart)
    except OSError as exc:
        raise CommandFailed(
            f"argument --plot: cannot write {path}: {exc.strerror or exc}"
        ) from None


async def report_command(
    pool: asyncpg.Pool,
    account: str,
    *,
    venue: str,
    window: timedelta | None,
    as_json: bool,
    plot: Path | None,
) -> int:
    """Compute, print, and optionally plot."""
    until = utcnow()
    since = until - window if window else None
    summary = await performance(pool, account, since)
    days = await daily_pnl(pool, account, since)
    report = build_report(account, since, until, summary, days)
    report["recent"] = await recent_trades(pool, account, since)
    if plot is not None:
        await _plot(pool, plot, account, venue, since, until)
        report["plot"] = str(plot)
    print(to_json(report) if as_json else format_report(report))
    if plot is not None and not as_json:
        print(f"chart written to {plot}")
    return EXIT_OK
