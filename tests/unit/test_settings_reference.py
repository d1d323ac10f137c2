"""The settings reference is generated from the Settings model and committed as
docs/settings.md; they never drift apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli.settings_reference import REGENERATE, render_markdown, settings_docs
from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_docs_settings_md_is_what_the_model_generates() -> None:
    """docs/settings.md equals `main.py settings --markdown`; the failure says how to fix it."""
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == render_markdown(), f"docs/settings.md is stale: run {REGENERATE}"


def test_every_setting_is_described_with_its_variable_and_default() -> None:
    """Every model field appears once, as TRADER_<NAME>, with a non-empty description."""
    docs = list(settings_docs())
    assert [d.env for d in docs] == [f"TRADER_{n.upper()}" for n in Settings.model_fields]
    assert all(len(d.description) > 20 for d in docs), [d.env for d in docs if not d.description]
    by_env = {d.env: d for d in docs}
    assert ("int", "0") == (
        by_env["TRADER_METRICS_PORT"].type,
        by_env["TRADER_METRICS_PORT"].default,
    )
    assert "./var" == by_env["TRADER_STATE_DIR"].default


def test_the_command_prints_no_secret_even_when_one_is_set(tmp_path: Path) -> None:
    """`main.py settings` runs without a database and never prints a secret's value, even
    with secrets in the environment."""
    env = {
        "PATH": "/usr/bin:/bin",
        "TRADER_API_SECRET": "s3cr3t-value-xyz",
        "TRADER_DATABASE_URL": "postgresql://u:hunter2pw@127.0.0.1:1/x",
    }
    done = subprocess.run(
        [sys.executable, "main.py", "settings"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    assert "TRADER_API_SECRET  (secret, default: (secret, empty))" in done.stdout
    assert "s3cr3t-value-xyz" not in done.stdout + done.stderr
    assert "hunter2pw" not in done.stdout + done.stderr
