"""No new risk while the audit trail cannot be kept, as a trader meets it: the database
starts refusing every position sample (a NOT NULL column this daemon does not write);
the daemon says so (log, check), rejects new entries and orders with "audit trail
unavailable", still closes what it holds, and trades again once the column is fixed,
with every held record written and nothing dead-lettered."""

from __future__ import annotations

from typing import Any

from core.records import AuditRecord, RecordKind, event_record
from database.codec import encode_record
from tests.e2e.conftest import BTC, START_PRICE, Trader, wait_until


def _logged(daemon: Any, event: str) -> bool:
    return any(e.get("event") == event for e in daemon.events())


def test_schema_refusal_stops_new_risk_until_fixed(trader: Trader) -> None:
    """Degraded while the schema refuses samples: signal and order rejected, close done,
    check exit 1 naming the column; after the fix: recovered, the close in the database,
    a new signal done, no dead letters."""
    daemon = trader.daemon().start().wait_ready()
    opened = trader.cli(
        "signal", "--symbol", BTC, "--side", "long", "--amount", "0.01", "--wait", "20"
    )
    assert 0 == opened.returncode, opened.stderr
    (position_id,) = [p["id"] for p in trader.cli_json("positions")]

    trader.db.execute(
        "BEGIN; TRUNCATE monitoring.position_updates; "
        "ALTER TABLE monitoring.position_updates ADD COLUMN host text NOT NULL; COMMIT"
    )
    price = int(START_PRICE)

    def degraded() -> bool:
        nonlocal price
        price += 5
        trader.feed.tick(price)
        return _logged(daemon, "audit_degraded")

    wait_until(degraded, bool, 30, "the audit trail degraded")
    check = trader.cli("check")
    assert 1 == check.returncode
    assert "audit: degraded" in check.stderr
    assert "monitoring.position_updates.host is NOT NULL" in check.stderr

    signal = trader.cli("signal", "--symbol", BTC, "--side", "short", "--amount", "0.01",
                        "--wait", "20")  # fmt: skip
    assert 1 == signal.returncode
    assert "rejected: audit trail unavailable" in signal.stderr
    order = trader.cli(
        "order", "place", "--symbol", BTC, "--side", "buy", "--type", "limit",
        "--amount", "0.01", "--price", "50000", "--wait", "20",
    )  # fmt: skip
    assert 1 == order.returncode
    assert "rejected: audit trail unavailable" in order.stderr
    closed = trader.cli("close", str(position_id), "--wait", "20")
    assert 0 == closed.returncode, closed.stderr

    trader.db.execute("ALTER TABLE monitoring.position_updates ALTER COLUMN host DROP NOT NULL")
    wait_until(lambda: _logged(daemon, "audit_recovered"), bool, 30, "the trail recovered")
    status = wait_until(
        lambda: trader.db.fetchval(
            "SELECT status FROM monitoring.positions WHERE id = $1", position_id
        ),
        lambda s: s == "closed",
        30,
        "the held close written",
    )
    assert "closed" == status
    again = trader.cli("signal", "--symbol", BTC, "--side", "long", "--amount", "0.01",
                       "--wait", "20")  # fmt: skip
    assert 0 == again.returncode, again.stderr
    spool = trader.state_dir / "audit-spool" / "main"
    assert not (spool / "dead-letter.jsonl").exists()
    kinds = {r["kind"] for r in trader.db.fetch("SELECT kind FROM monitoring.events")}
    assert {"audit_degraded", "audit_recovered"} <= kinds
    assert 0 == trader.db.fetchval(
        "SELECT count(*) FROM monitoring.events WHERE kind = 'audit_record_refused'"
    )
    assert not _logged(daemon, "audit_records_shed")
    assert 0 == daemon.terminate()


def test_audit_replay_command_reports_and_is_idempotent(trader: Trader) -> None:
    """``main.py audit replay``: a dead letter whose cause is gone goes in once (reported),
    one still refused stays with its reason (exit 1); a second run writes nothing twice."""
    assert 0 == trader.cli("migrate").returncode
    spool = trader.state_dir / "audit-spool" / "main"
    spool.mkdir(parents=True)
    good = event_record("replayed_kind", "fine now", event_key="dl-good")
    bad = AuditRecord(RecordKind.EVENT, {**good.row, "event_key": "dl-bad", "severity": "nope"})
    stamp = b'{"error":"earlier","at":"2026-01-01T00:00:00+00:00",'
    (spool / "dead-letter.jsonl").write_bytes(
        b"".join(stamp + encode_record(rec)[1:] for rec in (good, bad))
    )
    first = trader.cli("audit", "replay")
    assert 1 == first.returncode
    assert first.stdout.startswith("replayed: 1 written, 1 still refused")
    assert "refused: events event_key=dl-bad: CheckViolationError" in first.stdout
    second = trader.cli("audit", "replay")
    assert second.stdout.startswith("replayed: 0 written, 1 still refused")
    assert 1 == trader.db.fetchval(
        "SELECT count(*) FROM monitoring.events WHERE event_key = 'dl-good'"
    )
    check = trader.cli("check")
    assert "audit: 1 dead letters" in check.stderr
    assert 1 == len((spool / "dead-letter.replayed.jsonl").read_text().splitlines())


def test_schema_drift_refuses_start_in_one_line(trader: Trader) -> None:
    """A database migrated by a newer version: the daemon exits 1 with one line naming the
    newest migration it does not know, and check says the same; a column the writer
    needs gone: start refused naming it."""
    assert 0 == trader.cli("migrate").returncode
    trader.db.execute(
        "INSERT INTO monitoring.schema_migrations (name, checksum) VALUES "
        "('9000_later.sql', 'a'), ('9001_latest.sql', 'b')"
    )
    daemon = trader.daemon().start()
    assert 1 == daemon.wait_exit(30)
    fatal = [e for e in daemon.events() if e.get("event") == "fatal"]
    assert len(fatal) == 1
    assert "migration 9001_latest.sql is not known to this daemon" in fatal[0]["error"]
    check = trader.cli("check")
    assert 1 == check.returncode
    assert "migration 9001_latest.sql is not known" in check.stderr

    trader.db.execute("DELETE FROM monitoring.schema_migrations WHERE name LIKE '900%'")
    trader.db.execute("ALTER TABLE monitoring.orders DROP COLUMN price_source")
    daemon = trader.daemon("daemon2.log").start()
    assert 1 == daemon.wait_exit(30)
    fatal = [e for e in daemon.events() if e.get("event") == "fatal"]
    assert "monitoring.orders lacks column price_source" in fatal[0]["error"]
    assert "monitoring.orders lacks column price_source" in trader.cli("check").stderr
