"""Chaos scenario 2: bad input at volume against the daemon as a subprocess.

``CHAOS_SCALE`` (default 1) scales the 10,000 requests (and the 300 sent through the CLI
among them); ``CHAOS_SCALE=0.1`` sends 1,000 (30 by CLI). ``CHAOS_SEED`` (default 11)
picks them. Run with::

    python -m pytest tests/chaos/test_chaos_bad_input.py -q -s

and read the one ``chaos bad_input ...`` line it prints.

The daemon runs on the paper venue at a steady price (BTC 60000, ETH 3000: no stop
fires) and takes requests in rounds of about 500. Each round is inserted with SQL in one
transaction on one connection (one NOTIFY burst), plus a share of ``python main.py
signal ...`` calls, and the round's outcomes are awaited before the next one (the valid
closes of a round name the positions the previous rounds opened).

About 5 % of the requests are valid: small market signals on BTC / ETH, closes of the
positions that are open, far-away emulated limit orders and cancels of them. A valid
signal for a market that already holds a position is a legitimate refusal ("already
open"), counted apart, as is a limit order on the closing side of an open position that
is not bound to it ("would trade against open position": it would net against it).
Everything else is hostile: NaN / infinite / negative / zero / tiny / huge numbers,
unknown, spot, empty, over-long and SQL-looking symbols, stops and take-profits on the
wrong side, contradictory sizes, limit entries without a price, payloads that are not
objects or are broken JSON, unknown kinds, bad ids. A row that the tables' types or
CHECK constraints refuse is refused at the door (counted, inserted in its own
savepoint), as is a CLI call that exits 2 on its arguments.

Proved: every hostile row ends ``rejected`` or ``failed`` with a reason that is not
"internal error"; every valid one ends ``done`` (or the legitimate conflict); no hostile
row traded (every position with a quantity came from a valid signal); every order a
``done`` command names is in ``monitoring.orders``; the daemon kept running and never
logged a handler crash or a critical line, also when the prices finally sweep through
every price the requests named; and its memory stayed flat:
RSS after 100 % of the requests is within ``RSS_GROWTH_LIMIT_MB`` (30) of RSS after 20 %.
The bound: 8,000 requests pass between the samples, so a leak of 4 KB per request (one
kept row dict, log context or task) would show as 32 MB, while allocator and cache warm-up
of a daemon that has already handled 2,000 requests stays within a few MB.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import psutil
import pytest

from tests.chaos.conftest import chaos_seed, scaled
from tests.e2e.conftest import BTC, Trader, wait_until

ETH = "ETH/USDT:USDT"
PRICE = {BTC: Decimal(60000), ETH: Decimal(3000)}
AMOUNT = {BTC: "0.001", ETH: "0.01"}
ROUND = 500
VALID_SHARE = 0.05
RSS_GROWTH_LIMIT_MB = 30
OUTCOME_TIMEOUT_S = 120.0
FINAL = ("done", "rejected", "failed")

SQLISH = [
    "'; DROP TABLE monitoring.positions; --",
    "BTC/USDT:USDT' OR '1'='1",
    "$1::text",
    "\\x00",
    "BTC/USDT:USDT; SELECT pg_sleep(10)",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
]
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "-1", "0", "-0.01", "1e12", "1e30", "1e-30"]
BAD_SYMBOLS = [*SQLISH, "", " ", "DOGE/BTC:XYZ", "BTC/USDT", "btcusdt:spot", "X" * 200, "ĐŐĞ€"]
SIGNAL_COLUMNS = {
    "symbol": "text",
    "side": "text",
    "entry_type": "text",
    "amount": "numeric",
    "quote_amount": "numeric",
    "price": "numeric",
    "stop_loss_price": "numeric",
    "stop_loss_percent": "numeric",
    "take_profit_price": "numeric",
    "take_profit_percent": "numeric",
    "trailing_activation_percent": "numeric",
    "trailing_callback_percent": "numeric",
    "account": "text",
}


@dataclass
class Request:
    """One request: where it goes, what it is, and what it should end as."""

    table: str  # "signal" / "command" / "cli"
    body: Any  # the signal row, the command's (kind, payload), or the CLI arguments
    valid: bool
    what: str  # the category, for the counts and the failure messages
    row_id: int | None = None
    outcome: tuple[str, str | None] | None = None


def hostile_signal(rng: random.Random) -> Request:
    """A signal row made invalid by one to three hostile changes."""
    symbol = rng.choice([BTC, ETH])
    side = rng.choice(["long", "short"])
    row: dict[str, Any] = {"symbol": symbol, "side": side, "amount": AMOUNT[symbol]}
    wrong_stop = PRICE[symbol] * (Decimal("1.2") if side == "long" else Decimal("0.8"))
    wrong_tp = PRICE[symbol] * (Decimal("0.8") if side == "long" else Decimal("1.2"))
    changes = {
        "amount": lambda: {"amount": rng.choice(BAD_NUMBERS)},
        "symbol": lambda: {"symbol": rng.choice(BAD_SYMBOLS)},
        "both_sizes": lambda: {"amount": AMOUNT[symbol], "quote_amount": "100"},
        "no_size": lambda: {"amount": None, "quote_amount": None},
        "quote": lambda: {"amount": None, "quote_amount": rng.choice(BAD_NUMBERS)},
        "limit": lambda: rng.choice(
            [{"entry_type": "limit"}, {"entry_type": "limit", "price": rng.choice(BAD_NUMBERS)}]
        ),
        "stop": lambda: rng.choice(
            [
                {"stop_loss_price": str(wrong_stop)},
                {"stop_loss_percent": rng.choice(["150", "NaN", "-2", "0", "1e9"])},
                {"stop_loss_price": str(PRICE[symbol]), "stop_loss_percent": "2"},
                {"take_profit_price": str(wrong_tp)},
                {"take_profit_percent": rng.choice(["-4", "NaN", "Infinity"])},
            ]
        ),
        "trailing": lambda: rng.choice(
            [
                {"trailing_activation_percent": "1"},
                {"trailing_callback_percent": rng.choice(["-1", "NaN", "500"])},
            ]
        ),
        # Refused by the table (CHECK or type) rather than by the daemon.
        "side": lambda: {"side": rng.choice(["buy", "LONG", "Short ", "", *SQLISH])},
        "entry_type": lambda: {"entry_type": rng.choice(["stop", "MARKET", "iceberg'--"])},
        "not_a_number": lambda: {"amount": rng.choice(["abc", "1,5", "0x10", "1e"])},
    }
    for name in rng.sample(sorted(changes), rng.randint(1, 3)):
        row.update(changes[name]())
    row = {k: v for k, v in row.items() if v is not None}
    return Request("signal", row, False, "hostile_signal")


def hostile_command(rng: random.Random) -> Request:
    """A command row whose kind or payload is wrong."""
    order = {"symbol": BTC, "side": "buy", "type": "limit", "amount": "0.001", "price": "30000"}
    broken = dict(order)
    field, values = rng.choice(
        [
            ("amount", [*BAD_NUMBERS, None, True, [], {"a": 1}]),
            ("symbol", [*BAD_SYMBOLS, None, 42]),
            ("side", ["long", "", "BUYY", None, 1, *SQLISH]),
            ("type", ["market", "MARKET", "iceberg", "", "limit'--", "stop_market", None]),
            ("price", [*BAD_NUMBERS[:-2], None, "sixty thousand"]),
            ("trail_percent", ["150", "-1"]),
            ("reduce_only", ["yes", 1]),
            ("position_id", ["1; DROP", -1, 10**30, 1.5, 987_654_321]),
            ("expires_in", ["-5m", "forever", "0s"]),
        ]
    )
    value = rng.choice(values)
    if value is None:
        broken.pop(field, None)
    else:
        broken[field] = value
    kind, payload = rng.choice(
        [
            ("place_order", broken),
            ("cancel_order", {"order_id": rng.choice([*SQLISH, "", "td-main-x-1", 7, None])}),
            ("cancel_order", {}),
            ("close_position", {"position_id": rng.choice([*SQLISH, True, None, 10**30, -1])}),
            ("close_position", {"position_id": rng.randint(10**6, 10**9)}),
            (rng.choice(["place_order", "close_position"]), rng.choice([[1, 2], "x", None, 3.5])),
            ("place_order", {"$where": "1=1"}),
            ("delete_all", order),  # refused by the kind CHECK
            ("place_order", '{"symbol": "BTC/USDT:USDT", '),  # broken JSON, refused
            ("place_order", {**order, "amount": float("nan")}),  # NaN is not JSON, refused
        ]
    )
    return Request("command", (kind, payload), False, f"hostile_{kind}")


def hostile_cli(rng: random.Random) -> Request:
    """``python main.py signal`` arguments (always a long) with a hostile value."""
    symbol = rng.choice([BTC, ETH])
    args = {"--symbol": symbol, "--side": "long", "--amount": AMOUNT[symbol]}
    name, value = rng.choice(
        [
            ("--amount", rng.choice(BAD_NUMBERS)),
            ("--symbol", rng.choice([s for s in BAD_SYMBOLS if s.strip()])),
            ("--side", rng.choice(["buy", "sell", "flat"])),
            ("--stop-loss", rng.choice(["150%", "-2%", "70000", "NaN", "2%%"])),
            ("--take-profit", rng.choice(["-4%", str(PRICE[symbol] / 2), "abc"])),
            ("--trailing-callback", "-1"),
        ]
    )
    args[name] = value
    return Request("cli", [part for kv in args.items() for part in kv], False, "hostile_cli")


def valid_requests(rng: random.Random, count: int, open_positions: dict[int, str]) -> list[Request]:
    """Closes of every open position, a signal for each flat market and one more for a
    random market (often a legitimate conflict), then limit orders far from the market
    up to ``count``."""
    out = [
        Request("command", ("close_position", {"position_id": pid}), True, "valid_close")
        for pid in open_positions
    ]
    flat = [s for s in (BTC, ETH) if s not in open_positions.values()]
    for symbol in [*flat, rng.choice([BTC, ETH])]:
        side = rng.choice(["long", "short"])
        row = {"symbol": symbol, "side": side, "amount": AMOUNT[symbol]}
        out.append(Request("signal", row, True, "valid_signal"))
    while len(out) < count:
        symbol = rng.choice([BTC, ETH])
        side = rng.choice(["buy", "sell"])
        price = PRICE[symbol] * (Decimal("0.5") if side == "buy" else Decimal("1.5"))
        payload = {
            "symbol": symbol,
            "side": side,
            "type": "limit",
            "amount": AMOUNT[symbol],
            "price": str(price),
        }
        out.append(Request("command", ("place_order", payload), True, "valid_order"))
    return out


async def insert_round(url: str, requests: list[Request]) -> None:
    """Insert every SQL request of a round in one transaction; a row the table refuses is
    rolled back to its savepoint and left without an id."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        async with conn.transaction():
            for req in requests:
                try:
                    async with conn.transaction():
                        req.row_id = await _insert(conn, req)
                except (asyncpg.PostgresError, asyncpg.DataError):
                    req.row_id = None
    finally:
        await conn.close()


async def _insert(conn: asyncpg.Connection, req: Request) -> int:
    if req.table == "signal":
        row = {"account": "main", **req.body}
        columns = list(row)
        values = ", ".join(
            f"${i}::text::{SIGNAL_COLUMNS[c]}" for i, c in enumerate(columns, start=1)
        )
        sql = (
            f"INSERT INTO monitoring.signals ({', '.join(columns)}) VALUES ({values}) RETURNING id"
        )
        return int(await conn.fetchval(sql, *(str(row[c]) for c in columns)))
    kind, payload = req.body
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return int(
        await conn.fetchval(
            "INSERT INTO monitoring.commands (account, kind, payload) "
            "VALUES ('main', $1, $2::text::jsonb) RETURNING id",
            kind,
            text,
        )
    )


def send_cli(trader: Trader, req: Request) -> None:
    """Run the CLI request; its row id if it inserted one (exit 0), else None."""
    done = trader.cli("signal", *req.body, timeout_s=60)
    if done.returncode == 0:
        req.row_id = int(done.stdout.split()[-1])
    else:
        assert 2 == done.returncode, (req.body, done.returncode, done.stdout, done.stderr)
        assert done.stderr.strip(), req.body  # one line naming the bad argument


def outcomes(trader: Trader, requests: list[Request]) -> None:
    """Wait until every inserted request of the round has a final status; record them."""
    ids = {
        "signals": [r.row_id for r in requests if r.row_id and r.table != "command"],
        "commands": [r.row_id for r in requests if r.row_id and r.table == "command"],
    }

    def pending() -> int:
        return sum(
            trader.db.fetchval(
                f"SELECT count(*) FROM monitoring.{table} WHERE id = ANY($1::bigint[]) "
                "AND status NOT IN ('done', 'rejected', 'failed')",
                wanted,
            )
            for table, wanted in ids.items()
        )

    wait_until(pending, lambda n: n == 0, OUTCOME_TIMEOUT_S, "outcomes of a round", 0.2)
    found = {}
    for table, wanted in ids.items():
        for row in trader.db.fetch(
            f"SELECT id, status, reason FROM monitoring.{table} WHERE id = ANY($1::bigint[])",
            wanted,
        ):
            found[(table, row["id"])] = (row["status"], row["reason"])
    for req in requests:
        if req.row_id:
            table = "commands" if req.table == "command" else "signals"
            req.outcome = found[(table, req.row_id)]


def judge(req: Request) -> str | None:
    """The request's count name, or what is wrong with its outcome (prefixed ``BAD``)."""
    if req.row_id is None:
        if req.valid:
            return f"BAD valid request refused at insert: {req.body!r}"
        return "cli_refused" if req.table == "cli" else "refused_at_door"
    assert req.outcome is not None
    status, reason = req.outcome
    if req.valid:
        if status == "done":
            return f"{req.what}_done"
        if req.what == "valid_signal" and status == "rejected" and "already open" in (reason or ""):
            return "valid_signal_conflict"
        if (
            req.what == "valid_order"
            and status == "rejected"
            and "would trade against open position" in (reason or "")
        ):
            return "valid_order_conflict"  # closing side of a position, not bound to it
        return f"BAD valid {req.what} ended {status}: {reason!r} ({req.body!r})"
    if status not in ("rejected", "failed"):
        return f"BAD hostile request ended {status}: {req.body!r}"
    if not reason or reason.startswith("internal error"):
        return f"BAD hostile request without a usable reason ({reason!r}): {req.body!r}"
    return status


@pytest.mark.timeout(1800)
def test_bad_input_at_volume_is_refused_with_reasons_and_memory_stays_flat(
    trader: Trader,
) -> None:
    """Thousands of hostile intake rows mixed with valid ones: each hostile one refused
    with a reason, each valid one done, nothing hostile traded, the daemon alive with flat
    memory."""
    total = scaled(10_000)
    cli_total = scaled(300)
    rng = random.Random(chaos_seed(11))
    trader.feed.tick(PRICE[ETH], ETH)
    daemon = trader.daemon(TRADER_SYMBOLS=f"{BTC},{ETH}").start().wait_ready()
    process = psutil.Process(daemon.pid)
    rounds = max(1, round(total / ROUND))
    sent: list[Request] = []
    cancelled: set[int] = set()
    rss: dict[str, int] = {}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        for n in range(rounds):
            size = total // rounds + (1 if n < total % rounds else 0)
            n_cli = cli_total // rounds + (1 if n < cli_total % rounds else 0)
            open_ids = {
                r["id"]: r["symbol"]
                for r in trader.db.fetch(
                    "SELECT id, symbol FROM monitoring.positions WHERE status = 'active'"
                )
            }
            valid = valid_requests(rng, max(1, round(size * VALID_SHARE)), open_ids)
            hostile = [
                (hostile_signal if rng.random() < 0.5 else hostile_command)(rng)
                for _ in range(max(0, size - len(valid) - n_cli))
            ]
            cli = [hostile_cli(rng) for _ in range(n_cli)]
            batch = valid + hostile + cancels_of(trader, sent, cancelled)
            rng.shuffle(batch)
            asyncio.run(insert_round(trader.db.url, batch))
            list(pool.map(lambda req: send_cli(trader, req), cli))
            for symbol, price in PRICE.items():
                trader.feed.tick(price, symbol)
            outcomes(trader, batch + cli)
            sent += batch + cli
            assert daemon.running(), daemon.text()[-3000:]
            if "rss_20" not in rss and len(sent) >= total * 0.2:
                rss["rss_20"] = process.memory_info().rss
    rss["rss_100"] = process.memory_info().rss
    elapsed = time.monotonic() - started
    counts = Counter(judge(r) or "?" for r in sent)
    bad = sorted(k for k in counts if k.startswith("BAD"))
    lasting = trader.db.fetch(
        "SELECT p.id, p.status, p.quantity, s.id AS signal FROM monitoring.positions p "
        "LEFT JOIN monitoring.signals s ON s.id = p.signal_id WHERE p.quantity > 0 "
        "OR p.status NOT IN ('failed', 'rolled_back', 'closed')"
    )
    valid_signal_ids = {r.row_id for r in sent if r.what == "valid_signal"}
    traded_by_hostile = [p for p in lasting if p["signal"] not in valid_signal_ids]
    unrecorded = audit_gaps(trader, sent)
    # Whatever the hostile rows left armed must not hurt when prices finally reach it.
    sweep_prices(trader)
    time.sleep(3)
    alive_after_sweep = daemon.running()
    crashes = [
        e
        for e in daemon.events()
        if e.get("event") == "intake_handler_crashed" or e.get("level") == "critical"
    ]
    growth_mb = (rss["rss_100"] - rss["rss_20"]) / 2**20
    summary = {k: v for k, v in sorted(counts.items()) if not k.startswith("BAD")}
    print(
        f"\nchaos bad_input requests={len(sent)} sql={sum(r.table != 'cli' for r in sent)} "
        f"cli={sum(r.table == 'cli' for r in sent)} "
        + " ".join(f"{k}={v}" for k, v in summary.items())
        + f" wrong_outcomes={sum(counts[k] for k in bad)}"
        f" hostile_traded={len(traded_by_hostile)} crashes={len(crashes)}"
        f" alive_after_sweep={alive_after_sweep}"
        f" audit_gaps={len(unrecorded)} rss_20_mb={rss['rss_20'] / 2**20:.1f}"
        f" rss_100_mb={rss['rss_100'] / 2**20:.1f} rss_growth_mb={growth_mb:.1f}"
        f" elapsed_s={elapsed:.1f}"
    )
    assert alive_after_sweep, daemon.text()[-3000:]
    assert not bad, "\n".join(bad[:20])
    assert [] == traded_by_hostile, valid_signal_ids
    assert [] == crashes[:5]
    assert [] == unrecorded[:10]
    assert daemon.running()
    assert counts["valid_signal_done"] > 0 and counts["valid_close_done"] > 0
    assert counts["rejected"] > 0 and counts["refused_at_door"] > 0
    assert growth_mb < RSS_GROWTH_LIMIT_MB, rss
    assert 0 == daemon.terminate(30)


def audit_gaps(trader: Trader, sent: list[Request]) -> list[str]:
    """Orders the daemon said it placed or cancelled (``done`` commands, valid or not)
    that the audit trail does not show, or shows live although cancelled; waits up to
    15 s for the audit writer."""
    placed = [r.row_id for r in sent if r.table == "command" and r.outcome]
    sql = (
        "SELECT c.id, c.kind, c.result->>'client_order_id' AS cid, o.status "
        "FROM monitoring.commands c LEFT JOIN monitoring.orders o "
        "ON o.client_order_id = c.result->>'client_order_id' "
        "WHERE c.id = ANY($1::bigint[]) AND c.status = 'done' "
        "AND c.kind IN ('place_order', 'cancel_order')"
    )

    def gaps() -> list[str]:
        rows = trader.db.fetch(sql, placed)
        cancelled = {r["cid"] for r in rows if r["kind"] == "cancel_order"}
        return [
            f"command {r['id']} order {r['cid']}: audit row {r['status']}"
            for r in rows
            if r["status"] is None or (r["cid"] in cancelled and r["status"] != "CANCELLED")
        ]

    deadline = time.monotonic() + 15
    while (found := gaps()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def sweep_prices(trader: Trader) -> None:
    """Move both markets through every price the requests named (half to one and a half
    times the start) and back."""
    for symbol in (BTC, ETH):
        steps = [PRICE[symbol] * Decimal(k) / 20 for k in (*range(20, 8, -1), *range(9, 31), 20)]
        trader.feed.ticks(steps, symbol)


def cancels_of(trader: Trader, sent: list[Request], cancelled: set[int]) -> list[Request]:
    """Valid cancels of the emulated limit orders placed so far and not yet cancelled."""
    out = []
    for req in sent[-2 * ROUND :]:
        if req.what == "valid_order" and req.outcome and req.outcome[0] == "done":
            if req.row_id in cancelled:
                continue
            cancelled.add(req.row_id or 0)
            row = trader.db.fetchrow(
                "SELECT result->>'client_order_id' AS cid FROM monitoring.commands WHERE id = $1",
                req.row_id,
            )
            assert row is not None
            out.append(
                Request(
                    "command",
                    ("cancel_order", {"order_id": row["cid"]}),
                    True,
                    "valid_cancel",
                )
            )
    return out
