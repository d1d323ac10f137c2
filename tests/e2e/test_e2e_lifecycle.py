"""A position's whole life through the command line and a running daemon."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from tests.e2e.conftest import BTC, Trader, wait_until


def test_signal_stop_out_report_and_clean_shutdown(trader: Trader) -> None:
    """signal --wait opens a position; falling prices stop it out with P&L equal to the
    fills' (exit - entry) x qty - fees; report agrees; SIGTERM exits 0 with daemon_stop
    recorded."""
    daemon = trader.daemon().start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01",
        "--stop-loss", "1%", "--wait", "20",
    )  # fmt: skip
    assert 0 == opened.returncode, opened.stderr
    signal_id = int(opened.stdout.splitlines()[0])
    assert "done: position_id=" in opened.stdout
    position_id = trader.db.fetchval(
        "SELECT position_id FROM monitoring.signals WHERE id = $1", signal_id
    )
    open_positions = trader.cli_json("positions")
    assert [position_id] == [p["id"] for p in open_positions]
    assert "active" == open_positions[0]["status"]
    stop = Decimal(open_positions[0]["stop_loss_price"])
    entry = Decimal(open_positions[0]["entry_price"])
    assert entry * Decimal("0.98") < stop < entry  # 1% under the fill, rounded to the tick

    trader.feed.ticks([entry - 100, stop + 1, stop - 50])

    def closed() -> list[dict[str, Any]]:
        return [p for p in trader.cli_json("positions", "--all") if p["status"] == "closed"]

    (position,) = wait_until(closed, bool, 20, "the position closed by its stop")
    assert position_id == position["id"]
    assert "stop_loss" == position["exit_reason"]
    fills = trader.db.fetch(
        "SELECT side, executed_qty, price, fee FROM monitoring.trades "
        "WHERE position_id = $1 ORDER BY executed_at, id",
        position_id,
    )
    buys = [f for f in fills if f["side"] == "buy"]
    sells = [f for f in fills if f["side"] == "sell"]
    qty = sum(f["executed_qty"] for f in buys)
    assert Decimal("0.01") == qty == sum(f["executed_qty"] for f in sells)
    entry_value = sum(f["price"] * f["executed_qty"] for f in buys)
    exit_value = sum(f["price"] * f["executed_qty"] for f in sells)
    fees = sum(f["fee"] for f in fills)
    assert exit_value - entry_value - fees == Decimal(position["realized_pnl"])
    assert fees == Decimal(position["fees"])
    assert Decimal(position["exit_price"]) <= stop  # a gap fills at the tick, not the stop

    png = trader.state_dir.parent / "equity.png"
    report = trader.cli_json("report", "--since", "1h", "--plot", str(png))
    assert png.read_bytes().startswith(b"\x89PNG")
    assert 1 == report["trades"]
    assert Decimal(position["realized_pnl"]) == Decimal(report["total_pnl"])
    assert 1 == report["losses"]
    # The daily table agrees with the headline: one trade is two fills (entry and exit),
    # one of them an exit, and the days add up to the total P&L.
    days = report["daily"]
    assert (2, 1, Decimal(report["total_pnl"])) == (
        sum(d["fills"] for d in days),
        sum(d["exits"] for d in days),
        sum(Decimal(d["realized_pnl"]) for d in days),
    )
    assert trader.cli_json("orders") == []  # nothing left resting: no orphan stop

    started = time.monotonic()
    assert 0 == daemon.terminate(timeout_s=10)
    assert time.monotonic() - started < 10
    kinds = [r["kind"] for r in trader.db.fetch("SELECT kind FROM monitoring.events ORDER BY id")]
    assert "daemon_stop" == kinds[-1]


def test_signal_inserted_while_the_daemon_is_down_is_processed_after_start(
    trader: Trader,
) -> None:
    """A signal row written with plain SQL while no daemon runs is taken at start-up; a
    CLI request without a live daemon exits 2 at once saying so, and queues nothing."""
    unmigrated = trader.cli("positions")
    assert (1, "the monitoring schema is missing") == (
        unmigrated.returncode,
        unmigrated.stderr.split(":")[0],
    )
    assert 0 == trader.cli("migrate").returncode
    signal_id = trader.db.fetchval(
        "INSERT INTO monitoring.signals (symbol, side, amount) "
        "VALUES ($1, 'short', 0.02) RETURNING id",
        BTC,
    )
    waited = trader.cli("close", "999", "--wait", "30")
    assert 2 == waited.returncode
    assert (
        "main.py close: no live daemon: no daemon has ever served account 'main'; "
        "nothing was queued"
    ) in waited.stderr
    assert 1 == len(waited.stderr.strip().splitlines())
    assert 0 == trader.db.fetchval("SELECT count(*) FROM monitoring.commands")
    assert "new" == trader.db.fetchval(
        "SELECT status FROM monitoring.signals WHERE id = $1", signal_id
    )

    trader.daemon().start().wait_ready()
    status = trader.db.wait_for(
        "SELECT status FROM monitoring.signals WHERE id = $1 AND status <> ALL($2::text[])",
        signal_id,
        ["new", "processing"],
    )
    assert "done" == status
    (position,) = trader.cli_json("positions")
    assert ("short", "active", "0.02") == (
        position["side"],
        position["status"],
        str(Decimal(position["quantity"]).normalize()),
    )
    assert "main" == trader.db.fetchval(
        "SELECT account FROM monitoring.signals WHERE id = $1", signal_id
    )
