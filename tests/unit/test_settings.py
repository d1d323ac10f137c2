"""Settings validation: every bad value is one line naming the setting; secrets never shown."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("TRADER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_the_documented_ones() -> None:
    """With no settings at all: paper venue, synthetic feed, embedded database, 2 % stop."""
    s = load_settings()
    assert ("paper", "synthetic", "main") == (s.exchange, s.feed, s.account)
    assert s.uses_embedded_database
    assert Decimal("2") == s.stop_loss_percent
    assert ("BTC/USDT:USDT", "ETH/USDT:USDT") == s.symbols
    assert s.take_profit_percent is None


def test_a_ccxt_exchange_defaults_to_the_exchange_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real exchange without TRADER_FEED gets the exchange feed."""
    monkeypatch.setenv("TRADER_EXCHANGE", "bybit")
    assert "exchange" == load_settings().feed


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("TRADER_STOP_LOSS_PERCENT", "-1", "percentage"),
        ("TRADER_TAKE_PROFIT_PERCENT", "NaN", "percentage"),
        ("TRADER_EXCHANGE", "notanexchange", "unknown exchange"),
        ("TRADER_DATABASE_URL", "mysql://u:pw@h/db", "postgresql://"),
        ("TRADER_FEED", "carrier-pigeon", "synthetic"),
        ("TRADER_FEED_SPEED", "-2", "positive"),
        ("TRADER_PAPER_FAULTS", "reject_stop=2", "<= 1"),
        ("TRADER_PAPER_FAULTS", "explode=1", "unknown fault"),
        ("TRADER_METRICS_PORT", "70000", "port"),
        ("TRADER_METRICS_ADDRESS", "localhost; rm -rf", "IP address"),
        ("TRADER_LOG_FORMAT", "xml", "json"),
        ("TRADER_ACCOUNT", "a b", "letters"),
        ("TRADER_SYMBOLS", " , ", "at least one"),
        ("TRADER_LEVERAGE", "0", "(0, 200]"),
        ("TRADER_LEVERAGE", "NaN", "finite"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    """Each bad value fails with a single line starting with the setting's name."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"{name}: ")
    assert needle in line


def test_secrets_are_masked_in_repr_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """An API secret and a database password never appear in repr or in a settings error."""
    monkeypatch.setenv("TRADER_API_SECRET", "s3cr3t-api-value")
    monkeypatch.setenv("TRADER_DATABASE_URL", "mysql://user:hunter2pw@db/x")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "hunter2pw" not in str(err.value)
    monkeypatch.setenv("TRADER_DATABASE_URL", "postgresql://user:hunter2pw@db/x")
    s = load_settings()
    assert "s3cr3t-api-value" not in repr(s) + str(s)
    assert "hunter2pw" not in repr(s) + str(s)
    assert "s3cr3t-api-value" == s.api_secret.get_secret_value()


def test_fault_list_parses_names_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRADER_PAPER_FAULTS is a name=value comma list."""
    monkeypatch.setenv("TRADER_PAPER_FAULTS", "reject_stop=0.5, latency_ms=20,position_lag_s=5")
    faults = load_settings().paper_faults
    expected = {"reject_stop": Decimal("0.5"), "latency_ms": Decimal(20), "position_lag_s": 5}
    assert expected == faults


def test_percent_accepts_a_trailing_percent_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    """'1.5%' and '1.5' mean the same percentage."""
    monkeypatch.setenv("TRADER_BREAKEVEN_PERCENT", "1.5%")
    assert Decimal("1.5") == load_settings().breakeven_percent


def test_settings_are_immutable() -> None:
    """Settings are frozen once loaded."""
    s = Settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        s.account = "other"  # type: ignore[misc]


def test_cli_prints_one_line_for_a_bad_setting_and_exits_1(tmp_path: Path) -> None:
    """`main.py check`-style start with a bad value: exit 1, one line, secret absent."""
    env = {
        "PATH": "/usr/bin:/bin",
        "TRADER_STOP_LOSS_PERCENT": "-5",
        "TRADER_API_KEY": "topsecretkey123",
        "TRADER_STATE_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "migrate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert 1 == proc.returncode
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert 1 == len(lines), lines
    assert lines[0].startswith("TRADER_STOP_LOSS_PERCENT")
    assert "topsecretkey123" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_log_format_setting_picks_json_or_key_value_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """TRADER_LOG_FORMAT=json gives one JSON object per line, console gives readable
    key=value lines, whatever stdout is; the daemon's start-up applies it."""
    import json

    import structlog

    from cli.service import setup

    monkeypatch.setenv("TRADER_LOG_FORMAT", fmt)
    settings = load_settings()
    try:
        setup(settings)
        structlog.configure(cache_logger_on_first_use=False)
        structlog.get_logger("t").info("order_placed", client_order_id="td-main-p7-sl-1")
    finally:
        structlog.reset_defaults()
    [line] = capsys.readouterr().out.splitlines()
    if fmt == "json":
        parsed = json.loads(line)
        assert ("order_placed", "td-main-p7-sl-1", "info") == (
            parsed["event"],
            parsed["client_order_id"],
            parsed["level"],
        )
    else:
        assert (False, True) == (
            line.startswith("{"),
            "order_placed client_order_id=td-main-p7-sl-1" in line,
        )
