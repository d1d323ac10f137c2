"""The CLI's SQL on a real PostgreSQL: report figures, listings, requests and check."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cli.check import run_checks
from cli.connect import CommandFailed
from cli.equity_chart import build_equity_chart
from cli.report import report_command
from cli.requests import submit_command, submit_signal
from cli.status import status_command
from config.settings import load_settings
from database.daemons import DaemonRegistry
from database.migrate import EARLIER_CHECKSUMS, discover
from database.reports import (
    OpenPnl,
    daily_pnl,
    finished_trades,
    list_orders,
    list_positions,
    open_pnl,
    performance,
)
from database.repository import Repository

NOW = datetime.now(UTC)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


async def add_position(
    pool: asyncpg.Pool,
    *,
    pnl: str,
    closed_ago: timedelta | None,
    status: str = "closed",
    account: str = "main",
    symbol: str = BTC,
    fees: str = "0.5",
) -> int:
    """A position row with its exit trade (realised P&L) at the close time."""
    closed_at = None if closed_ago is None else NOW - closed_ago
    position_id = int(
        await pool.fetchval(
            "INSERT INTO monitoring.positions (account, exchange, symbol, side, quantity, "
            "entry_price, status, realized_pnl, fees, opened_at, closed_at) VALUES "
            "($1, 'paper', $2, 'long', 0, 100, $3, $4::numeric, $5::numeric, $6, $7) "
            "RETURNING id",
            account,
            symbol,
            status,
            pnl,
            fees,
            (closed_at or NOW) - timedelta(hours=1),
            closed_at,
        )
    )
    if closed_at is not None:
        await pool.execute(
            "INSERT INTO monitoring.trades (position_id, exchange, symbol, side, order_type, "
            "price, executed_qty, trade_id, fee, realized_pnl, executed_at) VALUES "
            "($1, 'paper', $2, 'sell', 'STOP_MARKET', 100, 1, $3, $4::numeric, $5::numeric, $6)",
            position_id,
            symbol,
            f"t{position_id}",
            fees,
            pnl,
            closed_at,
        )
    return position_id


async def history(pool: asyncpg.Pool) -> None:
    """Wins and losses over ten days, a rollback, an open position, another account."""
    await add_position(pool, pnl="40", closed_ago=timedelta(days=10))
    await add_position(pool, pnl="-25", closed_ago=timedelta(days=9))
    await add_position(pool, pnl="-10", closed_ago=timedelta(days=2))
    await add_position(pool, pnl="30", closed_ago=timedelta(days=1))
    await add_position(pool, pnl="-2.5", closed_ago=timedelta(hours=3), status="rolled_back")
    await add_position(pool, pnl="0", closed_ago=None, status="active", symbol=ETH)
    await add_position(pool, pnl="999", closed_ago=timedelta(days=1), account="other")


async def test_report_without_window_equals_the_performance_view(pool: asyncpg.Pool) -> None:
    """All time, the CLI's figures are exactly monitoring.performance's for the account."""
    await history(pool)
    view = dict(await pool.fetchrow("SELECT * FROM monitoring.performance WHERE account = 'main'"))
    mine = await performance(pool, "main", None)
    assert {k: v for k, v in view.items() if k != "account"} == {
        k: v for k, v in mine.items() if k != "trades"
    }
    assert (5, Decimal("32.5"), Decimal("35")) == (
        mine["trades"],
        mine["total_pnl"],
        mine["max_drawdown"],
    )


async def test_report_window_counts_only_positions_finished_inside_it(pool: asyncpg.Pool) -> None:
    """--since 3d: the two old trades drop out; drawdown restarts from 0 in the window."""
    await history(pool)
    figures = await performance(pool, "main", NOW - timedelta(days=3))
    assert {
        "trades": 3,
        "closed_positions": 2,
        "rolled_back_positions": 1,
        "wins": 1,
        "losses": 2,
        "win_rate": Decimal("0.3333"),
        "profit_factor": Decimal("2.4000"),
        "avg_win": Decimal("30.00000000"),
        "avg_loss": Decimal("-6.25000000"),
        "total_pnl": Decimal("17.5"),
        "total_fees": Decimal("1.5"),
        "max_drawdown": Decimal("10"),
    } == {k: figures[k] for k in figures if not k.endswith("_closed_at")}


async def test_daily_pnl_matches_the_view_and_accumulates(pool: asyncpg.Pool) -> None:
    """Per UTC day, the same sums as monitoring.daily_pnl, with a running total."""
    await history(pool)
    view = await pool.fetch(
        "SELECT day, trades, exits, realized_pnl, fees, cumulative_pnl "
        "FROM monitoring.daily_pnl WHERE account = 'main' ORDER BY day"
    )
    assert [dict(r) for r in view] == await daily_pnl(pool, "main", None)
    recent = await daily_pnl(pool, "main", NOW - timedelta(days=3))
    assert Decimal("17.5") == recent[-1]["cumulative_pnl"]


async def test_finished_trades_are_the_performance_figures_trades(pool: asyncpg.Pool) -> None:
    """The chart's trades are the account's finished positions in closing order, and the
    chart built from them has the performance figures' total, win rate and drawdown, all
    time and over a window."""
    await history(pool)
    trades = await finished_trades(pool, "main", None)
    assert [Decimal(v) for v in ("40", "-25", "-10", "30", "-2.5")] == [t.pnl for t in trades]
    assert [t.closed_at for t in trades] == sorted(t.closed_at for t in trades)
    assert all(t.opened_at == t.closed_at - timedelta(hours=1) for t in trades)
    for since in (None, NOW - timedelta(days=3)):
        window = await finished_trades(pool, "main", since)
        chart = build_equity_chart(
            window, None, account="main", venue="paper", period="p", since=since, until=NOW
        )
        figures = await performance(pool, "main", since)
        assert (figures["total_pnl"], figures["max_drawdown"], figures["win_rate"]) == (
            chart.total_pnl,
            chart.max_drawdown,
            None if chart.win_rate is None else chart.win_rate.quantize(Decimal("0.0001")),
        )
    assert [Decimal(v) for v in ("0", "40", "15", "5", "35", "32.5")] == list(
        build_equity_chart(
            trades, None, account="main", venue="paper", period="p", since=None, until=NOW
        ).equity
    )


async def test_open_pnl_sums_the_accounts_open_positions_net_of_entry_fees(
    pool: asyncpg.Pool,
) -> None:
    """Open P&L is unrealised P&L less the entry fees still carried, over the account's
    open positions holding a quantity, as of their latest sample; none open: zero."""
    assert OpenPnl(0, Decimal(0), None, ()) == await open_pnl(pool, "main")
    await history(pool)
    sampled = NOW - timedelta(seconds=5)
    await pool.execute(
        "UPDATE monitoring.positions SET quantity = 1, unrealized_pnl = 12, "
        "open_entry_fees = 0.5, updated_at = $1 WHERE status = 'active'",
        sampled,
    )
    await add_position(pool, pnl="0", closed_ago=None, status="active", account="other")
    await pool.execute(
        "UPDATE monitoring.positions SET quantity = 2, unrealized_pnl = 100 "
        "WHERE account = 'other' AND status = 'active'"
    )
    await add_position(pool, pnl="0", closed_ago=None, status="pending_entry", symbol=BTC)
    assert OpenPnl(1, Decimal("11.5"), sampled, (ETH,)) == await open_pnl(pool, "main")


@pytest.mark.parametrize("suffix", [".png", ".svg"])
async def test_report_json_and_plot(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """report --json --plot prints the figures as JSON (Decimals as strings) and writes the
    chart in the format of the file's extension."""
    await history(pool)
    path = tmp_path / f"equity{suffix}"
    code = await report_command(
        pool, "main", venue="paper", window=timedelta(days=7), as_json=True, plot=path
    )
    report = json.loads(capsys.readouterr().out)
    assert 0 == code
    assert (3, "17.5", "1.5", str(path)) == (
        report["trades"],
        report["total_pnl"],
        report["fees"],
        report["plot"],
    )
    head = path.read_bytes()[:200]
    if suffix == ".png":
        assert head.startswith(b"\x89PNG\r\n\x1a\n")
    else:
        assert b"<svg" in head


async def test_report_plot_to_an_unwritable_place_is_one_line(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A --plot file that cannot be written fails the command with one line naming it."""
    await history(pool)
    path = tmp_path / "missing-dir" / "equity.png"
    with pytest.raises(CommandFailed) as failed:
        await report_command(pool, "main", venue="paper", window=None, as_json=True, plot=path)
    assert str(failed.value).startswith(f"argument --plot: cannot write {path}: ")
    assert "\n" not in str(failed.value)


async def test_listings_filter_by_account_and_status(pool: asyncpg.Pool) -> None:
    """Default: the account's open positions / live orders; include_terminal: all of its."""
    await history(pool)
    repo = Repository(pool)
    for cid, status in (("td-main-a", "NEW"), ("td-main-b", "FILLED"), ("td-other-c", "NEW")):
        await repo.upsert_order(
            {
                "client_order_id": cid,
                "account": "other" if "other" in cid else "main",
                "exchange": "paper",
                "symbol": BTC,
                "type": "LIMIT",
                "side": "buy",
                "purpose": "manual",
                "size": Decimal(1),
                "status": status,
                "filled": Decimal(0),
                "fee": Decimal(0),
                "reduce_only": False,
                "emulated": True,
                "created_at": NOW,
                "updated_at": NOW,
                "version": 1,
            }
        )
    open_positions = await list_positions(pool, "main", include_terminal=False)
    assert [ETH] == [p["symbol"] for p in open_positions]
    assert 6 == len(await list_positions(pool, "main", include_terminal=True))
    assert ["td-main-a"] == [
        o["client_order_id"] for o in await list_orders(pool, "main", include_terminal=False)
    ]
    assert ["td-main-a", "td-main-b"] == [
        o["client_order_id"] for o in await list_orders(pool, "main", include_terminal=True)
    ]


async def _fake_daemon(pool: asyncpg.Pool, outcome: str, reason: str | None = None) -> None:
    """Claim the next request and record ``outcome`` for it, as the daemon would."""
    repo = Repository(pool)
    while True:
        if signals := await repo.claim_signals("main"):
            await repo.finish_signal(signals[0]["id"], outcome, reason, None)
            return
        if commands := await repo.claim_commands("main"):
            result = {"client_order_id": "td-main-r1-mo-1", "status": "PENDING"}
            await repo.finish_command(commands[0]["id"], outcome, reason, result)
            return
        await asyncio.sleep(0.05)


async def test_signal_request_row_and_waiting_outcomes(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    """The row gets the account and values; done exits 0, rejected 1 with the reason, and
    nobody answering 2."""
    row: dict[str, Any] = {"symbol": BTC, "side": "long", "amount": Decimal("0.01")}
    row["stop_loss_percent"] = Decimal(2)
    daemon = asyncio.create_task(_fake_daemon(pool, "done"))
    assert 0 == await submit_signal(pool, row, "main", wait_s=5)
    await daemon
    out = capsys.readouterr().out.splitlines()
    stored = await Repository(pool).get_signal(int(out[0]))
    assert stored is not None
    assert ("main", Decimal("0.01"), Decimal(2), "done") == (
        stored["account"],
        stored["amount"],
        stored["stop_loss_percent"],
        stored["status"],
    )
    assert out[1].startswith("done")

    daemon = asyncio.create_task(_fake_daemon(pool, "rejected", "symbol: unknown market"))
    assert 1 == await submit_signal(pool, row, "main", wait_s=5)
    await daemon
    assert "rejected: symbol: unknown market\n" == capsys.readouterr().err

    assert 2 == await submit_signal(pool, row, "main", wait_s=0.2)
    assert "the daemon is probably not running" in capsys.readouterr().err
    assert 0 == await submit_signal(pool, row, "main", wait_s=None)


async def test_command_request_prints_the_result(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A done command prints the daemon's result; its payload is stored as sent."""
    payload = {"symbol": BTC, "side": "buy", "type": "LIMIT", "amount": "0.01", "price": "5"}
    daemon = asyncio.create_task(_fake_daemon(pool, "done"))
    assert 0 == await submit_command(pool, "place_order", payload, "main", wait_s=5)
    await daemon
    out = capsys.readouterr().out.splitlines()
    stored = await Repository(pool).get_command(int(out[0]))
    assert stored is not None
    assert (payload, "place_order", "main") == (
        stored["payload"],
        stored["kind"],
        stored["account"],
    )
    assert "done: client_order_id=td-main-r1-mo-1 status=PENDING" == out[1]


async def test_status_says_nothing_is_stranded_in_words_true_beside_a_live_daemon(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status`` with no request waiting: the same line with no daemon and under a live
    daemon's row (an earlier wording, "without a live daemon", contradicted that row)."""
    assert 0 == await status_command(pool)
    assert [
        "no daemon has ever run on this database",
        "no request left waiting for a daemon",
    ] == capsys.readouterr().out.splitlines()
    async with DaemonRegistry(pool, "main", "paper", ["BTC/USDT:USDT"], {}):
        assert 0 == await status_command(pool)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["main", "live"]
    assert "no request left waiting for a daemon" == lines[-1]


async def test_check_passes_on_a_migrated_database(
    migrated_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Settings, database, migrations, audit trail, the paper venue, no request waiting:
    all fine, no problem lines (no daemon live is not a problem: check runs before a start
    too)."""
    settings = load_settings(database_url=migrated_url, state_dir=tmp_path)
    findings = await run_checks(settings)
    assert [] == findings.problems
    assert [
        "settings: valid",
        "database: reachable",
        f"migrations: {len(discover())} applied",
        "audit: trail kept, no dead letters",
        "exchange: paper venue (simulated)",
        "daemon: none live for account 'main'",
        "intake: no request left waiting for a daemon",
    ] == findings.ok


async def test_check_accepts_an_earlier_wording_and_names_a_changed_migration(
    migrated_url: str, tmp_path: Path
) -> None:
    """check takes 0001's checksum as released (its comments alone were reworded since) as
    applied, and names 0001 on one line when the recorded checksum is neither wording."""
    (earlier,) = EARLIER_CHECKSUMS["0001_monitoring.sql"]
    current = next(m.checksum for m in discover() if m.name == "0001_monitoring.sql")
    settings = load_settings(database_url=migrated_url, state_dir=tmp_path)
    set_checksum = "UPDATE monitoring.schema_migrations SET checksum = $1 WHERE name = $2"
    conn = await asyncpg.connect(migrated_url)
    try:
        await conn.execute(set_checksum, earlier, "0001_monitoring.sql")
        accepted = await run_checks(settings)
        await conn.execute(set_checksum, "0" * 64, "0001_monitoring.sql")
        refused = await run_checks(settings)
    finally:
        await conn.execute(set_checksum, current, "0001_monitoring.sql")
        await conn.close()
    assert [] == accepted.problems
    assert ["migrations: changed after being applied: 0001_monitoring.sql"] == refused.problems


async def test_check_lists_requests_no_live_daemon_takes(
    migrated_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A signal for an account no daemon ever served is a problem line naming it and why."""
    signal_id = await pool.fetchval(
        "INSERT INTO monitoring.signals (account, symbol, side, amount) "
        "VALUES ('someoneelse', 'BTC/USDT:USDT', 'long', 1) RETURNING id"
    )
    settings = load_settings(database_url=migrated_url, state_dir=tmp_path)
    findings = await run_checks(settings)
    assert [
        "intake: 1 request(s) wait with no live daemon to take them (monitoring.waiting_requests)",
        f"intake: signal {signal_id} for 'someoneelse': no daemon has ever served this account",
    ] == findings.problems


async def test_check_reports_each_problem_on_one_line_without_secrets(tmp_path: Path) -> None:
    """An unreachable database and an exchange without credentials are two lines, and the
    URL's password is in neither."""
    url = "postgresql://postgres:hunter2-secret@127.0.0.1:1/trader"
    settings = load_settings(database_url=url, state_dir=tmp_path, exchange="bybit")
    findings = await run_checks(settings, database_timeout_s=0.2)
    assert 2 == len(findings.problems), findings.problems
    database, exchange = findings.problems
    assert database.startswith("database: unreachable: ")
    assert "hunter2" not in database and "127.0.0.1:1/trader" not in database
    assert "exchange: bybit: TRADER_API_KEY and TRADER_API_SECRET must be set" == exchange


async def test_profit_factor_is_zero_with_losses_and_no_wins(pool: asyncpg.Pool) -> None:
    """Only losing trades: profit factor 0 (nothing won), in the view and in a window."""
    await add_position(pool, pnl="-10", closed_ago=timedelta(days=2))
    await add_position(pool, pnl="-5", closed_ago=timedelta(hours=1))
    view = await pool.fetchval(
        "SELECT profit_factor FROM monitoring.performance WHERE account = 'main'"
    )
    windowed = await performance(pool, "main", NOW - timedelta(days=1))
    assert (Decimal(0), Decimal(0)) == (view, windowed["profit_factor"])


async def test_profit_factor_is_undefined_without_losses(pool: asyncpg.Pool) -> None:
    """Only winning (or flat) trades: no gross loss to divide by, profit factor NULL."""
    await add_position(pool, pnl="10", closed_ago=timedelta(days=2))
    await add_position(pool, pnl="0", closed_ago=timedelta(days=1))
    assert None is (await performance(pool, "main", None))["profit_factor"]
