"""Orders bound to a position end with it, as a trader meets it: the CLI and plain SQL
against the daemon as a subprocess, across a restart."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import BTC, Trader, wait_until


def order_row(trader: Trader, cid: str) -> dict[str, Any] | None:
    return trader.db.fetchrow(
        "SELECT status, error_message, position_id FROM monitoring.orders"
        " WHERE client_order_id = $1",
        cid,
    )


def test_take_profit_placed_with_position_ends_with_the_close(trader: Trader) -> None:
    """The issue's reproduction: a take-profit placed with --position is CANCELLED when the
    position is closed, with the reason in monitoring.orders and order_events; after a
    restart it is not re-armed, and a price through its trigger trades nothing."""
    daemon = trader.daemon().start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01", "--wait", "10"
    )
    assert 0 == opened.returncode, opened.stderr
    (position,) = trader.cli_json("positions")
    pid = position["id"]
    placed = trader.cli(
        "order", "place", "--symbol", BTC, "--side", "sell", "--type", "take_profit_market",
        "--amount", "0.01", "--trigger-price", "70000", "--reduce-only",
        "--position", str(pid), "--wait", "5",
    )  # fmt: skip
    assert 0 == placed.returncode, placed.stderr
    (tp,) = [o for o in trader.cli_json("orders") if o["type"] == "TAKE_PROFIT_MARKET"]
    closed = trader.cli("close", str(pid), "--wait", "10")
    assert 0 == closed.returncode, closed.stderr

    note = f"position {pid} closed (manual)"
    row = wait_until(
        lambda: order_row(trader, tp["client_order_id"]),
        lambda r: r is not None and r["status"] == "CANCELLED",
        10,
        "the take-profit cancelled in monitoring.orders",
    )
    assert note == row["error_message"]
    reasons = trader.db.fetch(
        "SELECT detail->>'reason' AS reason FROM monitoring.order_events"
        " WHERE client_order_id = $1 AND new_status = 'CANCELLED'",
        tp["client_order_id"],
    )
    assert [note] == [r["reason"] for r in reasons]
    assert [] == trader.cli_json("orders")

    assert 0 == daemon.terminate(10)
    again = trader.daemon("restart.log").start().wait_ready()
    trader.feed.ticks([65000, 70001, 71000])
    # A new position's market entry fills at the last price: proof the ticks were seen.
    reopened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01", "--wait", "10"
    )
    assert 0 == reopened.returncode, reopened.stderr
    (fresh,) = trader.cli_json("positions")
    assert float(fresh["entry_price"]) > 70000
    assert 0 == trader.db.fetchval(
        "SELECT count(*) FROM monitoring.trades WHERE client_order_id = $1", tp["client_order_id"]
    )
    assert not [e for e in again.events() if e.get("client_order_id") == tp["client_order_id"]]
    assert {f"td-main-p{fresh['id']}-sl-1"} == {
        o["client_order_id"] for o in trader.cli_json("orders")
    }
    assert [] == [e for e in again.events() if e.get("level") == "critical"]


def test_an_order_that_would_net_against_a_position_is_refused_by_the_cli(
    trader: Trader,
) -> None:
    """Without --position, an order on the closing side of an open position is refused
    (exit 1) with a reason naming the position and what to type instead; with SQL the
    same row ends rejected with the same words; the position keeps its stop."""
    trader.daemon().start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "short", "--amount", "0.01", "--wait", "10"
    )
    assert 0 == opened.returncode, opened.stderr
    (position,) = trader.cli_json("positions")
    pid = position["id"]
    refused = trader.cli(
        "order", "place", "--symbol", BTC, "--side", "buy", "--type", "limit",
        "--amount", "0.01", "--price", "30000", "--wait", "5",
    )  # fmt: skip
    assert 1 == refused.returncode, refused.stdout + refused.stderr
    assert f"--position {pid}" in refused.stdout + refused.stderr
    command_id = trader.db.fetchval(
        "INSERT INTO monitoring.commands (kind, payload) VALUES ('place_order', $1::jsonb)"
        " RETURNING id",
        '{"symbol": "BTC/USDT:USDT", "side": "buy", "type": "limit", "amount": "0.01",'
        ' "price": "30000"}',
    )
    row = wait_until(
        lambda: trader.db.fetchrow(
            "SELECT status, reason FROM monitoring.commands WHERE id = $1", command_id
        ),
        lambda r: r is not None and r["status"] != "new",
        10,
        "the SQL command handled",
    )
    assert "rejected" == row["status"]
    assert f"--position {pid}" in row["reason"]
    (still,) = trader.cli_json("positions")
    assert "active" == still["status"] and still["stop_loss_price"] is not None
