"""The year of audit trail that tests/bench/audit_scale_bench.py measures against.

Generated server-side (``INSERT ... SELECT`` over ``generate_series``) in chunks of
positions run on a few connections at once, so neither the client's memory nor one
transaction grows with the scale; deterministic (hashes of the position id, not
``random()``). Rows go through the parent tables only, so the same statements fill the
plain and the time-partitioned schema.

Each position, whatever its outcome, has 3 orders, 4 trades and 12 order events, so the
counts are exact (scale 1: 2,500,000 positions, 10,000,000 trades, 30,000,000 order
events). Per account over the year ending now, in opening order:

- ``closed``: MARKET entry (2 fills), STOP_MARKET stop-loss (cancelled at the exit),
  MARKET exit (2 fills, carrying ``realized_pnl``);
- ``rolled_back`` (1 in 40): the stop is rejected, a MARKET rollback order closes it;
- ``active``: the newest ``ACTIVE_PER_ACCOUNT``, one per symbol (the schema allows one
  open position per market): entry, a live stop (``NEW``), one partial exit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from core.ids import client_order_id, position_owner
from core.models import Side
from core.order_model import Fill, Order, OrderPurpose, OrderStatus, OrderType
from core.records import AuditRecord, order_event_record, trade_record

ACCOUNTS = 50
EXCHANGE = "bybit"
POSITIONS_AT_1 = 2_500_000
EVENTS_AT_1 = 500_000
UPDATES_AT_1 = 1_000_000  # position_updates of the last 7 days (the retention)
# Every market of an account can hold one open position (positions_one_open_per_market).
ACTIVE_PER_ACCOUNT = 20
CHUNK_POSITIONS = 20_000  # one transaction; a few seconds of server time each
WORKERS = 3  # two cores: the third connection keeps one busy while another commits
TABLES = ("positions", "orders", "trades", "order_events", "events", "position_updates")

SYMBOLS = (
    ("BTC", "65000"), ("ETH", "3400"), ("SOL", "150"), ("XRP", "0.6"), ("DOGE", "0.15"),
    ("ADA", "0.45"), ("AVAX", "35"), ("LINK", "15"), ("DOT", "7"), ("LTC", "80"),
    ("BCH", "450"), ("TRX", "0.12"), ("POL", "0.7"), ("NEAR", "5"), ("ATOM", "8"),
    ("APT", "9"), ("ARB", "1.1"), ("OP", "2.5"), ("SUI", "1.5"), ("TON", "6"),
)  # fmt: skip
_SYMBOL_ARRAY = "ARRAY[" + ", ".join(f"'{s}/USDT:USDT'" for s, _ in SYMBOLS) + "]"
_PRICE_ARRAY = "ARRAY[" + ", ".join(p for _, p in SYMBOLS) + "]::numeric[]"


def account_name(index: int) -> str:
    return f"acct{index + 1:02d}"


def share(total: int, account: int) -> int:
    """``account``'s part of ``total`` rows spread over the accounts (all of it, exactly)."""
    return total // ACCOUNTS + (account < total % ACCOUNTS)


def _u(k: int) -> str:
    """A deterministic uniform number in [0, 1) per position id and ``k``."""
    return f"((hashint8extended(k.id, {k}) & 1048575)::numeric / 1048576)"


# One chunk's positions with every figure their rows need: fills, fees, P&L, times.
# $1 now, $2 first slot, $3 end slot, $4 positions in all, $5 active per account.
# Position ids interleave the accounts in time order (slot * 50 + account + 1), as one
# sequence shared by 50 daemons would hand them out; setval() follows afterwards.
# Money is numeric throughout: fees, shares of the entry fees and P&L as the daemon
# computes them (core/position_model.py), rounded to 8 places.
CHUNK_SQL = f"""
CREATE TEMP TABLE bench_pos ON COMMIT DROP AS
SELECT k.*, z.*, q0.*, qs.*, f.*, x0.*, x.*, m.*,
       CASE sgn WHEN 1 THEN 'long' ELSE 'short' END AS side,
       CASE sgn WHEN 1 THEN 'buy' ELSE 'sell' END AS en_side,
       CASE sgn WHEN 1 THEN 'sell' ELSE 'buy' END AS x_side,
       'td-' || account || '-p' || id || '-en-1' AS cid_en,
       'td-' || account || '-p' || id || '-sl-2' AS cid_sl,
       'td-' || account || '-p' || id
           || CASE pkind WHEN 'rolled_back' THEN '-rb-3' ELSE '-ex-3' END AS cid_x,
       CASE pkind WHEN 'rolled_back' THEN 'rollback' ELSE 'exit' END AS x_purpose,
       round((x1 * xq1 + x2 * xq2) / (xq1 + xq2), 8) AS xavg,
       round((x1 - avg) * xq1 * sgn, 8) - fx1 - share1 AS r1,
       round((x2 - avg) * xq2 * sgn, 8) - fx2 - share2 AS r2,
       round(avg * (1 - 0.02 * sgn), 4) AS stop_px,
       round(avg * (1 + 0.006 * sgn * ({_u(8)} - 0.4)), 4) AS cur_px,
       q - xq1 - xq2 AS open_qty,
       CASE pkind WHEN 'closed' THEN (ARRAY['signal', 'take_profit', 'trailing_stop',
                                            'manual'])[(hashint8extended(id, 9) & 3) + 1]
                  WHEN 'rolled_back' THEN 'stop-loss could not be placed' END AS reason,
       CASE pkind WHEN 'active' THEN $1 - interval '3 s' ELSE tx + interval '30 ms' END
           AS last_at
FROM generate_series($2::int, $3::int - 1) AS i, generate_series(0, {ACCOUNTS - 1}) AS a,
LATERAL (SELECT i::bigint * {ACCOUNTS} + a + 1 AS id,
                $4::int / {ACCOUNTS} + (a < $4::int % {ACCOUNTS})::int AS n,
                'acct' || lpad((a + 1)::text, 2, '0') AS account OFFSET 0) k,
LATERAL (SELECT CASE WHEN i >= n - $5::int THEN 'active'
                     WHEN hashint8extended(id, 1) % 40 = 0 THEN 'rolled_back'
                     ELSE 'closed' END AS pkind,
                CASE WHEN hashint8extended(id, 2) & 1 = 0 THEN 1 ELSE -1 END AS sgn,
                ({_SYMBOL_ARRAY})[(i + a) % 20 + 1] AS symbol,
                round(({_PRICE_ARRAY})[(i + a) % 20 + 1] * (0.8 + 0.4 * {_u(3)}), 4) AS e1,
                $1::timestamptz - interval '365 days'
                    + ((i + 0.8 * {_u(4)}) / n)::float8 * interval '365 days' AS t0
         OFFSET 0) z,
LATERAL (SELECT round(e1 * (1 + 0.0002 * sgn), 4) AS e2,
                greatest(round(1000 * (0.5 + {_u(5)}) / e1, 3), 0.010) AS q OFFSET 0) q0,
LATERAL (SELECT round(q * 0.6, 3) AS q1, q - round(q * 0.6, 3) AS q2 OFFSET 0) qs,
LATERAL (SELECT round((e1 * q1 + e2 * q2) / q, 8) AS avg, round(e1 * q1 * 0.00055, 8) AS fe1,
                round(e2 * q2 * 0.00055, 8) AS fe2,
                CASE pkind WHEN 'active' THEN round(q1 / 2, 3) ELSE q1 END AS xq1,
                CASE pkind WHEN 'active' THEN q1 - round(q1 / 2, 3) ELSE q2 END AS xq2,
                CASE pkind  -- the time of the exit's last fill (active: a partial exit)
                    WHEN 'closed' THEN least(t0 + interval '5 minutes' + {_u(6)}::float8
                                             * interval '4 hours', $1 - interval '1 minute')
                    WHEN 'rolled_back' THEN t0 + interval '1.5 s' + {_u(6)}::float8
                                            * interval '3.5 s'
                    ELSE t0 + ($1 - t0) / 2 END AS tx OFFSET 0) f,
LATERAL (SELECT CASE pkind
                    WHEN 'rolled_back' THEN round(e1 * (1 - 0.001 * sgn), 4)
                    WHEN 'active' THEN round(avg * (1 + 0.004 * sgn), 4)
                    ELSE round(avg * (1 + sgn * ({_u(7)} - 0.47) * 0.03), 4) END AS x1,
                round((fe1 + fe2) * xq1 / q, 8) AS share1 OFFSET 0) x0,
LATERAL (SELECT round(x1 * (1 - 0.0001 * sgn), 4) AS x2,
                round((fe1 + fe2 - share1) * xq2 / (q - xq1), 8) AS share2 OFFSET 0) x,
LATERAL (SELECT round(x1 * xq1 * 0.00055, 8) AS fx1, round(x2 * xq2 * 0.00055, 8) AS fx2
         OFFSET 0) m
WHERE i < n
"""

POSITIONS_SQL = f"""
INSERT INTO monitoring.positions (
    id, account, exchange, symbol, side, quantity, traded_quantity, entry_price,
    current_price, stop_loss_price, status, exchange_order_id, realized_pnl, unrealized_pnl,
    fees, open_entry_fees, high_water_mark, low_water_mark, exit_price, exit_reason,
    opened_at, closed_at, updated_at, version, recorded_at)
SELECT id, account, '{EXCHANGE}', symbol, side, open_qty, q, avg,
       CASE pkind WHEN 'active' THEN cur_px ELSE x2 END,
       CASE WHEN pkind <> 'rolled_back' THEN stop_px END,
       pkind, 'X' || (id * 3 + 1), r1 + r2,
       CASE pkind WHEN 'active' THEN round((cur_px - avg) * open_qty * sgn, 8) ELSE 0 END,
       fe1 + fe2 + fx1 + fx2, fe1 + fe2 - share1 - share2,
       greatest(avg, x1, x2), least(avg, x1, x2), x2, reason,
       t0, CASE WHEN pkind <> 'active' THEN tx END, last_at,
       CASE pkind WHEN 'active' THEN 40 ELSE 9 END, last_at + interval '40 ms'
FROM bench_pos
"""

# Final snapshots: entry (slot 1), stop (slot 2), exit or rollback (slot 3).
ORDERS_SQL = f"""
INSERT INTO monitoring.orders (
    position_id, account, exchange, symbol, order_id, client_order_id, type, side, purpose,
    size, trigger_price, reduce_only, price_source, status, filled, remaining, average_price,
    fee, fee_currency, error_message, created_at, updated_at, filled_at, cancelled_at,
    version, recorded_at)
SELECT p.id, p.account, '{EXCHANGE}', p.symbol, 'X' || (p.id * 3 + o.slot), o.cid, o.type,
       o.side, o.purpose, o.size, o.trigger_price, o.slot > 1, 'last', o.status, o.filled,
       o.size - o.filled, o.avg, o.fee, CASE WHEN o.filled > 0 THEN 'USDT' END, o.error,
       o.created_at, o.updated_at, CASE WHEN o.status = 'FILLED' THEN o.updated_at END,
       CASE WHEN o.status = 'CANCELLED' THEN o.updated_at END, o.version,
       o.updated_at + interval '40 ms'
FROM bench_pos p
CROSS JOIN LATERAL (VALUES
    (1, p.cid_en, 'MARKET', p.en_side, 'entry', p.q, NULL::numeric, 'FILLED', p.q, p.avg,
     p.fe1 + p.fe2, NULL::text, p.t0, p.t0 + interval '60 ms', 6),
    (2, p.cid_sl, 'STOP_MARKET', p.x_side, 'stop_loss', p.q, p.stop_px,
     CASE p.pkind WHEN 'closed' THEN 'CANCELLED' WHEN 'active' THEN 'NEW' ELSE 'REJECTED' END,
     0, NULL, 0,
     CASE p.pkind WHEN 'closed' THEN 'position ' || p.id || ' closed (' || p.reason || ')'
                  WHEN 'rolled_back' THEN 'stop price would trigger immediately' END,
     p.t0 + interval '80 ms',
     CASE p.pkind WHEN 'closed' THEN p.tx + interval '30 ms'
                  WHEN 'active' THEN p.tx + interval '1 s' ELSE p.t0 + interval '120 ms' END,
     CASE p.pkind WHEN 'rolled_back' THEN 3 ELSE 4 END),
    (3, p.cid_x, 'MARKET', p.x_side, p.x_purpose, p.xq1 + p.xq2, NULL, 'FILLED',
     p.xq1 + p.xq2, p.xavg, p.fx1 + p.fx2, NULL, p.tx - interval '90 ms', p.tx,
     CASE p.pkind WHEN 'rolled_back' THEN 7 ELSE 6 END)
) AS o(slot, cid, type, side, purpose, size, trigger_price, status, filled, avg, fee, error,
       created_at, updated_at, version)
"""

# The 4 fills; trade ids are unique per (account, exchange, symbol), as the key wants.
TRADES_SQL = f"""
INSERT INTO monitoring.trades (
    position_id, account, exchange, symbol, side, order_type, quantity, price, executed_qty,
    average_price, order_id, client_order_id, trade_id, status, fee, fee_currency,
    realized_pnl, executed_at, recorded_at)
SELECT p.id, p.account, '{EXCHANGE}', p.symbol, f.side, 'MARKET', f.size, f.price, f.qty,
       f.avg, 'X' || (p.id * 3 + f.slot), f.cid, 'T' || (p.id * 4 + f.n), f.status, f.fee,
       'USDT', f.pnl, f.at, f.at + interval '40 ms'
FROM bench_pos p
CROSS JOIN LATERAL (VALUES
    (1, 1, p.cid_en, p.en_side, p.q, p.e1, p.q1, p.e1, 'PARTIALLY_FILLED', p.fe1,
     NULL::numeric, p.t0 + interval '40 ms'),
    (2, 1, p.cid_en, p.en_side, p.q, p.e2, p.q2, p.avg, 'FILLED', p.fe2, NULL,
     p.t0 + interval '60 ms'),
    (3, 3, p.cid_x, p.x_side, p.xq1 + p.xq2, p.x1, p.xq1, p.x1, 'PARTIALLY_FILLED', p.fx1,
     p.r1, p.tx - interval '40 ms'),
    (4, 3, p.cid_x, p.x_side, p.xq1 + p.xq2, p.x2, p.xq2, p.xavg, 'FILLED', p.fx2, p.r2, p.tx)
) AS f(n, slot, cid, side, size, price, qty, avg, status, fee, pnl, at)
"""

# Each order's history as core/journal.py writes it: (order, kind, previous, new,
# version, when, detail). A fill bumps the version twice (Order.with_fill), and its
# history row has no previous status and the trade in its detail (Journal.fill).
_FILL = {1: ("e1", "q1"), 2: ("e2", "q2"), 3: ("x1", "xq1"), 4: ("x2", "xq2")}
_ENTRY = (
    ("en", "created", None, "PENDING", 1, "p.t0", None),
    ("en", "submitted", "PENDING", "SUBMITTED", 2, "p.t0 + interval '5 ms'", None),
    ("en", "fill", None, "PARTIALLY_FILLED", 4, "p.t0 + interval '40 ms'", 1),
    ("en", "fill", None, "FILLED", 6, "p.t0 + interval '60 ms'", 2),
    ("sl", "created", None, "PENDING", 1, "p.t0 + interval '80 ms'", None),
    ("sl", "submitted", "PENDING", "SUBMITTED", 2, "p.t0 + interval '85 ms'", None),
)
_EXIT = (
    ("x", "created", None, "PENDING", 1, "p.tx - interval '90 ms'", None),
    ("x", "submitted", "PENDING", "SUBMITTED", 2, "p.tx - interval '85 ms'", None),
    ("x", "fill", None, "PARTIALLY_FILLED", 4, "p.tx - interval '40 ms'", 3),
    ("x", "fill", None, "FILLED", 6, "p.tx", 4),
)
_ACCEPTED = ("sl", "accepted", "SUBMITTED", "NEW", 3, "p.t0 + interval '120 ms'", None)
HISTORY = {
    "closed": (
        *_ENTRY, _ACCEPTED,
        ("sl", "cancelled", "NEW", "CANCELLED", 4, "p.tx + interval '30 ms'", "reason"),
        *_EXIT,
    ),
    "active": (
        *_ENTRY, _ACCEPTED,
        ("sl", "refreshed", "NEW", "NEW", 4, "p.tx + interval '1 s'", None),
        *_EXIT,
    ),
    "rolled_back": (
        *_ENTRY,
        ("sl", "rejected", "SUBMITTED", "REJECTED", 3, "p.t0 + interval '120 ms'", None),
        *_EXIT[:2],
        ("x", "accepted", "SUBMITTED", "NEW", 3, "p.tx - interval '60 ms'", None),
        ("x", "fill", None, "PARTIALLY_FILLED", 5, "p.tx - interval '40 ms'", 3),
        ("x", "fill", None, "FILLED", 7, "p.tx", 4),
    ),
}  # fmt: skip


_REASON = "jsonb_build_object('reason', 'position ' || p.id || ' closed (' || p.reason || ')')"


def _detail(detail: int | str | None) -> str:
    if detail is None:
        return "'{}'::jsonb"
    if detail == "reason":  # why the stop was cancelled, as Executor.cancel keeps it
        return _REASON
    price, qty = _FILL[int(detail)]
    return (
        f"jsonb_build_object('trade_id', 'T' || (p.id * 4 + {detail}), "
        f"'price', p.{price}::text, 'amount', p.{qty}::text)"
    )


def history_sql(pkind: str) -> str:
    """The ``order_events`` of one outcome's positions in the chunk (12 each)."""
    rows = ",\n    ".join(
        f"(p.cid_{order}, '{kind}', {repr(prev) if prev else 'NULL'}::text, '{new}', "
        f"{version}, {at}, {_detail(detail)})"
        for order, kind, prev, new, version, at, detail in HISTORY[pkind]
    )
    return f"""
INSERT INTO monitoring.order_events (
    event_key, client_order_id, position_id, kind, previous_status, new_status, version,
    detail, created_at, recorded_at)
SELECT h.cid || '#' || h.version || '#' || h.kind, h.cid, p.id, h.kind, h.prev, h.new,
       h.version, h.detail, h.at, h.at + interval '40 ms'
FROM bench_pos p
CROSS JOIN LATERAL (VALUES
    {rows}
) AS h(cid, kind, prev, new, version, at, detail)
WHERE p.pkind = '{pkind}'
"""


# (kind, severity, weight in %, about: 0 nothing, 1 a position, 2 an order): the kinds
# the daemon writes (core/journal.py callers, ORDERS_TRADES_AUDIT_REPORT.md).
EVENT_KINDS = (
    ("daemon_start", "info", 8, 0), ("daemon_ready", "info", 8, 0),
    ("daemon_stopping", "info", 8, 0), ("daemon_stop", "info", 8, 0),
    ("restored", "info", 10, 1), ("protecting", "warning", 3, 1),
    ("orphan_cancelled", "warning", 4, 2), ("closed_on_venue", "warning", 3, 1),
    ("audit_spool_replayed", "info", 4, 0), ("account_lock_lost", "warning", 3, 0),
    ("account_lock_reacquired", "info", 3, 0), ("rollback_started", "error", 3, 1),
    ("stop_missing", "critical", 2, 2), ("rollback_failed", "critical", 1, 1),
    ("not_flat", "critical", 1, 1), ("sync_failed", "error", 6, 0),
    ("cancel_failed", "error", 5, 2), ("reconcile_failed", "error", 4, 0),
    ("venue_flat_suspected", "warning", 3, 1), ("stop_move_failed", "error", 4, 2),
    ("shutdown_cancelled_work", "warning", 3, 0), ("intake_interrupted", "warning", 2, 0),
    ("closed_elsewhere", "critical", 1, 1), ("adopted", "critical", 1, 1),
    ("exit_found_on_venue", "warning", 2, 1),
)  # fmt: skip
assert sum(w for _, _, w, _ in EVENT_KINDS) == 100


def _kinds_values() -> str:
    rows, lo = [], 0
    for kind, severity, weight, about in EVENT_KINDS:
        rows.append(f"('{kind}', '{severity}', {lo}, {lo + weight}, {about})")
        lo += weight
    return ", ".join(rows)


# One account's daemon events over the year: $1 now, $2 account index, $3 rows, $4 the
# account's positions (an event about a position names the one open around its time).
EVENTS_SQL = f"""
INSERT INTO monitoring.events (
    event_key, kind, severity, account, position_id, client_order_id, message, detail,
    created_at, recorded_at)
SELECT md5(e.acct || ':' || e.j), k.kind, k.severity, e.acct,
       CASE WHEN k.about > 0 THEN e.pid END,
       CASE WHEN k.about = 2 THEN 'td-' || e.acct || '-p' || e.pid || '-sl-2' END,
       replace(k.kind, '_', ' '),
       CASE WHEN k.about > 0 THEN jsonb_build_object('position_id', e.pid)
            ELSE jsonb_build_object('host', 'trader-' || e.acct) END,
       e.at, e.at + interval '40 ms'
FROM (
    SELECT j, 'acct' || lpad(($2::int + 1)::text, 2, '0') AS acct,
           $1::timestamptz - interval '365 days'
               + ((j + (hashint8extended(j, $2::int) & 1023) / 1024.0) / $3::int)::float8
               * interval '365 days' AS at,
           least($4::bigint - 1, j::bigint * $4::bigint / $3::int) * {ACCOUNTS} + $2::int + 1
               AS pid,
           (hashint8extended(j * {ACCOUNTS} + $2::int, 11) & 1048575) % 100 AS h
    FROM generate_series(0, $3::int - 1) AS j
) e
JOIN (VALUES {_kinds_values()}) AS k(kind, severity, lo, hi, about)
  ON e.h >= k.lo AND e.h < k.hi
"""

# One account's price samples of the last 7 days, $3 of them spread over the positions
# that were open then (closed in the window, or still active): $1 now, $2 account.
UPDATES_SQL = """
INSERT INTO monitoring.position_updates (
    position_id, ts, price, quantity, unrealized_pnl, realized_pnl, stop_loss_price,
    high_water_mark, low_water_mark, max_drawdown, unrealized_pnl_pct, held_s, risk_pct,
    recorded_at)
WITH live AS (
    SELECT id, side, opened_at, closed_at, entry_price, traded_quantity, stop_loss_price,
           realized_pnl
    FROM monitoring.positions
    WHERE account = $2 AND (status = 'active'
          OR status = 'closed' AND closed_at > $1::timestamptz - interval '7 days')
), ranked AS (
    SELECT l.*, greatest(opened_at, $1 - interval '7 days') AS t_start,
           coalesce(closed_at, $1) AS t_end, CASE side WHEN 'long' THEN 1 ELSE -1 END AS sgn,
           row_number() OVER (ORDER BY id) AS rn, count(*) OVER () AS cnt
    FROM live l
), counted AS (
    SELECT r.*, ($3::bigint * rn / cnt - $3::bigint * (rn - 1) / cnt)::int AS k FROM ranked r
)
SELECT c.id, t.ts, x.px, c.traded_quantity,
       round((x.px - c.entry_price) * c.traded_quantity * c.sgn, 8),
       CASE WHEN c.closed_at IS NULL THEN c.realized_pnl ELSE 0 END, c.stop_loss_price,
       greatest(c.entry_price, x.px), least(c.entry_price, x.px), 0,
       round((x.px - c.entry_price) / c.entry_price * 100 * c.sgn, 6),
       round(extract(epoch FROM t.ts - c.opened_at), 6),
       round((x.px - c.stop_loss_price) / x.px * 100 * c.sgn, 6), t.ts + interval '40 ms'
FROM counted c
CROSS JOIN LATERAL generate_series(1, c.k) AS j
CROSS JOIN LATERAL (SELECT c.t_start + (c.t_end - c.t_start) * ((j - 0.5) / c.k) AS ts) t
CROSS JOIN LATERAL (SELECT round(c.entry_price * (1 + 0.004 * sin(j * 0.7 + c.id))::numeric, 4)
                    AS px) x
"""


def fill_records(pairs: int, key: int, targets: Sequence[asyncpg.Record]) -> list[AuditRecord]:
    """``pairs`` fills of new exit orders of the open positions, each a trade row and its
    history row as Journal.fill records them; ``key`` keeps ids apart between sets."""
    now = datetime.now(UTC)
    records = []
    for i in range(pairs):
        pid, account, symbol, side = targets[i % len(targets)]
        seq = 10 + key * pairs + i  # the data's own orders are 1..3
        order = Order(
            client_order_id(account, position_owner(pid), OrderPurpose.EXIT, seq),
            account, EXCHANGE, symbol, Side.SELL if side == "long" else Side.BUY,
            OrderType.MARKET, Decimal("0.010"), purpose=OrderPurpose.EXIT, reduce_only=True,
            position_id=pid, exchange_order_id=f"B{key}-{i}", status=OrderStatus.NEW,
            created_at=now, updated_at=now, version=3,
        )  # fmt: skip
        fill = Fill(f"B{key}-{i}", Decimal("100.5") + i % 97, Decimal("0.010"),
                    Decimal("0.00055275"), "USDT", ts=now)  # fmt: skip
        filled = order.with_fill(fill)
        detail = {"trade_id": fill.trade_id, "price": str(fill.price), "amount": str(fill.amount)}
        records.append(trade_record(filled, fill, realized_pnl=Decimal("0.1234")))
        records.append(order_event_record(filled, "fill", None, detail))
    return records
