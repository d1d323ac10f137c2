"""Hostile intake rows against one running daemon: each is refused, nothing else changes.

Every generated request is a valid one with at least one hostile change (NaN, infinite,
negative, huge or tiny numbers, unknown or SQL-looking symbols, wrong sides and types,
contradictory options, payloads that are not objects...), so none may trade. Values are
sent as text and cast by PostgreSQL, as a person typing SQL would: a row the tables'
types or CHECK constraints refuse is rejected at the door, which counts as refused.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import asyncpg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import BTC, Daemon, Trader, wait_until

SQLISH = st.sampled_from(
    [
        "'; DROP TABLE monitoring.positions; --",
        "BTC/USDT:USDT' OR '1'='1",
        "$1::text",
        "\\x00",
        "BTC/USDT:USDT; SELECT pg_sleep(10)",
        "${jndi:ldap://x}",
    ]
)
# 1e12 BTC is beyond any balance (and every market's maximum); 1e30 is beyond the working
# precision of the daemon's decimals (test_amounts_beyond_decimal_precision_... below).
BAD_NUMBERS = st.sampled_from(["NaN", "Infinity", "-Infinity", "-1", "0", "-0.01", "1e12", "1e30"])
TEXTS = st.text(max_size=80)
UNKNOWN_SYMBOLS = st.one_of(
    SQLISH, TEXTS, st.sampled_from(["", "DOGE/BTC:XYZ", "BTC/USDT", "btcusdt:spot", "X" * 200])
)

# Each mutation alone makes a signal invalid; several together still do.
SIGNAL_MUTATIONS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "amount": BAD_NUMBERS.map(lambda v: {"amount": v}),
    "tiny": st.just({"amount": "1e-30"}),
    "both_sizes": st.just({"quote_amount": "100"}),
    "symbol": UNKNOWN_SYMBOLS.map(lambda v: {"symbol": v}),
    "side": st.one_of(SQLISH, TEXTS, st.sampled_from(["buy", "LONG", "Short "])).map(
        lambda v: {"side": v}
    ),
    "entry": st.sampled_from(
        [{"entry_type": "limit"}, {"entry_type": "stop"}, {"entry_type": "limit", "price": "-5"}]
    ),
    "stop": st.sampled_from(
        [
            {"stop_loss_price": "70000"},
            {"stop_loss_percent": "150"},
            {"stop_loss_percent": "NaN"},
            {"stop_loss_price": "59000", "stop_loss_percent": "2"},
            {"take_profit_price": "50000"},
        ]
    ),
    "trailing": st.sampled_from(
        [{"trailing_activation_percent": "1"}, {"trailing_callback_percent": "-1"}]
    ),
}
ORDER_MUTATIONS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "amount": BAD_NUMBERS.map(lambda v: {"amount": v}),
    "missing_amount": st.just({"amount": None}),
    "symbol": UNKNOWN_SYMBOLS.map(lambda v: {"symbol": v}),
    "side": st.one_of(SQLISH, st.sampled_from(["long", "", "BUYY"]), st.integers()).map(
        lambda v: {"side": v}
    ),
    "type": st.sampled_from(["market", "MARKET", "iceberg", "", "limit'--"]).map(
        lambda v: {"type": v}
    ),
    "price": BAD_NUMBERS.filter(lambda v: v != "1e30").map(lambda v: {"price": v}),
    "trigger": st.just({"type": "stop_market"}),
    "trailing": st.sampled_from(
        [
            {"type": "trailing_stop", "trail_percent": "150"},
            {"type": "trailing_stop"},
            {"trail_amount": "5"},
            {"type": "trailing_stop", "trail_percent": "1", "native": True},
        ]
    ),
    "flags": st.sampled_from(
        [{"reduce_only": "yes"}, {"native": 1}, {"position_id": "1; DROP"}, {"reduce_only": True}]
    ),
    "expiry": st.sampled_from(
        [{"expires_in": "-5m"}, {"expires_in": "forever"}, {"expires_at": "2001-01-01T00:00:00Z"}]
    ),
}
VALID_SIGNAL = {"symbol": BTC, "side": "long", "amount": "0.01"}
VALID_ORDER = {"symbol": BTC, "side": "buy", "type": "limit", "amount": "0.01", "price": "50000"}


def _mutated(base: dict[str, Any], mutations: dict[str, st.SearchStrategy[dict[str, Any]]]) -> Any:
    names = st.lists(st.sampled_from(sorted(mutations)), min_size=1, max_size=3, unique=True)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        row = dict(base)
        for name in draw(names):
            row.update(draw(mutations[name]))
        return {k: v for k, v in row.items() if v is not None}

    return build()


def hostile_requests() -> st.SearchStrategy[tuple[str, str, Any]]:
    """(table, kind, row or payload) of a request that must not trade."""
    signals = _mutated(VALID_SIGNAL, SIGNAL_MUTATIONS).map(lambda r: ("signal", "", r))
    orders = _mutated(VALID_ORDER, ORDER_MUTATIONS).map(lambda p: ("command", "place_order", p))
    others = st.one_of(
        st.tuples(
            st.just("command"),
            st.just("cancel_order"),
            st.one_of(
                st.fixed_dictionaries({"order_id": st.one_of(SQLISH, TEXTS, st.integers())}),
                st.just({}),
            ),
        ),
        st.tuples(
            st.just("command"),
            st.just("close_position"),
            st.one_of(
                st.fixed_dictionaries(
                    {"position_id": st.one_of(st.integers(), SQLISH, st.booleans(), st.none())}
                ),
                st.just({"position_id": 10**30}),
            ),
        ),
        st.tuples(
            st.just("command"),
            st.sampled_from(["place_order", "cancel_order", "close_position", "delete_all"]),
            st.sampled_from([[1, 2], "place", None, 3.5, {"$where": "1=1"}]),
        ),
    )
    return st.one_of(signals, orders, others)


def insert(trader: Trader, table: str, kind: str, body: Any) -> int | None:
    """Insert the request as text cast by PostgreSQL; None if PostgreSQL refused it."""
    try:
        if table == "signal":
            columns = list(body)
            numeric = {"symbol": "text", "side": "text", "entry_type": "text"}
            values = ", ".join(
                f"${i}::text::{numeric.get(c, 'numeric')}" for i, c in enumerate(columns, 1)
            )
            sql = (
                f"INSERT INTO monitoring.signals (account, {', '.join(columns)}) "
                f"VALUES ('main', {values}) RETURNING id"
            )
            return int(trader.db.fetchval(sql, *(str(body[c]) for c in columns)))
        return int(
            trader.db.fetchval(
                "INSERT INTO monitoring.commands (account, kind, payload) "
                "VALUES ('main', $1, $2::text::jsonb) RETURNING id",
                kind,
                json.dumps(body),
            )
        )
    except (asyncpg.PostgresError, asyncpg.DataError):
        return None


def crashes(daemon: Daemon) -> list[dict[str, Any]]:
    """Log lines saying a request crashed the handler (a bug) or anything critical."""
    return [
        e
        for e in daemon.events()
        if e.get("event") == "intake_handler_crashed" or e.get("level") == "critical"
    ]


def traded(trader: Trader) -> tuple[int, int, int]:
    """(positions, orders, executions) recorded at all. A request refused at validation
    never gets as far as a position or an order, so each must stay 0."""
    return (
        trader.db.fetchval("SELECT count(*) FROM monitoring.positions"),
        trader.db.fetchval("SELECT count(*) FROM monitoring.orders"),
        trader.db.fetchval("SELECT count(*) FROM monitoring.trades"),
    )


def test_hostile_intake_rows_are_refused_and_change_nothing(trader: Trader) -> None:
    """Malformed and hostile signal / command rows each end rejected with a reason (or
    are refused by PostgreSQL at INSERT), never failed: none gets as far as the venue. The
    daemon keeps running and records no position, order or trade."""
    daemon = trader.daemon().start().wait_ready()
    seen: Counter[str] = Counter()

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(request=hostile_requests())
    @example(request=("signal", "", {**VALID_SIGNAL, "amount": "NaN"}))
    @example(request=("command", "place_order", {**VALID_ORDER, "amount": "1e12"}))
    @example(request=("command", "close_position", {"position_id": "1; DROP TABLE x"}))
    def one(request: tuple[str, str, Any]) -> None:
        table, kind, body = request
        row_id = insert(trader, table, kind, body)
        if row_id is None:
            seen["refused at insert"] += 1
            return
        name = "monitoring.signals" if table == "signal" else "monitoring.commands"
        row = wait_until(
            lambda: trader.db.fetchrow(f"SELECT status, reason FROM {name} WHERE id = $1", row_id),
            lambda r: r is not None and r["status"] not in ("new", "processing"),
            15,
            f"an outcome for {table} {row_id}: {body!r}",
        )
        assert row is not None
        assert "rejected" == row["status"], (body, row)
        assert row["reason"], (body, row)
        assert not row["reason"].startswith("internal error"), (body, row)
        seen[row["status"]] += 1
        assert (0, 0, 0) == traded(trader), body
        assert daemon.running()

    one()
    assert seen["rejected"] > 0  # the daemon really judged rows, not only PostgreSQL
    assert daemon.running()
    assert 0 == daemon.terminate()
    assert [] == crashes(daemon)


def test_amounts_beyond_decimal_precision_are_rejected_with_a_reason(trader: Trader) -> None:
    """A signal and an order for 1e30 BTC end rejected naming the amount, with no crash
    logged."""
    daemon = trader.daemon().start().wait_ready()
    signal_id = insert(trader, "signal", "", {**VALID_SIGNAL, "amount": "1e30"})
    command_id = insert(trader, "command", "place_order", {**VALID_ORDER, "amount": "1e30"})
    outcomes = [
        trader.db.wait_for(
            f"SELECT status || ': ' || reason FROM {table} WHERE id = $1 "
            "AND status NOT IN ('new', 'processing')",
            row_id,
        )
        for table, row_id in (
            ("monitoring.signals", signal_id),
            ("monitoring.commands", command_id),
        )
    ]
    assert 0 == daemon.terminate()
    assert [True, True] == [o.startswith("rejected: amount") for o in outcomes], outcomes
    assert [] == crashes(daemon)


def test_huge_signal_is_rejected_before_the_venue(trader: Trader) -> None:
    """A signal for 1e12 BTC ends rejected naming the amount (more than the free balance
    can margin), and no order is ever sent or recorded for it."""
    daemon = trader.daemon().start().wait_ready()
    signal_id = insert(trader, "signal", "", {**VALID_SIGNAL, "amount": "1e12"})
    outcome = trader.db.wait_for(
        "SELECT status || ': ' || reason FROM monitoring.signals WHERE id = $1 "
        "AND status NOT IN ('new', 'processing')",
        signal_id,
    )
    assert 0 == daemon.terminate()
    assert (True, (0, 0, 0)) == (outcome.startswith("rejected: amount"), traded(trader)), outcome
