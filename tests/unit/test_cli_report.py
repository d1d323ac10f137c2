"""The report's text form and its window label."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from cli.report import build_report, format_report, window_label

UNTIL = datetime(2026, 5, 8, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "label"),
    [
        (timedelta(days=7), "1w"),
        (timedelta(days=3), "3d"),
        (timedelta(hours=24), "1d"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=30), "30m"),
        (timedelta(seconds=45), "45s"),
    ],
)
def test_window_label_uses_the_largest_whole_unit(window: timedelta, label: str) -> None:
    """The window is named as a person would type it."""
    assert label == window_label(window)


def test_text_report_shows_every_figure() -> None:
    """Trades, win rate (as a percent), profit factor, averages, P&L, fees, drawdown and
    the daily table all appear."""
    summary = {
        "trades": 3,
        "closed_positions": 3,
        "rolled_back_positions": 0,
        "wins": 2,
        "losses": 1,
        "win_rate": Decimal("0.6667"),
        "profit_factor": Decimal("2.5000"),
        "avg_win": Decimal("12.50000000"),
        "avg_loss": Decimal("-10.00000000"),
        "total_pnl": Decimal("15.0"),
        "total_fees": Decimal("1.2"),
        "max_drawdown": Decimal("10"),
        "first_closed_at": None,
        "last_closed_at": None,
    }
    days = [
        {
            "day": date(2026, 5, 7),
            "trades": 6,
            "exits": 3,
            "realized_pnl": Decimal("15.0"),
            "fees": Decimal("1.2"),
            "cumulative_pnl": Decimal("15.0"),
        }
    ]
    report = build_report("main", UNTIL - timedelta(days=7), UNTIL, summary, days)
    text = format_report(report)
    for expected in (
        "account main, last 1w (since 2026-05-01 12:00 UTC)",
        "trades          3 (3 closed, 0 rolled back)",
        "win rate        66.67% (2 won, 1 lost)",
        "profit factor   2.5",
        "average win     12.5",
        "average loss    -10",
        "total P&L       15",
        "fees            1.2",
        "max drawdown    10",
        "2026-05-07      6      3   15   1.2          15",
    ):
        assert expected in text.splitlines()
    assert Decimal("1.2") == report["fees"]
    assert "total_fees" not in report


def test_daily_column_counts_fills_not_trades() -> None:
    """The daily table counts executions (entry and exit are two) and says FILLS, in the
    text and in JSON, so it never reads as a second, different count of trades."""
    summary = {"trades": 1, "closed_positions": 1, "rolled_back_positions": 0, "wins": 0,
               "losses": 1, "total_fees": Decimal("0.5")}  # fmt: skip
    days = [
        {
            "day": date(2026, 5, 7),
            "trades": 2,
            "exits": 1,
            "realized_pnl": Decimal("-10"),
            "fees": Decimal("0.5"),
            "cumulative_pnl": Decimal("-10"),
        }
    ]
    report = build_report("main", None, UNTIL, summary, days)
    lines = format_report(report).splitlines()
    assert "trades          1 (1 closed, 0 rolled back)" in lines
    assert "DAY         FILLS  EXITS  P&L  FEES  CUMULATIVE" in lines
    assert [
        {
            "day": date(2026, 5, 7),
            "fills": 2,
            "exits": 1,
            "realized_pnl": Decimal("-10"),
            "fees": Decimal("0.5"),
            "cumulative_pnl": Decimal("-10"),
        }
    ] == report["daily"]
