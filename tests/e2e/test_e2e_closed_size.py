"""A closed position keeps the size it traded: in plain SQL, in ``positions --all`` and
in ``report``."""

from __future__ import annotations

from decimal import Decimal

from tests.e2e.conftest import BTC, Trader


def test_closed_position_keeps_its_traded_size(trader: Trader) -> None:
    """After close, the row has quantity 0 (nothing open) and traded_quantity 0.02, and the
    listing and the report show the 0.02 with the trade's return."""
    trader.daemon().start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.02", "--wait", "10"
    )
    assert 0 == opened.returncode, opened.stderr
    (position,) = trader.cli_json("positions")
    closed = trader.cli("close", str(position["id"]), "--wait", "10")
    assert 0 == closed.returncode, closed.stderr

    trader.db.wait_for("SELECT count(*) FROM monitoring.positions WHERE status = 'closed'")
    row = trader.db.fetchrow(
        "SELECT symbol, quantity, traded_quantity, entry_price, exit_price, realized_pnl"
        " FROM monitoring.positions WHERE status = 'closed'"
    )
    assert row is not None
    assert (Decimal(0), Decimal("0.02")) == (row["quantity"], row["traded_quantity"])
    (listed,) = trader.cli_json("positions", "--all")
    assert Decimal("0.02") == Decimal(listed["traded_quantity"])
    header, line = trader.cli("positions", "--all").stdout.splitlines()
    assert "0.02" == line.split()[header.split().index("SIZE")]
    report = trader.cli_json("report")
    (recent,) = report["recent"]
    assert Decimal("0.02") == Decimal(recent["traded_quantity"])
    notional = row["entry_price"] * row["traded_quantity"]
    assert row["realized_pnl"] / notional * 100 == Decimal(recent["return_pct"])
    text = trader.cli("report").stdout.splitlines()
    at = text.index("recent trades (newest first)")
    header, line = text[at + 1], text[at + 2]
    assert "0.02" == line.split()[header.split().index("SIZE")]
