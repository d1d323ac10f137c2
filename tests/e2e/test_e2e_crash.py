"""A daemon killed with SIGKILL between the entry fill and the stop, then restarted."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from config.settings import load_settings
from core.venue import ExchangeOrder, ExchangePosition
from exchanges.paper import PaperExchange
from tests.e2e.conftest import BTC, Trader, wait_until


def venue_journal(state_dir: Path) -> list[dict[str, Any]]:
    """The paper venue's journal records so far, read without its lock (append-only JSON
    lines up to the zero-filled tail; a torn last line is skipped)."""
    path = state_dir / "paper" / "main" / "journal.jsonl"
    if not path.exists():
        return []
    text = path.read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def venue_fills(state_dir: Path) -> int:
    """How many fills the venue has made."""
    return sum(len(r.get("f", [])) for r in venue_journal(state_dir))


def venue_order_types(state_dir: Path) -> set[str]:
    """The types of every order the venue has seen."""
    return {o["type"] for r in venue_journal(state_dir) for o in r.get("o", [])}


def venue_state(trader: Trader) -> tuple[list[ExchangeOrder], list[ExchangePosition]]:
    """Open orders and positions of the paper venue, read after the daemon stopped."""
    settings = load_settings(state_dir=trader.state_dir, database_url=trader.db.url, symbols=BTC)

    async def read() -> tuple[list[ExchangeOrder], list[ExchangePosition]]:
        async with PaperExchange.from_settings(settings) as venue:
            return list(await venue.fetch_open_orders()), list(await venue.fetch_positions())

    return asyncio.run(read())


def test_kill_between_entry_and_stop_is_protected_after_restart(trader: Trader) -> None:
    """SIGKILL after the entry filled but before the stop was placed: after a restart the
    position has one resting stop for its full quantity, and there is no second position
    and no orphan stop."""
    daemon = trader.daemon(TRADER_PAPER_FAULTS="latency_ms=300").start().wait_ready()
    trader.db.execute(
        "INSERT INTO monitoring.signals (account, symbol, side, amount) "
        "VALUES ('main', $1, 'long', 0.01)",
        BTC,
    )
    started = time.monotonic()
    wait_until(lambda: venue_fills(trader.state_dir), bool, 10, "the entry fill in the venue", 0.02)
    # The stop costs at least one more 300 ms venue call: kill inside that window.
    daemon.kill()
    assert time.monotonic() - started < 5
    assert 1 == venue_fills(trader.state_dir)  # the entry only: no stop fill, no close
    assert {"MARKET"} == venue_order_types(trader.state_dir)  # really killed before the stop

    restarted = trader.daemon(TRADER_PAPER_FAULTS="latency_ms=300").start().wait_ready()

    def protected() -> list[dict[str, object]]:
        return trader.db.fetch(
            "SELECT o.size, p.quantity, o.position_id FROM monitoring.orders o "
            "JOIN monitoring.positions p ON p.id = o.position_id "
            "WHERE o.type = 'STOP_MARKET' AND o.status = 'NEW' AND o.side = 'sell' "
            "AND p.status = 'active'"
        )

    (stop,) = wait_until(protected, bool, 15, "a NEW stop order for the active position")
    assert Decimal("0.01") == stop["size"] == stop["quantity"]
    positions = trader.db.fetch(
        "SELECT id, status FROM monitoring.positions WHERE status <> ALL($1::text[])",
        ["closed", "rolled_back", "failed"],
    )
    assert [stop["position_id"]] == [p["id"] for p in positions]
    assert [] == trader.db.fetch("SELECT * FROM monitoring.positions_without_stop")
    assert 0 == restarted.terminate()

    orders, venue_positions = venue_state(trader)
    assert [(BTC, Decimal("0.01"))] == [(p.symbol, p.quantity) for p in venue_positions]
    assert [("STOP_MARKET", "sell", Decimal("0.01"), True)] == [
        (
            o.type.value if o.type else None,
            o.side.value if o.side else None,
            o.amount,
            o.reduce_only,
        )
        for o in orders
    ]
