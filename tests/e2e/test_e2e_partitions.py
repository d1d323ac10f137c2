"""The partitioned audit trail as a trader meets it: fills in the month's partition, a
retention set in plain SQL applied by the daemon, nothing else removed."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.e2e.conftest import BTC, Trader, wait_until


def test_fills_land_in_their_month_and_a_retention_set_in_sql_applies(trader: Trader) -> None:
    """A position's fills are in the current UTC month's partition of trades; after
    ``UPDATE monitoring.audit_partitioning SET retention`` on events, the next daemon
    start removes the events past it (and logs it), keeps the recent ones, and keeps a
    row dated beyond the made partitions in the default partition."""
    daemon = trader.daemon().start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01",
        "--stop-loss", "1%", "--wait", "20",
    )  # fmt: skip
    assert 0 == opened.returncode, opened.stderr
    position_id = trader.db.fetchval(
        "SELECT position_id FROM monitoring.signals WHERE id = $1",
        int(opened.stdout.splitlines()[0]),
    )
    where = trader.db.fetch(
        "SELECT DISTINCT tableoid::regclass::text AS part FROM monitoring.trades"
        " WHERE position_id = $1",
        position_id,
    )
    assert [r["part"] for r in where] == [f"monitoring.trades_p{datetime.now(UTC):%Y%m}"]
    assert 0 == daemon.terminate()
    recent = trader.db.fetchval("SELECT count(*) FROM monitoring.events")
    assert recent > 0

    trader.db.execute(
        "UPDATE monitoring.audit_partitioning SET retention = '30 days' WHERE table_name = 'events'"
    )
    trader.db.execute(
        "INSERT INTO monitoring.events (event_key, kind, message, created_at) VALUES"
        " ('stale', 'alert', 'forty days old', now() - interval '40 days'),"
        " ('ahead', 'alert', 'dated 2045', '2045-01-01T00:00:00Z')"
    )
    again = trader.daemon("daemon2.log").start().wait_ready()

    def deleted() -> list[dict[str, object]]:
        return [e for e in again.events() if e.get("event") == "audit_partition_deleted"]

    (line,) = wait_until(deleted, bool, 20, "the retention pass on events")
    assert (line["table"], line["rows"]) == ("events", 1)
    assert (
        trader.db.fetchval("SELECT count(*) FROM monitoring.events WHERE event_key = 'stale'") == 0
    )
    assert (
        trader.db.fetchval(
            "SELECT tableoid::regclass::text FROM monitoring.events WHERE event_key = 'ahead'"
        )
        == "monitoring.events_default"
    )
    # Everything the first run recorded is within the 30 days: all of it kept.
    assert (
        trader.db.fetchval(
            "SELECT count(*) FROM monitoring.events WHERE created_at > now() - interval '1 day'"
            " AND event_key <> 'ahead'"
        )
        >= recent
    )
    assert 0 == again.terminate()
