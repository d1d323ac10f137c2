"""The daemon's log as a trader tails it: a trailing stop's moves at INFO are the venue's
answers, not our requests; a request the venue never answered is a warning."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.e2e.conftest import BTC, Daemon, Trader, wait_until


def info_order_events(daemon: Daemon, position_id: int) -> set[str]:
    return {
        e["event"]
        for e in daemon.events()
        if e.get("position_id") == position_id
        and e.get("level") == "info"
        and e["event"].startswith("order_")
    }


def test_trailing_moves_log_answers_at_info_and_keep_every_request_in_the_trail(
    trader: Trader,
) -> None:
    """Rising prices move a trailing stop: INFO shows position_stop_moved, the new stop
    accepted and the old one cancelled, never order_submitted / order_cancelling; the
    monitoring.order_events rows still hold every submit and cancel request."""
    daemon = trader.daemon().start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01", "--stop-loss", "1%",
        "--trailing-activation", "0.5", "--trailing-callback", "1", "--wait", "20",
    )  # fmt: skip
    assert 0 == opened.returncode, opened.stderr
    (position,) = trader.cli_json("positions")
    entry = Decimal(position["entry_price"])
    trader.feed.ticks([entry * Decimal(f"1.0{n}") for n in range(1, 6)])

    def moves() -> list[dict[str, Any]]:
        return [e for e in daemon.events() if e["event"] == "position_stop_moved"]

    wait_until(moves, bool, 20, "a trailing stop move")
    assert all("info" == e["level"] for e in moves())
    wait_until(
        lambda: info_order_events(daemon, position["id"]),
        lambda seen: {"order_accepted", "order_cancelled"} <= seen,
        20,
        "the moved stop's answers at info",
    )
    seen = info_order_events(daemon, position["id"])
    assert not seen & {"order_submitted", "order_cancelling", "order_created"}, seen
    kinds = {
        row["kind"]
        for row in trader.db.fetch(
            "SELECT kind FROM monitoring.order_events WHERE position_id = $1", position["id"]
        )
    }
    assert {"created", "submitted", "accepted", "cancelling", "cancelled"} <= kinds
    assert 0 == daemon.terminate()


def test_a_lost_reply_is_a_warning_naming_the_order(trader: Trader) -> None:
    """Every reply lost after the venue accepted (paper fault timeout_after_accept=1): each
    unanswered submit is an order_unanswered warning with its client id; the open still
    ends active, its entry found by lookup."""
    daemon = trader.daemon(TRADER_PAPER_FAULTS="timeout_after_accept=1").start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01",
        "--stop-loss", "1%", "--wait", "30",
    )  # fmt: skip
    assert 0 == opened.returncode, opened.stdout + opened.stderr
    (position,) = trader.cli_json("positions")
    assert "active" == position["status"]
    unanswered = [e for e in daemon.events() if e["event"] == "order_unanswered"]
    assert unanswered, daemon.text()
    assert {"warning"} == {e["level"] for e in unanswered}
    ids = {e["client_order_id"] for e in unanswered}
    known = {
        row["client_order_id"]
        for row in trader.db.fetch(
            "SELECT client_order_id FROM monitoring.orders WHERE position_id = $1",
            position["id"],
        )
    }
    assert ids <= known, (ids, known)
    assert any("-en-" in i for i in ids), ids  # the entry's own submit went unanswered
    assert 0 == daemon.terminate()
