"""The CLI checks a request against the daemon serving the account, as published in
monitoring.daemons — never against its own environment — and queues nothing without one."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from cli.connect import EXIT_USAGE, CommandFailed
from cli.requests import admit

BTC = "BTC/USDT:USDT"


async def _publish(pool: asyncpg.Pool, symbols: list[str], *, age_s: int = 0) -> None:
    await pool.execute(
        "INSERT INTO monitoring.daemons (account, host, pid, version, venue, symbols, "
        "heartbeat_at) VALUES ('main', 'h', 1, '0.1.0', 'paper', $1, "
        "now() - make_interval(secs => $2))",
        symbols,
        age_s,
    )


async def _queued(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            "SELECT (SELECT count(*) FROM monitoring.signals) "
            "+ (SELECT count(*) FROM monitoring.commands)"
        )
    )


SIGNAL: dict[str, Any] = {"symbol": "SOL/USDT:USDT", "side": "long", "amount": Decimal("1")}


async def test_symbols_come_from_the_daemons_row_not_the_shell(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the daemon trading BTC only, a SOL signal is refused naming the daemon's
    TRADER_SYMBOLS even though this shell's TRADER_SYMBOLS lists SOL; BTC passes."""
    monkeypatch.setenv("TRADER_SYMBOLS", "SOL/USDT:USDT")
    await _publish(pool, [BTC])
    with pytest.raises(CommandFailed) as refused:
        await admit(pool, "signal", SIGNAL, "main", "main.py signal")
    assert EXIT_USAGE == refused.value.code
    assert (
        "main.py signal: argument --symbol: 'SOL/USDT:USDT' is not among the symbols this "
        f"daemon trades (TRADER_SYMBOLS={BTC})"
    ) == str(refused.value)
    daemon = await admit(pool, "signal", {**SIGNAL, "symbol": "btcusdt"}, "main", "p")
    assert [BTC] == list(daemon["symbols"])
    order = {"symbol": "ETHUSDT", "side": "buy", "type": "LIMIT", "amount": "1", "price": "5"}
    with pytest.raises(CommandFailed) as refused:
        await admit(pool, "place_order", order, "main", "main.py order place")
    assert str(refused.value).startswith("main.py order place: argument --symbol: 'ETHUSDT'")


@pytest.mark.parametrize(
    ("age_s", "why"),
    [
        (None, "no daemon has ever served account 'main'"),
        (60, "the daemon of account 'main' (pid 1 on h) has not been heard from since"),
    ],
)
async def test_no_live_daemon_means_nothing_is_queued(
    pool: asyncpg.Pool, age_s: int | None, why: str
) -> None:
    """Never served, or a heartbeat older than 30 s: refused at once, exit 2, saying so."""
    if age_s is not None:
        await _publish(pool, [BTC], age_s=age_s)
    with pytest.raises(CommandFailed) as refused:
        await admit(pool, "close_position", {"position_id": 1}, "main", "main.py close")
    assert EXIT_USAGE == refused.value.code
    assert str(refused.value).startswith(f"main.py close: no live daemon: {why}")
    assert "nothing was queued" in str(refused.value)
    assert 0 == await _queued(pool)


async def test_waiting_view_lists_requests_no_live_daemon_takes(pool: asyncpg.Pool) -> None:
    """A row for an account never served is listed with why; a served account's is not;
    an unassigned row waits only while no daemon at all is live."""
    await _publish(pool, [BTC])
    for account in ("someoneelse", "main", None):
        await pool.execute(
            "INSERT INTO monitoring.signals (account, symbol, side, amount) "
            "VALUES ($1, 'BTC/USDT:USDT', 'long', 1)",
            account,
        )
    rows = await pool.fetch("SELECT request, id, account, why FROM monitoring.waiting_requests")
    assert [("signal", 1, "someoneelse", "no daemon has ever served this account")] == [
        tuple(r) for r in rows
    ]
    await pool.execute("UPDATE monitoring.daemons SET stopped_at = now()")
    rows = await pool.fetch("SELECT id, why FROM monitoring.waiting_requests ORDER BY id")
    assert [1, 2, 3] == [r["id"] for r in rows]
    assert rows[1]["why"].startswith("its daemon stopped at ")
    assert "no daemon is running" == rows[2]["why"]
