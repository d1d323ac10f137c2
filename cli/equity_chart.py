"""What the ``report --plot`` picture shows, computed from the finished trades: no drawing.

The chart is the realised equity curve (cumulative realised P&L, a step that moves when a
position finishes), the open positions' P&L now as one last point off that curve, the
drawdown under the curve (how far realised equity is below its best level so far, the
best level counting from 0: the same definition as ``monitoring.performance_since``), a
marker per finished trade coloured by its outcome, and a title that says whose account,
which venue, which period, and the headline figures. Everything here is Decimal and
datetime; cli/plot.py turns it into a figure and is the only place that sees floats.

The x-axis fits the trades: it runs from the first trade's entry (or the window's start,
if the trade opened before it) to the last close or the open P&L sample, so a session of
an hour fills the picture even with ``--since 7d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from database.reports import FinishedTrade, OpenPnl

# A chart narrower than this (one trade opened and closed within seconds) is widened, so
# its one step is visible and the time axis has ticks to show; short enough that a
# session of two minutes still fills the picture.
MIN_SPAN = timedelta(minutes=1)
# Room on each side of the data, as a share of its span, so no marker sits on the frame.
MARGIN = 0.04
# With nothing traded, the picture shows the last day (or the window, if shorter).
EMPTY_SPAN = timedelta(days=1)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TradeMarker:
    """One finished trade on the curve: where it closed and what it made."""

    at: datetime
    equity: Decimal
    pnl: Decimal

    @property
    def outcome(self) -> str:
        """``win``, ``loss`` or ``flat`` (the performance figures' definition)."""
        return "win" if self.pnl > 0 else "loss" if self.pnl < 0 else "flat"


@dataclass(frozen=True, slots=True)
class OpenPoint:
    """Where equity would be if the open positions were closed at the last price."""

    at: datetime
    realised: Decimal
    equity: Decimal
    pnl: Decimal
    positions: int


@dataclass(frozen=True, slots=True)
class EquityChart:
    """Everything the picture draws, in money and time."""

    title: str
    headline: str
    subtitle: str
    times: tuple[datetime, ...]
    equity: tuple[Decimal, ...]
    drawdown: tuple[Decimal, ...]
    markers: tuple[TradeMarker, ...]
    open_point: OpenPoint | None
    x_limits: tuple[datetime, datetime]
    currency: str | None
    places: int
    total_pnl: Decimal
    win_rate: Decimal | None
    max_drawdown: Decimal

    @property
    def caption(self) -> str:
        """Title, total and figures as one line: the file's own title (PNG and SVG
        metadata)."""
        return f"{self.title}: {self.headline}; {self.subtitle}"

    @property
    def curve_end(self) -> datetime:
        """Where the realised line stops: at the open point, else at the right edge (so
        the level after the last close shows as a line, not a point)."""
        return self.open_point.at if self.open_point else self.x_limits[1]


def settlement_currency(symbol: str) -> str | None:
    """The currency P&L of ``symbol`` is counted in: the settle currency of a unified
    contract symbol (``BTC/USDT:USDT`` -> USDT, ``BTC/USD:BTC`` -> BTC), else the quote;
    None for a bare exchange id, whose currency the symbol does not say."""
    if ":" in symbol:
        return symbol.split(":", 1)[1].split("-", 1)[0] or None
    if "/" in symbol:
        return symbol.split("/", 1)[1] or None
    return None


def common_currency(symbols: Sequence[str]) -> str | None:
    """The one currency all ``symbols`` settle in, or None (unknown, or several: then the
    sum is not in one currency and the chart says no unit)."""
    currencies = {settlement_currency(s) for s in symbols}
    return currencies.pop() if len(currencies) == 1 else None


def money_places(values: Sequence[Decimal]) -> int:
    """Decimal places that show the largest amount with at least three significant
    digits: 2 for amounts of 1 or more, more for tiny ones (at most 8)."""
    largest = max((abs(v) for v in values), default=ZERO)
    if largest == 0 or largest >= 1:
        return 2
    return min(8, 2 - largest.adjusted())


def money(value: Decimal, currency: str | None, places: int, *, signed: bool = True) -> str:
    """``+1,234.50 USDT``: grouped thousands, fixed places, an explicit sign for P&L."""
    rounded = value.quantize(Decimal(1).scaleb(-places))
    if rounded == 0:
        rounded = abs(rounded)  # no "-0.00"
    text = f"{rounded:{'+' if signed else ''},.{places}f}"
    return f"{text} {currency}" if currency else text


def percent(value: Decimal) -> str:
    """``60%``, ``66.7%``: one decimal place unless it is a whole number."""
    pct = (value * 100).quantize(Decimal("0.1"))
    return f"{pct:.0f}%" if pct == pct.to_integral_value() else f"{pct}%"


def _curve(
    trades: Sequence[FinishedTrade], start: datetime
) -> tuple[list[datetime], list[Decimal], list[Decimal]]:
    """Step points (start at 0, then the equity after each close) and the drawdown at each."""
    times: list[datetime] = [start]
    equity: list[Decimal] = [ZERO]
    drawdown: list[Decimal] = [ZERO]
    total, peak = ZERO, ZERO
    for trade in trades:
        total += trade.pnl
        peak = max(peak, total)
        times.append(trade.closed_at)
        equity.append(total)
        drawdown.append(total - peak)
    return times, equity, drawdown


def _x_limits(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``start`` .. ``end`` widened to at least :data:`MIN_SPAN` and padded by the margin."""
    if end - start < MIN_SPAN:
        middle = start + (end - start) / 2
        start, end = middle - MIN_SPAN / 2, middle + MIN_SPAN / 2
    pad = (end - start) * MARGIN
    return start - pad, end + pad


def _subtitle(
    trades: Sequence[FinishedTrade],
    max_dd: Decimal,
    open_point: OpenPoint | None,
    currency: str | None,
    places: int,
) -> str:
    """The figures a trader reads after the total, in one line."""
    if not trades:
        parts = ["no finished trades in this period"]
    else:
        wins = sum(1 for t in trades if t.pnl > 0)
        losses = sum(1 for t in trades if t.pnl < 0)
        rate = percent(Decimal(wins) / len(trades))
        count = f"{len(trades)} trade{'s' if len(trades) != 1 else ''}"
        parts = [
            f"win rate {rate} ({wins} won, {losses} lost of {count})",
            f"max drawdown {money(max_dd, currency, places, signed=False)}",
        ]
    if open_point is not None:
        held = f"{open_point.positions} position{'s' if open_point.positions != 1 else ''}"
        parts.append(f"open {money(open_point.pnl, currency, places)} ({held})")
    return "  ·  ".join(parts)


def build_equity_chart(
    trades: Sequence[FinishedTrade],
    open_pnl: OpenPnl | None,
    *,
    account: str,
    venue: str,
    period: str,
    since: datetime | None,
    until: datetime,
) -> EquityChart:
    """The chart of ``trades`` (finished in the window, in closing order) and the open
    P&L (None or no position: no open point), titled with account, venue and period."""
    held = open_pnl if open_pnl and open_pnl.positions > 0 and open_pnl.at else None
    if trades:
        first = min(t.opened_at for t in trades)
        start = max(first, since) if since else first
    elif held is not None and held.at is not None:
        start = held.at
    else:
        start = max(since, until - EMPTY_SPAN) if since else until - EMPTY_SPAN
    times, equity, drawdown = _curve(trades, start)
    open_point = None
    if held is not None and held.at is not None:
        realised = equity[-1]
        open_point = OpenPoint(
            max(held.at, times[-1]), realised, realised + held.pnl, held.pnl, held.positions
        )
    end = open_point.at if open_point else (times[-1] if trades else until)
    symbols = [t.symbol for t in trades] + list(held.symbols if held else ())
    currency = common_currency(symbols) if symbols else None
    total, max_dd = equity[-1], -min(drawdown)
    places = money_places(
        [t.pnl for t in trades] + equity + ([open_point.equity] if open_point else [])
    )
    wins = sum(1 for t in trades if t.pnl > 0)
    return EquityChart(
        title=f"{account}  ·  {venue}  ·  {period}",
        headline=f"total P&L {money(total, currency, places)}",
        subtitle=_subtitle(trades, max_dd, open_point, currency, places),
        times=tuple(times),
        equity=tuple(equity),
        drawdown=tuple(drawdown),
        markers=tuple(
            TradeMarker(t.closed_at, e, t.pnl) for t, e in zip(trades, equity[1:], strict=True)
        ),
        open_point=open_point,
        x_limits=_x_limits(start, end),
        currency=currency,
        places=places,
        total_pnl=total,
        win_rate=Decimal(wins) / len(trades) if trades else None,
        max_drawdown=max_dd,
    )
