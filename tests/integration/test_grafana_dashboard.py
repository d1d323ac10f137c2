"""deploy/grafana/trader.json stays true to the daemon: every metric its Prometheus panels
query is one the daemon exports, and every SQL panel (and the account variable) runs on
the migrated ``monitoring`` schema, with rows once a position has traded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import asyncpg

from cli.metrics import TraderMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "trader.json"
_METRIC = re.compile(r"\btrader_\w+")
_TIME_FILTER = re.compile(r"\$__timeFilter\(([^()]*(?:\([^()]*\))?[^()]*)\)")
_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def _targets(source_type: str) -> list[dict[str, Any]]:
    return [
        target
        for panel in _dashboard()["panels"]
        for target in panel["targets"]
        if target["datasource"]["type"] == source_type
    ]


def _exported() -> set[str]:
    """Every series name the daemon's registry exposes, suffixes included."""
    return {
        family.name + suffix
        for family in TraderMetrics().registry.collect()
        for suffix in _SUFFIXES[family.type]
    }


def _as_run(sql: str) -> str:
    """The query as Grafana sends it for account 'main' and the last 30 days."""
    sql = sql.replace("$account", "main")
    return _TIME_FILTER.sub(r"\1 BETWEEN now() - interval '30 days' AND now()", sql)


def test_every_prometheus_query_names_only_exported_metrics() -> None:
    """Each trader_* name in a PromQL expression is a series /metrics exports."""
    queried = {name for t in _targets("prometheus") for name in _METRIC.findall(t["expr"])}
    assert len(queried) >= 10  # the panels were found at all
    assert set() == queried - _exported()


def test_the_pages_an_operator_needs_are_on_the_dashboard() -> None:
    """Positions without a stop, audit degraded, feed age and the latencies are panels."""
    queried = {name for t in _targets("prometheus") for name in _METRIC.findall(t["expr"])}
    assert {
        "trader_positions_without_stop",
        "trader_audit_degraded",
        "trader_feed_age_seconds",
        "trader_tick_to_submit_seconds_bucket",
        "trader_audit_lag_seconds_bucket",
        "trader_audit_queue_depth",
    } <= queried


async def test_every_sql_panel_runs_on_the_migrated_schema(pool: asyncpg.Pool) -> None:
    """Each SQL panel and the account variable execute without error on an empty trail
    and, after a closed position with its trades, the equity and daily P&L have rows."""
    queries = [t["rawSql"] for t in _targets("grafana-postgresql-datasource")]
    variables = [v["query"] for v in _dashboard()["templating"]["list"] if v["type"] == "query"]
    assert len(queries) >= 5
    async with pool.acquire() as conn:
        for sql in [*queries, *variables]:
            await conn.fetch(_as_run(sql))
        await conn.execute(
            "INSERT INTO monitoring.positions (id, account, exchange, symbol, side, quantity,"
            " entry_price, status, realized_pnl, fees, closed_at)"
            " VALUES (9001, 'main', 'paper', 'BTC/USDT:USDT', 'long', 0, 50000, 'closed',"
            " 12.5, 0.5, now())"
        )
        await conn.execute(
            "INSERT INTO monitoring.trades (position_id, account, exchange, symbol, side,"
            " order_type, price, executed_qty, trade_id, fee, realized_pnl, executed_at)"
            " VALUES (9001, 'main', 'paper', 'BTC/USDT:USDT', 'sell', 'MARKET', 50250, 0.05,"
            " 'dash-1', 0.25, 12.5, now())"
        )
        rows = [len(await conn.fetch(_as_run(sql))) for sql in queries]
    titles = [
        panel["title"]
        for panel in _dashboard()["panels"]
        for t in panel["targets"]
        if t["datasource"]["type"] == "grafana-postgresql-datasource"
    ]
    counts = dict(zip(titles, rows, strict=True))
    assert 1 == counts["Equity (realised P&L of closed positions)"]
    assert 1 == counts["Daily P&L"]
