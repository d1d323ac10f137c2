"""The daemon as a process behind PgBouncer's transaction pooling, as a desk runs it: the
trail through the pooler, the lock and LISTEN on a session URL, driven by plain SQL."""

from __future__ import annotations

from tests.e2e.conftest import BTC, Trader
from tests.pgbouncer import pgbouncer


def test_a_daemon_trades_through_pgbouncer_and_a_second_one_is_refused(
    trader: Trader, fresh_db_url: str
) -> None:
    """Through PgBouncer (transaction mode) with the session URL on the server: a signal
    inserted by SQL is picked up (NOTIFY reaches the LISTEN), opens and protects a position
    whose rows are in monitoring.*; a second daemon for the account is refused."""
    with pgbouncer(fresh_db_url) as through:
        pooled = {
            "TRADER_DATABASE_URL": through,
            "TRADER_DATABASE_POOL_MODE": "transaction",
            "TRADER_SESSION_DATABASE_URL": fresh_db_url,
            # A slow poll: only the NOTIFY can make the signal's pickup quick.
            "TRADER_RECONCILE_INTERVAL_S": "30",
        }
        daemon = trader.daemon(**pooled).start().wait_ready()
        signal_id = trader.db.fetchval(
            "INSERT INTO monitoring.signals (symbol, side, amount) VALUES ($1, 'long', 0.01)"
            " RETURNING id",
            BTC,
        )
        status = trader.db.wait_for(
            "SELECT status FROM monitoring.signals WHERE id = $1 AND status <> ALL($2::text[])",
            signal_id,
            ["new", "processing"],
            timeout_s=30,
        )
        assert "done" == status
        # The signal's status is set at once; the position and its orders reach the trail
        # through the audit writer a moment later, so the test waits for them.
        protected = trader.db.wait_for(
            "SELECT p.status || ':' || count(o.*) FILTER (WHERE o.purpose = 'stop_loss')"
            " FROM monitoring.positions p JOIN monitoring.orders o ON o.position_id = p.id"
            " GROUP BY p.id, p.status",
            until=lambda value: value == "active:1",
        )
        assert "active:1" == protected
        second = trader.daemon("second.log", **pooled).start()
        assert 1 == second.wait_exit(timeout_s=30)
        assert "already running for account 'main'" in second.text()
        assert 0 == daemon.terminate()


def test_transaction_pooling_without_a_session_url_stops_the_start(
    trader: Trader, fresh_db_url: str
) -> None:
    """Pool mode transaction with no session URL ends the start with exit 1 and one line
    naming the setting, before anything is recorded."""
    with pgbouncer(fresh_db_url) as through:
        daemon = trader.daemon(
            TRADER_DATABASE_URL=through, TRADER_DATABASE_POOL_MODE="transaction"
        ).start()
        assert 1 == daemon.wait_exit(timeout_s=30)
    assert "TRADER_SESSION_DATABASE_URL: required, and different from" in daemon.text()
    assert "Traceback" not in daemon.text()


def test_three_accounts_through_pgbouncer_survive_one_killed(
    trader: Trader, fresh_db_url: str
) -> None:
    """Three daemons (three accounts, one database) through PgBouncer each open a position;
    one is killed with SIGKILL; the other two go on closing theirs; the killed one,
    restarted, resumes its position (still one, still protected) and closes it: every
    account ends with one position, one entry and one exit, nothing lost or doubled."""
    accounts = ("alpha", "beta", "gamma")
    with pgbouncer(fresh_db_url) as through:

        def env(account: str) -> dict[str, str]:
            return {
                "TRADER_DATABASE_URL": through,
                "TRADER_DATABASE_POOL_MODE": "transaction",
                "TRADER_SESSION_DATABASE_URL": fresh_db_url,
                "TRADER_ACCOUNT": account,
                "TRADER_STATE_DIR": str(trader.state_dir.parent / f"state-{account}"),
            }

        daemons = {a: trader.daemon(f"{a}.log", **env(a)).start() for a in accounts}
        for daemon in daemons.values():
            daemon.wait_ready()
        for account in accounts:
            trader.db.execute(
                "INSERT INTO monitoring.signals (account, symbol, side, amount)"
                " VALUES ($1, $2, 'long', 0.01)",
                account,
                BTC,
            )
        trader.db.wait_for(
            "SELECT count(*) = 3 FROM monitoring.positions WHERE status = 'active'",
            timeout_s=30,
        )
        ids = {
            r["account"]: r["id"]
            for r in trader.db.fetch("SELECT account, id FROM monitoring.positions")
        }
        daemons["beta"].kill()
        for account in ("alpha", "gamma"):
            closed = trader.cli("close", str(ids[account]), "--wait", "30", **env(account))
            assert 0 == closed.returncode, closed.stderr
        assert daemons["alpha"].running() and daemons["gamma"].running()
        assert "active" == trader.db.fetchval(
            "SELECT status FROM monitoring.positions WHERE id = $1", ids["beta"]
        )
        restarted = trader.daemon("beta-2.log", **env("beta")).start().wait_ready()
        closed = trader.cli("close", str(ids["beta"]), "--wait", "30", **env("beta"))
        assert 0 == closed.returncode, closed.stderr
        rows = trader.db.fetch(
            "SELECT p.account, p.status, count(DISTINCT p.id) AS positions,"
            " count(t.*) FILTER (WHERE t.realized_pnl IS NULL) AS entries,"
            " count(t.*) FILTER (WHERE t.realized_pnl IS NOT NULL) AS exits"
            " FROM monitoring.positions p LEFT JOIN monitoring.trades t ON t.position_id = p.id"
            " GROUP BY p.account, p.status ORDER BY p.account"
        )
        assert [(a, "closed", 1, 1, 1) for a in accounts] == [
            (r["account"], r["status"], r["positions"], r["entries"], r["exits"]) for r in rows
        ]
        for daemon in (daemons["alpha"], daemons["gamma"], restarted):
            assert 0 == daemon.terminate()
