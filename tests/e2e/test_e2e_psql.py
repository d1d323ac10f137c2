"""`main.py psql` and `main.py db-url` as a trader uses them, on a server URL with a
password and on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli.psql import split_password
from tests.e2e.conftest import ROOT, Trader, with_password


def test_split_password_keeps_the_rest_of_the_url() -> None:
    """The URL psql gets has no password; the password comes back decoded, for PGPASSWORD."""
    assert ("postgresql://u@h:5432/db?sslmode=require", "p@ss") == split_password(
        "postgresql://u:p%40ss@h:5432/db?sslmode=require"
    )
    assert ("postgresql://u@h/db", None) == split_password("postgresql://u@h/db")


def test_psql_and_db_url_on_a_server_with_a_password(trader: Trader) -> None:
    """psql runs SQL on the daemon's database; db-url masks the password unless
    --show-secret; the password never appears otherwise."""
    trader.daemon().start().wait_ready()
    url = with_password(trader.env["TRADER_DATABASE_URL"], "Secr3tPw")
    trader.db.execute(
        "INSERT INTO monitoring.signals (symbol, side, amount) VALUES ('XRP/USDT:USDT', 'long', 1)"
    )
    done = trader.cli(
        "psql", "--", "-At", "-c", "select count(*) from monitoring.signals",
        TRADER_DATABASE_URL=url,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    assert "1" == done.stdout.strip()
    masked = trader.cli("db-url", TRADER_DATABASE_URL=url)
    assert "Secr3tPw" not in masked.stdout + masked.stderr and "***" in masked.stdout
    shown = trader.cli("db-url", "--show-secret", TRADER_DATABASE_URL=url)
    assert url == shown.stdout.strip()


def test_psql_on_the_embedded_default(tmp_path: Path) -> None:
    """With no TRADER_DATABASE_URL, psql reaches the embedded server under the state
    directory (started for the session), where `migrate` made the monitoring schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
    env["TRADER_STATE_DIR"] = str(tmp_path / "var")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "main.py", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    assert 0 == run("migrate").returncode
    done = run("psql", "--", "-At", "-c", "select count(*) from monitoring.positions")
    assert 0 == done.returncode, done.stderr
    assert "0" == done.stdout.strip()
    assert str(tmp_path / "var") in run("db-url").stdout
