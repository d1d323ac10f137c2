"""Secrets given in the environment never reach a log line, an error, a table or a file."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.e2e.conftest import BTC, Trader, with_password


def _files_text(directory: Path) -> str:
    """Every file under ``directory``, as text."""
    return "\n".join(
        p.read_bytes().decode(errors="replace") for p in sorted(directory.rglob("*")) if p.is_file()
    )


def test_secrets_never_appear_in_logs_errors_tables_or_state(trader: Trader) -> None:
    """API key / secret / password and the database password, set in the environment,
    appear nowhere: not in the daemon's DEBUG log, the CLI's output and errors (a bad URL,
    an unreachable database, a rejected request), the monitoring tables or the state files."""
    api_key = "key-" + secrets.token_hex(8)
    api_secret = "secret-" + secrets.token_hex(8)
    api_password = "pass-" + secrets.token_hex(8)
    db_password = "dbpw-" + secrets.token_hex(8)
    url = with_password(trader.db.url, db_password)
    if url == trader.db.url:
        pytest.skip("the test server is reached through a Unix socket: no URL password to set")
    trader.env.update(
        TRADER_API_KEY=api_key,
        TRADER_API_SECRET=api_secret,
        TRADER_API_PASSWORD=api_password,
        TRADER_DATABASE_URL=url,
        TRADER_LOG_LEVEL="DEBUG",
    )
    daemon = trader.daemon().start().wait_ready()
    refused = f"postgresql://postgres:{db_password}@127.0.0.1:1/trader"
    outputs = [
        trader.cli(
            "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01", "--wait", "20"
        ),
        trader.cli("signal", "--symbol", "NOPE/USDT:USDT", "--side", "long", "--amount", "1",
                   "--wait", "20"),
        trader.cli("close", "999999", "--wait", "20"),  # the daemon rejects it
        trader.cli("positions", "--all"),
        trader.cli("report", "--json"),
        trader.cli("check"),
        # A database that refuses the connection: the error names it without the URL.
        trader.cli("check", TRADER_DATABASE_URL=refused),
        # A URL that is not PostgreSQL's: a settings error that must not echo it.
        trader.cli("orders", TRADER_DATABASE_URL=f"mysql://root:{db_password}@db/x"),
        trader.cli("check", TRADER_DATABASE_URL=f"mysql://root:{db_password}@db/x"),
    ]  # fmt: skip
    # An unknown market is an input error (exit 2): the CLI checks it before queueing.
    assert [0, 2, 1, 0, 0, 0, 1, 1, 1] == [o.returncode for o in outputs]
    assert "database: unreachable: ConnectionRefusedError" in outputs[6].stderr
    trader.feed.ticks([59000, 55000])  # stop the position out: more orders, trades, events
    trader.db.wait_for("SELECT count(*) FROM monitoring.positions WHERE status = 'closed'")
    assert 0 == daemon.terminate()

    tables = trader.db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'monitoring' ORDER BY tablename"
    )
    dump = "\n".join(
        row["t"]
        for table in tables
        for row in trader.db.fetch(f'SELECT t::text AS t FROM monitoring."{table["tablename"]}" t')
    )
    assert "stop_loss" in dump and "daemon_stop" in dump  # the dump really holds the trail
    everything = {
        "daemon log": daemon.text(),
        "cli output": "\n".join(o.stdout + o.stderr for o in outputs),
        "tables": dump,
        "state files": _files_text(trader.state_dir),
    }
    for where, text in everything.items():
        for secret in (api_key, api_secret, api_password, db_password):
            assert secret not in text, f"a secret leaked into the {where}"
