"""The hand-written PNG: a valid file, and the curve where the scales put it."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cli.plot import LINE, WHITE, Canvas, Frame, equity_frame, nice_ticks, render_equity

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB pixels) of an 8-bit RGB, filter-0 PNG; checks every CRC."""
    assert b"\x89PNG\r\n\x1a\n" == data[:8]
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append((kind, body))
        offset += 12 + length
    assert [b"IHDR", b"IDAT", b"IEND"] == [k for k, _ in chunks]
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (8, 2) == (depth, color)
    raw = zlib.decompress(chunks[1][1])
    stride = 1 + width * 3
    assert height * stride == len(raw)
    assert all(raw[y * stride] == 0 for y in range(height))
    pixels = b"".join(raw[y * stride + 1 : (y + 1) * stride] for y in range(height))
    return width, height, pixels


def pixel(pixels: bytes, width: int, x: int, y: int) -> tuple[int, int, int]:
    i = (y * width + x) * 3
    return (pixels[i], pixels[i + 1], pixels[i + 2])


def test_png_round_trips_through_a_decoder() -> None:
    """The canvas encodes to a PNG whose pixels decode back unchanged."""
    canvas = Canvas(7, 5)
    canvas.set(3, 2, (1, 2, 3))
    canvas.line(0, 4, 6, 4, (9, 9, 9))
    width, height, pixels = decode_png(canvas.png())
    assert (7, 5) == (width, height)
    assert (1, 2, 3) == pixel(pixels, width, 3, 2)
    assert [(9, 9, 9)] * 7 == [pixel(pixels, width, x, 4) for x in range(7)]
    assert WHITE == pixel(pixels, width, 0, 0)


def test_equity_curve_is_drawn_at_its_scaled_positions() -> None:
    """The step line is at 0 before the first close, at +100 between the closes and at
    -50 after the second, and nowhere else along those times."""
    points = [(T0 + timedelta(hours=6), Decimal(100)), (T0 + timedelta(hours=12), Decimal(-50))]
    end = T0 + timedelta(days=1)
    width, height, pixels = decode_png(render_equity(points, T0, end, width=600, height=300))
    frame, ticks = equity_frame(points, T0, end, 600, 300)
    assert [Decimal(v) for v in (-50, 0, 50, 100)] == ticks

    def line_rows(hour: int) -> set[int]:
        x = frame.x(T0 + timedelta(hours=hour))
        return {y for y in range(height) if pixel(pixels, width, x, y) == LINE}

    for hour, equity in ((3, 0), (9, 100), (18, -50)):
        assert frame.y(Decimal(equity)) in line_rows(hour)
        assert all(abs(y - frame.y(Decimal(equity))) <= 1 for y in line_rows(hour))


def test_frame_maps_time_and_money_linearly() -> None:
    """The frame puts the window's ends on the plot edges and 0 proportionally."""
    frame = Frame(10, 20, 110, 220, T0, T0 + timedelta(hours=10), Decimal(-100), Decimal(100))
    assert (10, 110, 60) == (
        frame.x(T0),
        frame.x(T0 + timedelta(hours=10)),
        frame.x(T0 + timedelta(hours=5)),
    )
    assert (220, 20, 120) == (frame.y(Decimal(-100)), frame.y(Decimal(100)), frame.y(Decimal(0)))


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (Decimal(0), Decimal(100), [Decimal(v) for v in (0, 20, 40, 60, 80, 100)]),
        (Decimal("-0.3"), Decimal("0.7"), [Decimal(v) / 10 for v in (-4, -2, 0, 2, 4, 6, 8)]),
        (Decimal(0), Decimal(0), [Decimal(v) / 10 for v in (0, 2, 4, 6, 8, 10)]),
    ],
)
def test_nice_ticks_are_round_and_cover_the_range(
    low: Decimal, high: Decimal, expected: list[Decimal]
) -> None:
    """Grid values are 1/2/5 x 10^n apart, start at or below low and end at or above high."""
    assert expected == nice_ticks(low, high)


def test_empty_curve_still_renders() -> None:
    """No finished position yet: a chart with the zero line, not an error."""
    width, height, _ = decode_png(render_equity([], None, T0))
    assert (900, 420) == (width, height)
