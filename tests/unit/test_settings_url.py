"""A malformed database URL is refused at start with one line naming the setting, and its
password never shows, whatever part of the URL is broken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings
from database.errors import safe_url

ROOT = Path(__file__).resolve().parents[2]
URLS = [
    "postgresql://u:pw-s3cret@host:abc/db",
    "postgresql://u:pw-s3cret@host:99999/db",
    "postgresql://u:pw-s3cret@[::1/db",
    "postgresql://u:pw-s3cret@host:0/db",
]


@pytest.mark.parametrize("url", URLS)
def test_malformed_url_names_the_setting_without_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """Bad port or host: one line starting with TRADER_DATABASE_URL, no password in it."""
    monkeypatch.setenv("TRADER_DATABASE_URL", url)
    with pytest.raises(SettingsError) as err:
        load_settings()
    line = str(err.value)
    assert line.startswith("TRADER_DATABASE_URL: ")
    assert "\n" not in line
    assert "pw-s3cret" not in line


def test_migrate_with_a_malformed_url_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    """The command line turns it into exit 1 and a single line on stderr, no traceback."""
    env = {
        **os.environ,
        "TRADER_DATABASE_URL": URLS[0],
        "TRADER_STATE_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "main.py", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert 1 == done.returncode
    assert ["TRADER_DATABASE_URL"] == [line.split(":")[0] for line in output.splitlines()]
    assert "pw-s3cret" not in output


def test_safe_url_never_raises_on_a_bad_port() -> None:
    """Masking a URL whose port is garbage gives a placeholder, not an exception."""
    assert "<unparseable database url>" == safe_url("postgresql://u:pw@host:abc/db")
    assert "postgresql://u:***@host:5432/db" == safe_url("postgresql://u:pw@host:5432/db")


def test_the_database_password_alone_is_a_registered_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The redactor gets the database password by itself as well as the whole URL, so a
    driver message quoting only the password is masked too."""
    monkeypatch.setenv("TRADER_DATABASE_URL", "postgresql://u:pw-s3cret@host:5432/db")
    monkeypatch.setenv("TRADER_API_KEY", "key-123456")
    values = load_settings().secret_values()
    assert {"pw-s3cret", "key-123456", "postgresql://u:pw-s3cret@host:5432/db"} <= set(values)
