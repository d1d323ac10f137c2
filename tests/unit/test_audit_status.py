"""The audit trail's state as an operator reads it: STATUS= and ``check`` name a degraded
trail and waiting dead letters, and say nothing when all is well."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.check import Findings, check_audit
from cli.systemd import audit_status
from config.settings import Settings
from core.records import event_record
from database.audit_state import TrailState, read_state
from database.codec import encode_record
from database.dead_letters import DEAD_LETTER_FILE, DeadLetterCounter, append_dead_letters


@dataclass
class FakeWriter:
    degraded: bool = False
    degraded_reason: str | None = None
    dead_letter_count: int = 0
    dead_letter_oldest_age_s: float | None = None


def test_status_line_is_empty_when_the_trail_is_whole() -> None:
    """Nothing to say: no audit words in STATUS=."""
    assert audit_status(FakeWriter()) == ""


def test_status_line_names_degraded_state_and_dead_letters_on_one_line() -> None:
    """Degraded (reason flattened to one line) and the dead-letter count with its age."""
    text = audit_status(FakeWriter(True, "schema mismatch:\nhost", 2, 61.0))
    assert "\n" not in text
    assert text.startswith("AUDIT DEGRADED, no new entries or orders: schema mismatch: host")
    assert "dead_letters=2, oldest 61s" in text


def _dead_letter(directory: Path) -> None:
    line = encode_record(event_record("x", "y"))
    append_dead_letters(directory, [b'{"error":"E","at":"2026-01-01T00:00:00+00:00",' + line[1:]])


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TRADER_STATE_DIR", str(tmp_path))
    return Settings()


def test_check_reports_degraded_state_and_dead_letters(settings: Settings) -> None:
    """check: a problem line for a running daemon's degraded trail and one for the dead
    letters (with the replay command); an ok line once neither is there."""
    directory = settings.spool_dir / settings.account
    directory.mkdir(parents=True)
    state = TrailState(directory)
    state.open()
    state.set(disk="database unavailable and spool refused: [Errno 28]")
    _dead_letter(directory)
    found = Findings()
    check_audit(settings, found)
    assert len(found.problems) == 2
    assert found.problems[0].startswith("audit: degraded since ")
    assert "Errno 28" in found.problems[0]
    assert "audit: 1 dead letters" in found.problems[1]
    assert "main.py audit replay" in found.problems[1]

    state.set(disk=None)
    (directory / DEAD_LETTER_FILE).write_bytes(b"")
    found = Findings()
    check_audit(settings, found)
    assert (found.ok, found.problems) == (["audit: trail kept, no dead letters"], [])
    state.close()
    assert read_state(directory) is None  # a stopped daemon's file says nothing


def test_dead_letter_counter_follows_the_file(tmp_path: Path) -> None:
    """Count and age are re-read when the file changes (a replay elsewhere)."""
    counter = DeadLetterCounter(tmp_path)
    assert (counter.summary().count, counter.summary().oldest_age_s) == (0, None)
    _dead_letter(tmp_path)
    _dead_letter(tmp_path)
    assert counter.summary().count == 2
    assert (counter.summary().oldest_age_s or 0) > 0
    os.truncate(tmp_path / DEAD_LETTER_FILE, 0)
    assert counter.summary().count == 0


def test_metrics_show_degraded_trail_and_dead_letters() -> None:
    """/metrics: the degraded flag, the dead-letter count and the oldest one's age."""
    from types import SimpleNamespace

    from cli.metrics import TraderMetrics

    daemon = SimpleNamespace(
        book=[],
        tick_loop=SimpleNamespace(ticks=0, symbol_seen={}),
        orders=SimpleNamespace(active_orders=list),
    )
    metrics = TraderMetrics()
    audit = SimpleNamespace(queue_depth=0, spool_bytes=0, **vars(FakeWriter(True, "disk", 3, 42.0)))
    metrics.refresh(daemon, audit)  # type: ignore[arg-type]
    value = metrics.registry.get_sample_value
    assert 1.0 == value("trader_audit_degraded")
    assert 3.0 == value("trader_audit_dead_letters")
    assert 42.0 == value("trader_audit_dead_letter_age_seconds")
    whole = SimpleNamespace(queue_depth=0, spool_bytes=0, **vars(FakeWriter()))
    metrics.refresh(daemon, whole)  # type: ignore[arg-type]
    assert (0.0, 0.0) == (value("trader_audit_degraded"), value("trader_audit_dead_letters"))
