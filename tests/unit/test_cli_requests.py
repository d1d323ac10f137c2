"""Waiting for a request's outcome and the exit code each outcome maps to."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cli.requests import _finished, describe, wait_for_outcome


class Rows:
    """A fake request row whose status advances on each read."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = list(statuses)
        self.reads = 0

    async def fetch(self) -> dict[str, Any] | None:
        status = self.statuses[min(self.reads, len(self.statuses) - 1)]
        self.reads += 1
        return {"status": status, "reason": "amount: must be greater than 0"}


async def test_waiting_stops_at_the_first_final_status() -> None:
    """new -> processing -> done: three reads, then the done row."""
    rows = Rows("new", "processing", "done", "done")
    row = await wait_for_outcome(rows.fetch, wait_s=5)
    assert row is not None
    assert ("done", 3) == (row["status"], rows.reads)


async def test_waiting_gives_up_after_the_timeout_with_the_last_row() -> None:
    """A row nobody takes: returned still new after about the wait."""
    rows = Rows("new")
    started = time.monotonic()
    row = await wait_for_outcome(rows.fetch, wait_s=0.35)
    elapsed = time.monotonic() - started
    assert row is not None
    assert "new" == row["status"]
    assert 0.35 <= elapsed < 1.0
    assert 3 <= rows.reads <= 6  # polled about every 100 ms


@pytest.mark.parametrize(
    ("row", "code", "message"),
    [
        ({"status": "done", "reason": None}, 0, ""),
        ({"status": "rejected", "reason": "symbol: unknown"}, 1, "rejected: symbol: unknown"),
        ({"status": "failed", "reason": None}, 1, "failed: no reason given"),
        ({"status": "new", "reason": None}, 2, "the daemon is probably not running"),
        ({"status": "processing", "reason": None}, 2, "still being processed"),
        (None, 2, "the daemon is probably not running"),
    ],
)
def test_outcome_exit_codes(
    row: dict[str, Any] | None, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """done 0; rejected / failed 1 with the reason; no outcome 2 saying why."""
    assert code == _finished("signal", 5, row, 2.0)
    err = capsys.readouterr().err
    assert message in err
    assert (1 if code else 0) == len(err.splitlines())


def test_describe_puts_the_usual_keys_first_and_skips_empty_values() -> None:
    """jsonb loses key order: results print in a fixed, readable one."""
    result = {"symbol": "BTC/USDT:USDT", "zeta": 1, "status": "NEW", "order_id": None}
    result["client_order_id"] = "td-main-r2-mo-1"
    assert "client_order_id=td-main-r2-mo-1 status=NEW symbol=BTC/USDT:USDT zeta=1" == describe(
        result
    )
