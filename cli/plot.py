"""Drawing the equity chart (cli/equity_chart.py) to a PNG or SVG file with matplotlib.

The figure is built with :class:`matplotlib.figure.Figure` directly, never through
``pyplot``: no global figure manager, no backend switch (``matplotlib.use``) and no
``rcParams`` change that other code in the process would see. Saving picks the writer from
the format (Agg for PNG, the SVG backend for SVG); styles are passed to each call. The
one setting that has no per-call form, SVG text as ``<text>`` elements (searchable, and
the title readable in the file), is set for the save only, in ``rc_context``.

This is the plotting boundary: money arrives as Decimal and becomes float here, for
positions on the page only; every number printed on the picture is formatted from the
Decimal (title) or from the axis value with the chart's decimal places (ticks).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cli.arguments import PLOT_FORMATS
from cli.equity_chart import EquityChart, money

SIZE_IN = (12.0, 6.75)
DPI = 110
CURVE = "#1f5fa8"
WIN = "#1a9641"
LOSS = "#d7191c"
FLAT = "#7f7f7f"
OPEN = "#e08214"
GRID = "#d9d9d9"
OUTCOME_STYLE = {
    "win": (WIN, "^", "winning trade"),
    "loss": (LOSS, "v", "losing trade"),
    "flat": (FLAT, "o", "break-even trade"),
}


def plot_format(path: Path) -> str:
    """``png`` or ``svg`` from the file's extension (any case); ValueError otherwise."""
    try:
        return PLOT_FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"must end in .png or .svg, got {str(path)!r}") from None


def _floats(values: Sequence[Decimal]) -> list[float]:
    return [float(v) for v in values]


def _days(times: Sequence[datetime]) -> list[float]:
    """Matplotlib's date numbers (aware datetimes, counted in UTC). matplotlib.dates has
    no type annotations, hence the ignores on its calls."""
    return [float(x) for x in date2num(list(times))]  # type: ignore[no-untyped-call]


def _tick_places(ax: Axes, most: int) -> int:
    """Decimal places the y ticks need: as many as their step has (``10, 20`` none,
    ``0.25, 0.50`` two), at most the chart's."""
    ticks = ax.yaxis.get_majorticklocs()
    if len(ticks) < 2:
        return most
    # Ten significant digits drop the float noise of the difference (0.30000000000000004).
    step = Decimal(f"{abs(ticks[1] - ticks[0]):.10g}").normalize()
    exponent = step.as_tuple().exponent
    return min(most, max(0, -exponent)) if isinstance(exponent, int) else most


def _money_axis(ax: Axes, chart: EquityChart, label: str, bins: int) -> None:
    def tick(value: float, _pos: int | None) -> str:
        return f"{value:,.{_tick_places(ax, chart.places)}f}"

    ax.yaxis.set_major_formatter(FuncFormatter(tick))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 2.5, 5, 10]))
    unit = f" ({chart.currency})" if chart.currency else ""
    ax.set_ylabel(f"{label}{unit}", fontsize=11)
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.tick_params(labelsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw_equity(ax: Axes, chart: EquityChart) -> None:
    times = _days([*chart.times, chart.curve_end])
    equity = _floats([*chart.equity, chart.equity[-1]])
    ax.axhline(0, color=FLAT, linewidth=1)
    ax.fill_between(times, equity, 0, step="post", color=CURVE, alpha=0.08, linewidth=0)
    ax.step(times, equity, where="post", color=CURVE, linewidth=2.2,
            label="realised P&L (cumulative)")  # fmt: skip
    for outcome, (color, shape, label) in OUTCOME_STYLE.items():
        hits = [m for m in chart.markers if m.outcome == outcome]
        if hits:
            ax.scatter(
                _days([m.at for m in hits]), _floats([m.equity for m in hits]), s=70, marker=shape,
                color=color, edgecolors="white", linewidths=0.8, zorder=3,
                label=f"{label} ({len(hits)})",
            )  # fmt: skip
    point = chart.open_point
    if point is not None:
        at = _days([point.at])[0]
        ax.plot([at, at], _floats([point.realised, point.equity]), color=OPEN,
                linestyle=(0, (2, 2)), linewidth=1.8)  # fmt: skip
        # The value goes in the legend, not beside the point: the point is at the right
        # end of the data, where a label would sit on the last trades.
        open_label = f"open P&L now {money(point.pnl, chart.currency, chart.places)} (unrealised)"
        ax.scatter([at], [float(point.equity)], s=90, marker="D", facecolors="white",
                   edgecolors=OPEN, linewidths=2.2, zorder=4, label=open_label)  # fmt: skip
    ax.margins(y=0.12)
    if not chart.markers:
        ax.text(0.5, 0.65, "no finished trades in this period", transform=ax.transAxes,
                ha="center", va="center", fontsize=13, color=FLAT)  # fmt: skip
    if len(set(equity)) == 1 and chart.open_point is None:
        ax.set_ylim(equity[0] - 1, equity[0] + 1)  # a flat line: a scale of whole units
    _money_axis(ax, chart, "P&L", bins=6)


def _mark_deepest(ax: Axes, chart: EquityChart) -> None:
    """Label the max drawdown under the point where it happened (nothing is lower), on
    the side with room for the text."""
    if chart.max_drawdown <= 0:
        return
    deepest = chart.drawdown.index(-chart.max_drawdown)
    at = _days([chart.times[deepest]])[0]
    lo, hi = _days(chart.x_limits)
    left = (at - lo) / (hi - lo) > 0.7
    text = f"max {money(-chart.max_drawdown, chart.currency, chart.places)}"
    ax.annotate(text, (at, -float(chart.max_drawdown)), xytext=(-6 if left else 6, -2),
                textcoords="offset points", ha="right" if left else "left", va="top",
                fontsize=10, color=LOSS, fontweight="bold")  # fmt: skip


def _draw_drawdown(ax: Axes, chart: EquityChart) -> None:
    times = _days([*chart.times, chart.curve_end])
    drawdown = _floats([*chart.drawdown, chart.drawdown[-1]])
    ax.fill_between(times, drawdown, 0, step="post", color=LOSS, alpha=0.25, linewidth=0)
    ax.step(times, drawdown, where="post", color=LOSS, linewidth=1.4)
    deepest = min(drawdown)
    # A curve that never fell still gets a visible scale, hanging below 0.
    ax.set_ylim(deepest * 1.35 if deepest < 0 else -1.0, 0)  # room for the label under it
    _money_axis(ax, chart, "drawdown", bins=4)
    _mark_deepest(ax, chart)
    _time_axis(ax)


def _time_axis(ax: Axes) -> None:
    """Date ticks in UTC that suit the span, from seconds to months."""
    locator = AutoDateLocator(tz=UTC, minticks=4, maxticks=9)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    # Ticks by level (years, months, days, hours, minutes, seconds): days as "May 05"
    # rather than a bare "05", seconds with their minute ("04:31:15", not "15"); the offset
    # (the date under a time-of-day axis) in ISO form, as in the title.
    formats = ["%Y", "%b", "%b %d", "%H:%M", "%H:%M", "%H:%M:%S"]
    zeros = ["", "%Y", "%b", "%b %d", "%H:%M", "%H:%M:%S"]
    offsets = ["", "%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d"]
    formatter = ConciseDateFormatter(  # type: ignore[no-untyped-call]
        locator, tz=UTC, formats=formats, zero_formats=zeros, offset_formats=offsets
    )
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel("time (UTC)", fontsize=11)


def equity_figure(chart: EquityChart) -> Figure:
    """The figure: title and headline, the equity panel, the drawdown panel under it."""
    figure = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    top, bottom = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.04}
    )
    figure.suptitle(chart.title, x=0.01, ha="left", fontsize=15, fontweight="bold")
    # The total, large and coloured by its sign, top right: the first thing read.
    colour = WIN if chart.total_pnl > 0 else LOSS if chart.total_pnl < 0 else FLAT
    figure.text(0.99, 0.985, chart.headline, ha="right", va="top", fontsize=17,
                fontweight="bold", color=colour)  # fmt: skip
    top.set_title(chart.subtitle, loc="left", fontsize=12, pad=10)
    _draw_equity(top, chart)
    _draw_drawdown(bottom, chart)
    top.set_xlim(*_days(chart.x_limits))
    # The key under the time axis, in one row: it never covers the curve.
    handles, labels = top.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels),
                  fontsize=10, frameon=False)  # fmt: skip
    top.tick_params(labelbottom=False)
    return figure


def write_chart(path: Path, chart: EquityChart) -> None:
    """Draw ``chart`` to ``path`` as PNG or SVG (by extension); OSError when it cannot be
    written."""
    kind = plot_format(path)
    figure = equity_figure(chart)
    # No timestamp in the file: the same chart gives the same bytes.
    metadata: dict[str, str | None] = {"Title": chart.caption}
    if kind == "svg":
        metadata["Date"] = None
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "equity"}):
        figure.savefig(path, format=kind, metadata=metadata)
