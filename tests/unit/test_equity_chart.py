"""The report chart's content, computed from a list of trades: equity, drawdown, markers,
open P&L, title text, x-limits and money formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cli.equity_chart import (
    EMPTY_SPAN,
    MARGIN,
    MIN_SPAN,
    EquityChart,
    build_equity_chart,
    common_currency,
    money,
    money_places,
    percent,
    settlement_currency,
)
from database.reports import FinishedTrade, OpenPnl

UNTIL = datetime(2026, 5, 8, 15, 0, tzinfo=UTC)
WEEK_AGO = UNTIL - timedelta(days=7)
T0 = datetime(2026, 5, 8, 13, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"


def trade(
    close_min: int, pnl: str, open_min: int | None = None, symbol: str = BTC
) -> FinishedTrade:
    """A trade opened at ``open_min`` (default 5 minutes before its close) after T0."""
    opened = T0 + timedelta(minutes=close_min - 5 if open_min is None else open_min)
    return FinishedTrade(opened, T0 + timedelta(minutes=close_min), Decimal(pnl), symbol)


SESSION = [trade(10, "10"), trade(20, "-4"), trade(30, "-8"), trade(40, "20"), trade(50, "0")]


def chart(
    trades: list[FinishedTrade],
    open_pnl: OpenPnl | None = None,
    since: datetime | None = WEEK_AGO,
    until: datetime = UNTIL,
) -> EquityChart:
    return build_equity_chart(
        trades, open_pnl, account="main", venue="paper", period="last 1w", since=since,
        until=until,
    )  # fmt: skip


def test_equity_steps_from_zero_by_each_trades_pnl() -> None:
    """The curve starts at 0 at the first entry and after each close is the running sum of
    realised P&L, as Decimal."""
    c = chart(SESSION)
    assert [Decimal(v) for v in ("0", "10", "6", "-2", "18", "18")] == list(c.equity)
    assert all(isinstance(v, Decimal) for v in c.equity + c.drawdown)
    assert [T0 + timedelta(minutes=m) for m in (5, 10, 20, 30, 40, 50)] == list(c.times)
    assert Decimal(18) == c.total_pnl


def test_drawdown_is_the_fall_from_the_best_level_so_far() -> None:
    """Drawdown is 0 at a new high and equity minus the peak below it; the deepest is the
    max drawdown (10 -> -2 is 12)."""
    c = chart(SESSION)
    assert [Decimal(v) for v in ("0", "0", "-4", "-12", "0", "0")] == list(c.drawdown)
    assert Decimal(12) == c.max_drawdown


def test_drawdown_counts_from_zero_when_the_first_trade_loses() -> None:
    """A losing start is a drawdown from the starting 0, as in the performance figures."""
    c = chart([trade(10, "-5"), trade(20, "3")])
    assert [Decimal(v) for v in ("0", "-5", "-2")] == list(c.drawdown)
    assert Decimal(5) == c.max_drawdown


def test_each_closed_trade_has_a_marker_at_its_close_coloured_by_outcome() -> None:
    """One marker per trade, at its close time and the equity after it; win, loss or flat
    by the sign of its P&L."""
    c = chart(SESSION)
    assert [
        (T0 + timedelta(minutes=m), Decimal(e), outcome)
        for m, e, outcome in (
            (10, 10, "win"), (20, 6, "loss"), (30, -2, "loss"), (40, 18, "win"), (50, 18, "flat"),
        )
    ] == [(m.at, m.equity, m.outcome) for m in c.markers]  # fmt: skip


def test_title_names_account_venue_period_and_the_headline_figures() -> None:
    """The title says whose account on which venue over which period; the headline is the
    total; the line under it win rate (with counts) and max drawdown, in the currency."""
    c = chart(SESSION)
    assert "main  ·  paper  ·  last 1w" == c.title
    assert "total P&L +18.00 USDT" == c.headline
    assert "win rate 40% (2 won, 2 lost of 5 trades)  ·  max drawdown 12.00 USDT" == c.subtitle
    assert Decimal("0.4") == c.win_rate
    assert c.caption.startswith("main  ·  paper  ·  last 1w: total P&L +18.00 USDT; win rate")


def test_x_axis_fits_the_trades_not_the_window() -> None:
    """With --since 7d and trades over 45 minutes, the x-axis runs from the first entry to
    the last close, plus the margin, not over the week."""
    lo, hi = chart(SESSION).x_limits
    span = timedelta(minutes=45)
    assert (
        T0 + timedelta(minutes=5) - span * MARGIN,
        T0 + timedelta(minutes=50) + span * MARGIN,
    ) == (
        lo,
        hi,
    )
    assert hi - lo < timedelta(hours=1)


def test_a_trade_opened_before_the_window_starts_the_axis_at_the_window() -> None:
    """An entry before --since does not stretch the axis back past the window's start."""
    since = T0 + timedelta(minutes=30)
    c = chart([trade(40, "5", open_min=-600)], since=since)
    assert since == c.times[0]
    assert since - timedelta(minutes=10) * MARGIN == c.x_limits[0]


def test_a_very_short_session_is_widened_to_the_minimum_span() -> None:
    """One trade of 20 seconds: the axis spans at least MIN_SPAN around it, plus margin."""
    opened = T0
    c = chart([FinishedTrade(opened, opened + timedelta(seconds=20), Decimal(1), BTC)])
    lo, hi = c.x_limits
    assert MIN_SPAN * (1 + 2 * MARGIN) == hi - lo
    assert lo < opened < opened + timedelta(seconds=20) < hi
    assert hi == c.curve_end  # with nothing open, the last level runs to the edge


def test_open_pnl_is_a_last_point_off_the_realised_curve() -> None:
    """Open positions: a point at the sample time at realised total + open P&L, the axis
    reaching it, and the figures line saying how much and in how many positions."""
    sampled = T0 + timedelta(minutes=70)
    c = chart(SESSION, OpenPnl(2, Decimal("-3.5"), sampled, (BTC, "ETH/USDT:USDT")))
    assert c.open_point is not None
    assert (sampled, Decimal(18), Decimal("14.5"), Decimal("-3.5"), 2) == (
        c.open_point.at,
        c.open_point.realised,
        c.open_point.equity,
        c.open_point.pnl,
        c.open_point.positions,
    )
    assert sampled == c.curve_end
    assert sampled + timedelta(minutes=65) * MARGIN == c.x_limits[1]
    assert c.subtitle.endswith("  ·  open -3.50 USDT (2 positions)")
    assert Decimal(18) == c.total_pnl  # the headline stays realised
    assert Decimal(12) == c.max_drawdown


def test_no_open_position_means_no_open_point() -> None:
    """Zero open positions (or no figures) draw no open point and say nothing of it."""
    for nothing in (None, OpenPnl(0, Decimal(0), None, ())):
        c = chart(SESSION, nothing)
        assert c.open_point is None
        assert "open" not in c.subtitle


def test_no_trades_shows_the_last_day_or_the_shorter_window() -> None:
    """Nothing finished: a flat zero line over the last day (or the window when shorter),
    and the figures line says there were no trades."""
    c = chart([])
    assert (Decimal(0),) == c.equity
    assert "no finished trades in this period" == c.subtitle
    assert "total P&L +0.00" == c.headline  # no market, so no currency to name
    pad = EMPTY_SPAN * MARGIN
    assert (UNTIL - EMPTY_SPAN - pad, UNTIL + pad) == c.x_limits
    short = chart([], since=UNTIL - timedelta(hours=2))
    assert UNTIL - timedelta(hours=2) - timedelta(hours=2) * MARGIN == short.x_limits[0]
    assert short.win_rate is None


def test_only_open_positions_start_the_curve_at_their_sample() -> None:
    """No finished trade but an open position: the curve is 0 then the open point."""
    sampled = UNTIL - timedelta(minutes=1)
    c = chart([], OpenPnl(1, Decimal("7.25"), sampled, (BTC,)))
    assert c.open_point is not None and c.open_point.equity == Decimal("7.25")
    assert sampled == c.times[0]
    assert "no finished trades in this period  ·  open +7.25 USDT (1 position)" == c.subtitle


def test_mixed_settlement_currencies_name_no_unit() -> None:
    """P&L summed over USDT and BTC settled markets is not in one currency: no unit."""
    c = chart([trade(10, "1"), trade(20, "2", symbol="BTC/USD:BTC")])
    assert c.currency is None
    assert "total P&L +3.00" == c.headline


@pytest.mark.parametrize(
    ("symbol", "currency"),
    [
        ("BTC/USDT:USDT", "USDT"),
        ("BTC/USD:BTC", "BTC"),
        ("BTC/USDT:USDT-250627", "USDT"),
        ("ETH/USDC", "USDC"),
        ("BTCUSDT", None),
    ],
)
def test_settlement_currency_of_a_symbol(symbol: str, currency: str | None) -> None:
    """Contracts settle in the part after ':', spot in the quote; a bare id says nothing."""
    assert currency == settlement_currency(symbol)
    assert currency == common_currency([symbol, symbol])


@pytest.mark.parametrize(
    ("value", "places", "signed", "text"),
    [
        (Decimal("1234.5"), 2, True, "+1,234.50 USDT"),
        (Decimal("-1234567.891"), 2, True, "-1,234,567.89 USDT"),
        (Decimal("-0.001"), 2, True, "+0.00 USDT"),
        (Decimal("12"), 2, False, "12.00 USDT"),
        (Decimal("-0.0123"), 4, True, "-0.0123 USDT"),
    ],
)
def test_money_is_grouped_signed_and_fixed(
    value: Decimal, places: int, signed: bool, text: str
) -> None:
    """Amounts read like money: thousands grouped, fixed places, a sign on P&L, no -0."""
    assert text == money(value, "USDT", places, signed=signed)


def test_places_grow_for_tiny_amounts_only() -> None:
    """2 places from 1 up; tiny amounts keep three significant digits, at most 8 places."""
    assert 2 == money_places([Decimal("1500"), Decimal("-3")])
    assert 2 == money_places([])
    assert 4 == money_places([Decimal("0.0123"), Decimal("-0.031")])
    assert 8 == money_places([Decimal("1e-12")])
    assert ("40%", "66.7%", "100%") == tuple(percent(Decimal(v)) for v in ("0.4", "0.66666", "1"))
