"""What a trader meets at the intake, through the CLI and plain SQL against a running daemon:
the outcome of a partial entry, one check for both paths, the daemon's published row,
requests nobody serves, urgent commands first, numbers readable at a glance."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal

from tests.e2e.conftest import BTC, ROOT, START_PRICE, Trader, wait_until

ETH = "ETH/USDT:USDT"


def test_wait_reports_the_final_fill_of_a_partial_entry(trader: Trader) -> None:
    """With a thin book (half the entry per tick), signal --wait returns once the entry is
    final and prints filled/requested = 0.020/0.020, the size the position really has."""
    trader.daemon(TRADER_PAPER_FAULTS="partial_fill=0.5").start().wait_ready()
    cli = subprocess.Popen(
        [sys.executable, "main.py", "signal", "--symbol", BTC, "--side", "long",
         "--amount", "0.02", "--stop-loss", "2%", "--wait", "20"],
        cwd=ROOT, env=trader.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 25
    while cli.poll() is None and time.monotonic() < deadline:
        trader.feed.tick(START_PRICE)  # each tick fills another slice of the entry
        time.sleep(0.2)
    out, err = cli.communicate(timeout=5)
    assert 0 == cli.returncode, err
    done = out.splitlines()[1]
    assert done.startswith("done: position_id=")
    assert "filled=0.020/0.020" in done, done
    signal_id = int(out.splitlines()[0])
    row = trader.db.fetchrow(
        "SELECT s.result, p.quantity FROM monitoring.signals s "
        "JOIN monitoring.positions p ON p.id = s.position_id WHERE s.id = $1",
        signal_id,
    )
    assert row is not None
    result = json.loads(row["result"])
    assert (Decimal("0.02"), Decimal("0.02")) == (
        Decimal(result["filled"]),
        Decimal(result["requested"]),
    )
    assert Decimal("0.02") == row["quantity"]


def test_one_check_for_sql_and_cli_and_the_daemons_row(trader: Trader) -> None:
    """The daemon publishes itself in monitoring.daemons; an ETH signal inserted with SQL
    ends rejected naming TRADER_SYMBOLS, and the CLI — run with a TRADER_SYMBOLS of its
    own that lists ETH — refuses it with the same words before queuing anything."""
    daemon = trader.daemon().start().wait_ready()
    row = trader.db.fetchrow("SELECT * FROM monitoring.live_daemons WHERE account = 'main'")
    assert row is not None
    assert (daemon.pid, [BTC], "paper", None) == (
        row["pid"],
        list(row["symbols"]),
        row["venue"],
        row["stopped_at"],
    )
    assert {"tick_size", "amount_step"} == set(json.loads(row["markets"])[BTC])
    reason = f"symbol: '{ETH}' is not among the symbols this daemon trades (TRADER_SYMBOLS={BTC})"
    inserted = trader.db.fetchval(
        "INSERT INTO monitoring.signals (symbol, side, amount) VALUES ($1, 'long', 0.1) "
        "RETURNING id",
        ETH,
    )
    trader.db.wait_for("SELECT status = 'rejected' FROM monitoring.signals WHERE id = $1", inserted)
    stored = trader.db.fetchrow("SELECT reason FROM monitoring.signals WHERE id = $1", inserted)
    assert stored is not None and reason == stored["reason"]
    refused = trader.cli(
        "signal", "--symbol", ETH, "--side", "long", "--amount", "0.1", "--wait", "5",
        TRADER_SYMBOLS=f"{BTC},{ETH}",
    )  # fmt: skip
    assert 2 == refused.returncode
    assert refused.stderr.strip().endswith(reason.removeprefix("symbol: "))
    assert 1 == trader.db.fetchval("SELECT count(*) FROM monitoring.signals")
    assert any(
        e.get("event") == "signal_rejected" and e.get("reason") == reason for e in daemon.events()
    )
    assert 0 == daemon.terminate()
    stopped = trader.db.fetchval("SELECT stopped_at FROM monitoring.daemons")
    assert stopped is not None


def test_requests_for_an_account_nobody_serves_are_listed(trader: Trader) -> None:
    """A signal for account 'someoneelse' is not taken by this daemon; the daemon warns of
    it once, the waiting view and `check` (exit 1) name it, and the CLI with no live
    daemon queues nothing, exit 2."""
    daemon = trader.daemon().start().wait_ready()
    stray = trader.db.fetchval(
        "INSERT INTO monitoring.signals (account, symbol, side, amount) "
        "VALUES ('someoneelse', $1, 'long', 0.01) RETURNING id",
        BTC,
    )
    checked = trader.cli("check")
    assert 1 == checked.returncode
    assert (
        f"intake: signal {stray} for 'someoneelse': no daemon has ever served this account"
        in checked.stderr
    )
    assert "daemon: account 'main' served by pid" in checked.stdout
    status = trader.cli("status")
    assert 0 == status.returncode, status.stderr
    assert f"main     live   {daemon.pid}" in status.stdout
    assert (
        f"  signal {stray} for 'someoneelse'" in status.stdout
        and "no daemon has ever served this account" in status.stdout
    )
    assert [("signal", stray)] == [
        (r["request"], r["id"])
        for r in trader.db.fetch("SELECT * FROM monitoring.waiting_requests")
    ]
    assert "new" == trader.db.fetchval("SELECT status FROM monitoring.signals WHERE id = $1", stray)
    wait_until(
        lambda: [e for e in daemon.events() if e.get("event") == "intake_requests_unserved"],
        bool,
        15,
        "the daemon's warning about the unserved request",
    )
    (warned,) = [e for e in daemon.events() if e.get("event") == "intake_requests_unserved"]
    assert [f"signal {stray} for 'someoneelse': no daemon has ever served this account"] == warned[
        "requests"
    ]
    elsewhere = trader.cli("close", "1", "--wait", "30", TRADER_ACCOUNT="someoneelse")
    assert 2 == elsewhere.returncode
    assert "no live daemon: no daemon has ever served account 'someoneelse'" in elsewhere.stderr
    assert 0 == trader.db.fetchval("SELECT count(*) FROM monitoring.commands")
    assert daemon.running()


def test_close_is_claimed_before_a_flood_of_junk(trader: Trader) -> None:
    """5,000 malformed rows then a close, in one transaction: the close is claimed first
    (no junk row claimed before it) and done; every junk row ends rejected; the close's
    done line shows the P&L in cents, the JSON listing every digit."""
    trader.daemon().start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.017", "--wait", "20"
    )
    assert 0 == opened.returncode, opened.stderr
    position_id = trader.db.fetchval(
        "SELECT position_id FROM monitoring.signals WHERE id = $1", int(opened.stdout.split()[0])
    )
    trader.feed.ticks(["60001.7", "60003.3"])
    time.sleep(1.0)  # the feed is followed at full speed: the exit fills near 60003.3
    close_id = trader.db.fetchval(
        "WITH junk AS (INSERT INTO monitoring.signals (symbol, side, amount) "
        "SELECT 'NOPE', 'long', -1 FROM generate_series(1, 2500)), "
        "junk2 AS (INSERT INTO monitoring.commands (kind, payload) "
        "SELECT 'place_order', '{}'::jsonb FROM generate_series(1, 2500)) "
        "INSERT INTO monitoring.commands (kind, payload) "
        "VALUES ('close_position', jsonb_build_object('position_id', $1::bigint)) RETURNING id",
        position_id,
    )
    trader.db.wait_for(
        "SELECT status = 'done' FROM monitoring.commands WHERE id = $1", close_id, timeout_s=20
    )
    trader.db.wait_for(
        "SELECT count(*) = 5000 FROM (SELECT id FROM monitoring.signals WHERE status = "
        "'rejected' UNION ALL SELECT id FROM monitoring.commands WHERE status = 'rejected') r",
        timeout_s=30,
    )
    first_junk = trader.db.fetchval(
        "SELECT min(claimed_at) FROM (SELECT claimed_at FROM monitoring.signals "
        "WHERE status = 'rejected' UNION ALL SELECT claimed_at FROM monitoring.commands "
        "WHERE status = 'rejected') r"
    )
    close_claimed = trader.db.fetchval(
        "SELECT claimed_at FROM monitoring.commands WHERE id = $1", close_id
    )
    assert close_claimed <= first_junk

    (listed,) = [p for p in trader.cli_json("positions", "--all") if p["id"] == position_id]
    pnl = Decimal(listed["realized_pnl"])
    assert pnl != pnl.quantize(Decimal("0.01"))  # stored with more digits than cents
    table = trader.cli("positions", "--all")
    assert str(pnl.quantize(Decimal("0.01"))).rstrip("0").rstrip(".") in table.stdout
    assert str(pnl) not in table.stdout


def test_refusal_quotes_what_the_user_typed(trader: Trader) -> None:
    """A quote amount too big for the balance is refused quoting that quote amount, not
    the base quantity derived from it."""
    trader.daemon().start().wait_ready()
    refused = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--quote-amount", "1000000", "--wait", "20"
    )
    assert 1 == refused.returncode
    assert refused.stderr.startswith("rejected: quote_amount: ")
    assert "(got 1000000)" in refused.stderr, refused.stderr
