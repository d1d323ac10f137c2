"""A small PNG line chart of the equity curve, drawn without a plotting library.

Why by hand: the daemon's dependencies are kept lean and no plotting library is installed;
the chart a trader needs from ``report --plot`` is simple: cumulative realised P&L over
time, as a step line (equity changes when a position closes), with a zero line, a few
horizontal grid lines labelled with their value, and the time span on the x axis. Text is
drawn with a built-in 5x7 pixel font that knows digits, a few signs and the letters the
labels use.

The image is an RGB pixel buffer written as a PNG with :mod:`zlib` and :mod:`struct` (one
IDAT chunk, filter 0 on every row). Coordinates are floats: they are pixels, not money.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GRID: Color = (225, 225, 225)
ZERO: Color = (150, 150, 150)
LINE: Color = (31, 119, 180)
GAIN: Color = (44, 160, 44)
LOSS: Color = (214, 39, 40)

# 5x7 glyphs, one string of five bits per row, top row first.
_FONT: dict[str, tuple[str, ...]] = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    "+": ("00000", "00100", "00100", "11111", "00100", "00100", "00000"),
    ".": ("00000", "00000", "00000", "00000", "00000", "01100", "01100"),
    ":": ("00000", "01100", "01100", "00000", "01100", "01100", "00000"),
    "/": ("00001", "00010", "00010", "00100", "01000", "01000", "10000"),
    "(": ("00010", "00100", "01000", "01000", "01000", "00100", "00010"),
    ")": ("01000", "00100", "00010", "00010", "00010", "00100", "01000"),
    "&": ("01100", "10010", "10100", "01000", "10101", "10010", "01101"),
    " ": ("00000",) * 7,
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "C": ("01110", "10001", "10000", "10000", "10000", "10001", "01110"),
    "D": ("11100", "10010", "10001", "10001", "10001", "10010", "11100"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "I": ("01110", "00100", "00100", "00100", "00100", "00100", "01110"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "N": ("10001", "11001", "10101", "10011", "10001", "10001", "10001"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
    "Q": ("01110", "10001", "10001", "10001", "10101", "10010", "01101"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "T": ("11111", "00100", "00100", "00100", "00100", "00100", "00100"),
    "U": ("10001", "10001", "10001", "10001", "10001", "10001", "01110"),
    "Y": ("10001", "10001", "01010", "00100", "00100", "00100", "00100"),
}
GLYPH_W, GLYPH_H, SCALE = 5, 7, 2


class Canvas:
    """An RGB pixel buffer with the few drawing operations a chart needs."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i : i + 3] = bytes(color)

    def get(self, x: int, y: int) -> Color:
        i = (y * self.width + x) * 3
        return (self.pixels[i], self.pixels[i + 1], self.pixels[i + 2])

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the rectangle with corners (x0, y0) and (x1, y1), both included."""
        for y in range(max(0, min(y0, y1)), min(self.height, max(y0, y1) + 1)):
            for x in range(max(0, min(x0, x1)), min(self.width, max(x0, x1) + 1)):
                self.set(x, y, color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, width: int = 1) -> None:
        """Bresenham's line, ``width`` pixels thick (square pen)."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        lo, hi = -((width - 1) // 2), width // 2
        while True:
            self.rect(x0 + lo, y0 + lo, x0 + hi, y0 + hi, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: Color = BLACK) -> None:
        """Draw ``text`` with its top-left corner at (x, y); unknown characters are blank."""
        for index, char in enumerate(text.upper()):
            glyph = _FONT.get(char, _FONT[" "])
            left = x + index * (GLYPH_W + 1) * SCALE
            for row, bits in enumerate(glyph):
                for col, bit in enumerate(bits):
                    if bit == "1":
                        px, py = left + col * SCALE, y + row * SCALE
                        self.rect(px, py, px + SCALE - 1, py + SCALE - 1, color)

    def png(self) -> bytes:
        """The image as PNG bytes (8-bit RGB, no interlace)."""
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )


def text_width(text: str) -> int:
    """Pixel width of ``text`` drawn by :meth:`Canvas.text`."""
    return len(text) * (GLYPH_W + 1) * SCALE - SCALE if text else 0


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def nice_ticks(low: Decimal, high: Decimal, count: int = 5) -> list[Decimal]:
    """Round values spanning [low, high] (1, 2 or 5 times a power of ten apart)."""
    if high <= low:
        high = low + 1
    rough = (high - low) / count
    power = Decimal(10) ** rough.adjusted()
    step = next(
        m * power for m in (Decimal(1), Decimal(2), Decimal(5), Decimal(10)) if m * power >= rough
    )
    first = (low / step).to_integral_value(rounding="ROUND_FLOOR") * step
    ticks = []
    value = first
    while value <= high + step / 2:
        ticks.append(value)
        value += step
    if ticks[-1] < high:
        ticks.append(ticks[-1] + step)
    return ticks


def tick_label(value: Decimal) -> str:
    """A grid value without exponent or trailing zeros."""
    return "0" if value == 0 else format(value.normalize(), "f")


@dataclass(frozen=True, slots=True)
class Frame:
    """The plot area and its scales: time -> x pixel, P&L -> y pixel."""

    left: int
    top: int
    right: int
    bottom: int
    start: datetime
    end: datetime
    low: Decimal
    high: Decimal

    def x(self, when: datetime) -> int:
        span = (self.end - self.start).total_seconds() or 1.0
        share = (when - self.start).total_seconds() / span
        return round(self.left + share * (self.right - self.left))

    def y(self, value: Decimal) -> int:
        share = float((value - self.low) / (self.high - self.low))
        return round(self.bottom - share * (self.bottom - self.top))


def equity_frame(
    points: Sequence[tuple[datetime, Decimal]],
    start: datetime | None,
    end: datetime,
    width: int,
    height: int,
) -> tuple[Frame, list[Decimal]]:
    """The plot area, its scales and the y grid values for ``points`` over [start, end]."""
    if start is not None:
        first = start
    elif points:
        # All time: begin a little before the first close, so the curve is seen leaving 0.
        first = points[0][0] - max((end - points[0][0]) / 20, timedelta(minutes=1))
    else:
        first = end - timedelta(days=1)
    if first >= end:
        first = end - timedelta(minutes=1)
    values = [Decimal(0), *(v for _, v in points)]
    ticks = nice_ticks(min(values), max(values))
    left = 24 + max(text_width(tick_label(t)) for t in ticks)
    return Frame(left, 44, width - 30, height - 52, first, end, ticks[0], ticks[-1]), ticks


def render_equity(
    points: Sequence[tuple[datetime, Decimal]],
    start: datetime | None,
    end: datetime,
    *,
    width: int = 900,
    height: int = 420,
) -> bytes:
    """The equity chart as PNG bytes. ``points`` are (time, cumulative P&L) in time order;
    the curve starts at 0 at ``start`` (the first point's time when None)."""
    frame, ticks = equity_frame(points, start, end, width, height)
    canvas = Canvas(width, height)
    for tick in ticks:
        label = tick_label(tick)
        y = frame.y(tick)
        canvas.line(frame.left, y, frame.right, y, ZERO if tick == 0 else GRID)
        canvas.text(frame.left - 10 - text_width(label), y - GLYPH_H * SCALE // 2, label)
    canvas.line(frame.left, frame.top, frame.left, frame.bottom, BLACK)
    canvas.line(frame.left, frame.bottom, frame.right, frame.bottom, BLACK)
    _draw_curve(canvas, frame, points)
    _time_labels(canvas, frame)
    canvas.text(frame.left, 14, "EQUITY (REALISED P&L)")
    return canvas.png()


def _draw_curve(canvas: Canvas, frame: Frame, points: Sequence[tuple[datetime, Decimal]]) -> None:
    """A step line: flat until a position closes, then a jump to the new equity."""
    x, y = frame.x(frame.start), frame.y(Decimal(0))
    for when, value in points:
        nx, ny = frame.x(max(when, frame.start)), frame.y(value)
        canvas.line(x, y, nx, y, LINE, width=2)
        canvas.line(nx, y, nx, ny, GAIN if ny <= y else LOSS, width=2)
        canvas.rect(nx - 2, ny - 2, nx + 2, ny + 2, LINE)
        x, y = nx, ny
    canvas.line(x, y, frame.x(frame.end), y, LINE, width=2)


def _time_labels(canvas: Canvas, frame: Frame) -> None:
    """Start, middle and end of the span, in UTC, under the x axis."""
    span = frame.end - frame.start
    fmt = "%m-%d %H:%M" if span < timedelta(days=3) else "%Y-%m-%d"
    for share in (0.0, 0.5, 1.0):
        when = frame.start + span * share
        label = when.astimezone(UTC).strftime(fmt)
        x = frame.x(when)
        canvas.line(x, frame.bottom, x, frame.bottom + 5, BLACK)
        left = min(max(x - text_width(label) // 2, 0), canvas.width - text_width(label))
        canvas.text(left, frame.bottom + 12, label)
    canvas.text(canvas.width - text_width("UTC") - 4, frame.bottom + 32, "UTC")


def write_equity_png(
    path: Path, points: Sequence[tuple[datetime, Decimal]], start: datetime | None, end: datetime
) -> None:
    """Render the chart and write it to ``path`` (replacing it whole, never half-written)."""
    data = render_equity(points, start, end)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
