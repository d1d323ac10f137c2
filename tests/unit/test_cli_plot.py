"""The chart files: a valid PNG or SVG by the extension, carrying the title, drawn without
touching matplotlib's global state."""

from __future__ import annotations

import struct
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import matplotlib
import pytest

from cli.equity_chart import EquityChart, build_equity_chart
from cli.plot import DPI, SIZE_IN, plot_format, write_chart
from database.reports import FinishedTrade, OpenPnl

T0 = datetime(2026, 5, 8, 13, 0, tzinfo=UTC)
UNTIL = T0 + timedelta(hours=2)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"


def session_chart(open_pnl: OpenPnl | None = None) -> EquityChart:
    trades = [
        FinishedTrade(
            T0 + timedelta(minutes=10 * i),
            T0 + timedelta(minutes=10 * i + 6),
            Decimal(p),
            "BTC/USDT:USDT",
        )
        for i, p in enumerate(["12.5", "-4.25", "7", "-9.5", "0"])
    ]
    return build_equity_chart(
        trades,
        open_pnl,
        account="main",
        venue="paper",
        period="last 1w (since 2026-05-01 15:00 UTC)",
        since=UNTIL - timedelta(days=7),
        until=UNTIL,
    )


def test_png_file_is_a_png_of_the_chart_size(tmp_path: Path) -> None:
    """A .png path gets a PNG (signature, IHDR first) of the figure's pixel size."""
    path = tmp_path / "equity.png"
    write_chart(path, session_chart(OpenPnl(1, Decimal("3.2"), UNTIL, ("BTC/USDT:USDT",))))
    data = path.read_bytes()
    assert PNG_SIGNATURE == data[:8]
    assert b"IHDR" == data[12:16]
    width, height = struct.unpack(">II", data[16:24])
    assert (round(SIZE_IN[0] * DPI), round(SIZE_IN[1] * DPI)) == (width, height)
    assert b"IEND" in data[-12:]


def test_svg_file_parses_and_holds_the_title_and_figures(tmp_path: Path) -> None:
    """A .svg path (any case) gets SVG that parses as XML, with the title, headline and
    figures as text and the caption as the document title."""
    path = tmp_path / "equity.SVG"
    chart = session_chart()
    write_chart(path, chart)
    root = ET.parse(path).getroot()
    assert f"{SVG_NS}svg" == root.tag
    texts = {"".join(el.itertext()).strip() for el in root.iter(f"{SVG_NS}text")}
    assert {chart.title, chart.headline, chart.subtitle} <= texts
    assert "total P&L +5.75 USDT" == chart.headline
    titles = [el.text for el in root.iter("{http://purl.org/dc/elements/1.1/}title")]
    assert chart.caption in titles


def test_same_chart_gives_the_same_svg(tmp_path: Path) -> None:
    """No date or random id in the SVG: drawing the same chart twice gives the same bytes."""
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    write_chart(first, session_chart())
    write_chart(second, session_chart())
    assert first.read_bytes() == second.read_bytes()


def test_drawing_leaves_matplotlib_global_state_alone(tmp_path: Path) -> None:
    """No pyplot, no backend switch, rcParams as they were (the SVG setting is scoped)."""
    before = matplotlib.rcParams.copy()
    write_chart(tmp_path / "x.svg", session_chart())
    write_chart(tmp_path / "x.png", session_chart())
    assert before == matplotlib.rcParams.copy()
    assert "path" == matplotlib.rcParams["svg.fonttype"]
    assert "matplotlib.pyplot" not in sys.modules


@pytest.mark.parametrize(("name", "kind"), [("a.png", "png"), ("b.PNG", "png"), ("c.svg", "svg")])
def test_format_follows_the_extension(name: str, kind: str) -> None:
    """The extension, in any case, names the format."""
    assert kind == plot_format(Path(name))


@pytest.mark.parametrize("name", ["a.jpg", "a.pdf", "a", "a.svg.gz"])
def test_other_extensions_are_refused(name: str, tmp_path: Path) -> None:
    """Anything but .png / .svg is refused before a file is written."""
    with pytest.raises(ValueError, match=r"must end in \.png or \.svg"):
        write_chart(tmp_path / name, session_chart())
    assert [] == list(tmp_path.iterdir())
