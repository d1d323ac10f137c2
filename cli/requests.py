"""Requests to the daemon: ``signal``, ``order place``, ``order cancel``, ``close``.

A request is a row: ``monitoring.signals`` for a signal, ``monitoring.commands`` (kind
``place_order`` / ``cancel_order`` / ``close_position`` with a JSON payload) for the rest,
with ``account`` = ``TRADER_ACCOUNT``. The row's id is printed at once (alone on the first
line, for scripts); with ``--wait`` the row is polled until the daemon records its
outcome: exit 0 (done, with the result), 1 (rejected or failed, with the reason) or 2 (no
outcome in time: the daemon is probably not running).

Before anything is written, the row goes through the daemon's own first check
(:func:`core.signals.parse_signal`, :func:`core.order_requests.parse_order_request`), so a
mistake the daemon would reject without market data is an input error here (exit 2, one
line naming the command-line option) instead of a row that ends ``rejected``. Then
:func:`admit` asks the database which daemon serves the account (``monitoring.daemons``):
none live, and nothing is queued (exit 2, saying so); else the row goes through the same
check the daemon runs on every row, core/request_check.py, against that daemon's symbols
(not this shell's ``TRADER_SYMBOLS``), with the words the daemon would reject it with.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

import asyncpg

from cli.arguments import InputError, PriceOrPercent
from cli.connect import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandFailed
from cli.numbers import Precision, precisions, shown
from core.errors import ValidationError
from core.order_requests import parse_order_request
from core.request_check import check_command, check_signal
from core.signals import parse_signal
from database.daemons import last_daemon, live_daemon, not_served
from database.repository import FINAL_INTAKE_STATUSES, Repository

POLL_INTERVAL_S = 0.1
POSITION_GRACE_S = 1.0  # the position row reaches the database through the audit writer

# Row / payload field -> the option that sets it, to name the option in an input error.
SIGNAL_OPTIONS = {
    "symbol": "--symbol",
    "side": "--side",
    "amount": "--amount",
    "quote_amount": "--quote-amount",
    "entry_type": "--entry",
    "price": "--price",
    "stop_loss": "--stop-loss",
    "stop_loss_price": "--stop-loss",
    "stop_loss_percent": "--stop-loss",
    "take_profit": "--take-profit",
    "take_profit_price": "--take-profit",
    "take_profit_percent": "--take-profit",
    "trailing_activation_percent": "--trailing-activation",
    "trailing_callback_percent": "--trailing-callback",
}
ORDER_OPTIONS = {
    "symbol": "--symbol",
    "side": "--side",
    "type": "--type",
    "amount": "--amount",
    "price": "--price",
    "trigger_price": "--trigger-price",
    "trail_percent": "--trail-percent",
    "trail_amount": "--trail-amount",
    "activation_price": "--activation-price",
    "expires_in": "--expires-in",
    "expires_at": "--expires-in",
    "reduce_only": "--reduce-only",
    "native": "--native",
    "position_id": "--position",
    "price_source": "--price-source",
}


def _checked(
    check: Callable[[Mapping[str, Any]], object], row: Mapping[str, Any], options: Mapping[str, str]
) -> None:
    """Run the daemon's check on ``row``; its complaint becomes an :class:`InputError`."""
    try:
        check(row)
    except ValidationError as exc:
        raise InputError(options.get(exc.field, exc.field), exc.rule) from None


def _level(row: dict[str, Any], name: str, value: PriceOrPercent | None) -> None:
    if value is not None:
        row[f"{name}_percent" if value.is_percent else f"{name}_price"] = value.value


def signal_row(args: argparse.Namespace) -> dict[str, Any]:
    """The ``monitoring.signals`` row for ``main.py signal`` (its ``account`` is set when
    it is submitted); raise :class:`InputError`."""
    if args.entry == "limit" and args.price is None:
        raise InputError("--price", "is required with --entry limit")
    if args.entry == "market" and args.price is not None:
        raise InputError("--price", "is only for --entry limit")
    if args.trailing_activation is not None and args.trailing_callback is None:
        raise InputError("--trailing-callback", "is required with --trailing-activation")
    row: dict[str, Any] = {
        "symbol": args.symbol,
        "side": args.side,
        "entry_type": args.entry,
    }
    optional = {
        "amount": args.amount,
        "quote_amount": args.quote_amount,
        "price": args.price,
        "trailing_activation_percent": args.trailing_activation,
        "trailing_callback_percent": args.trailing_callback,
    }
    row.update({k: v for k, v in optional.items() if v is not None})
    _level(row, "stop_loss", args.stop_loss)
    _level(row, "take_profit", args.take_profit)
    _checked(parse_signal, row, SIGNAL_OPTIONS)
    return row


def place_order_payload(args: argparse.Namespace) -> dict[str, Any]:
    """The ``place_order`` payload for ``main.py order place``; raise :class:`InputError`."""
    payload: dict[str, Any] = {
        "symbol": args.symbol,
        "side": args.side,
        "type": args.type.upper(),
        "amount": args.amount,
        "reduce_only": bool(args.reduce_only),
        "native": bool(args.native),
    }
    optional = {
        "price": args.price,
        "trigger_price": args.trigger_price,
        "trail_percent": args.trail_percent,
        "trail_amount": args.trail_amount,
        "activation_price": args.activation_price,
        "expires_in": args.expires_in,
        "position_id": args.position,
        "price_source": args.price_source,
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    _checked(parse_order_request, payload, ORDER_OPTIONS)
    # Decimals travel as strings in the JSON payload: exact, and what the daemon expects.
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in payload.items()}


def cancel_order_payload(args: argparse.Namespace) -> dict[str, Any]:
    """The ``cancel_order`` payload: the order's exchange id or client order id."""
    return {"order_id": args.order}


def close_position_payload(args: argparse.Namespace) -> dict[str, Any]:
    """The ``close_position`` payload."""
    return {"position_id": args.position_id}


async def admit(
    pool: asyncpg.Pool, kind: str, fields: Mapping[str, Any], account: str, prog: str
) -> Mapping[str, Any]:
    """The live daemon that will run this request, once the request passed the check it
    runs on every row; raise :class:`CommandFailed` (exit 2) when there is no live daemon
    (nothing is queued) or the check refuses."""
    daemon = await live_daemon(pool, account)
    if daemon is None:
        why = not_served(account, await last_daemon(pool, account))
        raise CommandFailed(
            f"{prog}: no live daemon: {why}; nothing was queued "
            "(start it with `python main.py run`)",
            EXIT_USAGE,
        )
    symbols = list(daemon["symbols"])
    options = SIGNAL_OPTIONS if kind == "signal" else ORDER_OPTIONS
    try:
        if kind == "signal":
            check_signal(fields, symbols)
        else:
            check_command({"kind": kind, "payload": fields}, symbols)
    except ValidationError as exc:
        refusal = InputError(options.get(exc.field, exc.field), exc.rule)
        raise CommandFailed(f"{prog}: {refusal}", EXIT_USAGE) from None
    return daemon


# -- submitting and waiting -------------------------------------------------------------
FetchRow = Callable[[], Awaitable[dict[str, Any] | None]]


async def wait_for_outcome(fetch: FetchRow, wait_s: float) -> dict[str, Any] | None:
    """Poll the request row until its status is final or ``wait_s`` has passed; return the
    last row seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        row = await fetch()
        if row is not None and row["status"] in FINAL_INTAKE_STATUSES:
            return row
        left = deadline - loop.time()
        if left <= 0:
            return row
        await asyncio.sleep(min(POLL_INTERVAL_S, left))


# The order a person reads a result in (jsonb does not keep the daemon's key order).
RESULT_KEYS = (
    "position_id",
    "client_order_id",
    "order_id",
    "status",
    "symbol",
    "side",
    "type",
    "quantity",
    "amount",
    "filled",
    "requested",
    "entry_price",
    "stop_loss_price",
    "take_profit_price",
    "realized_pnl",
    "exit_reason",
    "emulated",
)


def describe(values: Mapping[str, Any], precision: Precision | None = None) -> str:
    """``key=value`` pairs of the non-empty values, the usual keys first; numbers plain,
    prices, amounts and P&L rounded to the market's ``precision`` when known."""
    rank = {k: i for i, k in enumerate(RESULT_KEYS)}
    keys = sorted(values, key=lambda k: (rank.get(k, len(rank)), k))
    return " ".join(
        f"{k}={shown(k, values[k], precision)}"
        for k in keys
        if values[k] is not None and values[k] != ""
    )


def _precision(markets: Any, values: Mapping[str, Any]) -> Precision | None:
    symbol = values.get("symbol")
    return precisions(markets).get(symbol) if isinstance(symbol, str) else None


def entry_outcome(result: Mapping[str, Any], precision: Precision | None) -> dict[str, Any]:
    """A signal's result for the ``done:`` line: ``filled=<filled>/<requested>`` in place
    of the position's quantity, so a partial entry shows as one."""
    summary = dict(result)
    filled, requested = summary.pop("filled", None), summary.pop("requested", None)
    if filled is not None and requested is not None:
        summary.pop("quantity", None)
        summary["filled"] = (
            f"{shown('filled', filled, precision)}/{shown('requested', requested, precision)}"
        )
    return summary


def _finished(kind: str, row_id: int, row: Mapping[str, Any] | None, wait_s: float) -> int:
    """Print a request's outcome; return the exit code."""
    if row is None or row["status"] not in FINAL_INTAKE_STATUSES:
        state = "still being processed" if row and row["status"] == "processing" else "not taken"
        print(
            f"no outcome after {wait_s:g}s: {kind} {row_id} is {state}; "
            + (
                "the daemon is busy or stuck"
                if state.startswith("still")
                else "the daemon is probably not running"
            ),
            file=sys.stderr,
        )
        return EXIT_USAGE
    if row["status"] != "done":
        print(f"{row['status']}: {row['reason'] or 'no reason given'}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def _position_summary(repo: Repository, position_id: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + POSITION_GRACE_S
    while (position := await repo.get_position(position_id)) is None:
        if loop.time() >= deadline:
            return {"position_id": position_id}
        await asyncio.sleep(POLL_INTERVAL_S)
    keys = ("status", "symbol", "side", "quantity", "entry_price", "stop_loss_price")
    return {"position_id": position_id, **{k: position[k] for k in (*keys, "take_profit_price")}}


async def submit_signal(
    pool: asyncpg.Pool,
    row: Mapping[str, Any],
    account: str,
    wait_s: float | None,
    *,
    markets: Any = None,
) -> int:
    """Insert the signal for ``account``, print its id, and with ``wait_s`` wait for and
    print the outcome (the entry's final fill of the amount asked for); ``markets``: the
    serving daemon's precision document, for rounding."""
    repo = Repository(pool)
    signal_id = await repo.insert_signal(**row, account=account)
    print(signal_id, flush=True)
    if wait_s is None:
        return EXIT_OK
    outcome = await wait_for_outcome(lambda: repo.get_signal(signal_id), wait_s)
    code = _finished("signal", signal_id, outcome, wait_s)
    if code == EXIT_OK:
        assert outcome is not None
        summary: Mapping[str, Any] = {"position_id": None}
        result = outcome.get("result")
        if isinstance(result, Mapping) and result:
            precision = _precision(markets, result)
            summary = entry_outcome(result, precision)
        else:  # a daemon that does not write a signal's result: read the position
            if outcome["position_id"] is not None:
                summary = await _position_summary(repo, int(outcome["position_id"]))
            precision = _precision(markets, summary)
        print(f"done: {describe(summary, precision)}".rstrip())
    return code


async def submit_command(
    pool: asyncpg.Pool,
    kind: str,
    payload: Mapping[str, Any],
    account: str,
    wait_s: float | None,
    *,
    markets: Any = None,
) -> int:
    """Insert the command, print its id, and with ``wait_s`` wait for and print the outcome."""
    repo = Repository(pool)
    command_id = await repo.insert_command(kind, payload, account)
    print(command_id, flush=True)
    if wait_s is None:
        return EXIT_OK
    outcome = await wait_for_outcome(lambda: repo.get_command(command_id), wait_s)
    code = _finished("command", command_id, outcome, wait_s)
    if code == EXIT_OK:
        assert outcome is not None
        result = outcome["result"] if isinstance(outcome["result"], Mapping) else {}
        print(f"done: {describe(result, _precision(markets, result))}".rstrip())
    return code
