"""``report --plot`` after a real paper session: wins and losses opened and closed through
the command line of a running daemon, one position left open, then the chart as PNG and
SVG."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any

from cli.equity_chart import money
from tests.e2e.conftest import BTC, START_PRICE, Trader, wait_until

SVG_NS = "{http://www.w3.org/2000/svg}"
# Price moves of the session, each a position opened at market and closed at market after
# the move: up is a win for a long, down a loss (the moves dwarf the fees).
MOVES = (300, -200, 450, -350)


def open_long(trader: Trader) -> int:
    """``signal --wait``: a long with a far stop; the new position's id."""
    done = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01",
        "--stop-loss", "5%", "--wait", "20",
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    return int(
        trader.db.fetchval(
            "SELECT position_id FROM monitoring.signals WHERE id = $1",
            int(done.stdout.splitlines()[0]),
        )
    )


def position(trader: Trader, position_id: int) -> dict[str, Any]:
    row = trader.db.fetchrow("SELECT * FROM monitoring.positions WHERE id = $1", position_id)
    assert row is not None
    return row


def trade_session(trader: Trader) -> tuple[list[Decimal], int]:
    """Open and close a position per move; leave one open after a rise. The realised P&L
    of the closed ones, and the open one's id."""
    price, pnls = START_PRICE, []
    for move in MOVES:
        position_id = open_long(trader)
        price += move
        trader.feed.tick(price)
        trader.db.wait_for(
            "SELECT current_price = $2 FROM monitoring.positions WHERE id = $1",
            position_id,
            price,
        )
        closed = trader.cli("close", str(position_id), "--wait", "20")
        assert 0 == closed.returncode, closed.stderr
        row = wait_until(
            lambda pid=position_id: position(trader, pid),
            lambda r: r["status"] == "closed",
            20,
            f"position {position_id} closed",
        )
        pnls.append(row["realized_pnl"])
    still_open = open_long(trader)
    trader.feed.tick(price + 150)
    trader.db.wait_for(
        "SELECT unrealized_pnl > 0 FROM monitoring.positions WHERE id = $1", still_open
    )
    return pnls, still_open


def test_report_plot_draws_a_real_session_as_png_and_svg(trader: Trader) -> None:
    """Two wins and two losses closed through the CLI and one open position: report --plot
    writes a PNG and an SVG whose title carries the account, venue, the report's total,
    win rate and drawdown, and the open P&L."""
    trader.daemon().start().wait_ready()
    pnls, _ = trade_session(trader)
    assert [True, False, True, False] == [p > 0 for p in pnls]

    png = trader.state_dir.parent / "x.png"
    svg = trader.state_dir.parent / "x.svg"
    report = trader.cli_json("report", "--since", "7d", "--plot", str(png))
    assert (4, 2, 2, sum(pnls)) == (
        report["trades"],
        report["wins"],
        report["losses"],
        Decimal(report["total_pnl"]),
    )
    assert str(png) == report["plot"]
    data = png.read_bytes()
    assert b"\x89PNG\r\n\x1a\n" == data[:8]
    assert (1320, 742) == struct.unpack(">II", data[16:24])

    text = trader.cli("report", "--since", "7d", "--plot", str(svg))
    assert 0 == text.returncode, text.stderr
    assert f"chart written to {svg}" == text.stdout.splitlines()[-1]
    root = ET.parse(svg).getroot()
    lines = {"".join(el.itertext()).strip() for el in root.iter(f"{SVG_NS}text")}
    total = money(Decimal(report["total_pnl"]), "USDT", 2)
    drawdown = money(Decimal(report["max_drawdown"]), "USDT", 2, signed=False)
    assert "main  ·  paper  ·  last 1w (since " in "\n".join(lines)
    assert f"total P&L {total}" in lines
    (figures,) = [line for line in lines if line.startswith("win rate")]
    assert figures.startswith(
        f"win rate 50% (2 won, 2 lost of 4 trades)  ·  max drawdown {drawdown}"
    )
    assert figures.endswith("(1 position)") and "  ·  open +" in figures


def test_report_plot_with_another_extension_is_refused_before_the_database(
    trader: Trader,
) -> None:
    """--plot x.pdf exits 2 with one line naming the argument, without reaching the
    database (an unreachable one here) and without writing anything."""
    target = trader.state_dir.parent / "x.pdf"
    done = trader.cli(
        "report", "--plot", str(target),
        TRADER_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
    )  # fmt: skip
    assert (2, "") == (done.returncode, done.stdout)
    assert [
        f"main.py report: argument --plot: must end in .png or .svg, got '{target}'"
    ] == done.stderr.strip().splitlines()
    assert not target.exists()
