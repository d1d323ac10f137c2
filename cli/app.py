"""The command line: argument parsing and dispatch to the command implementations.

Commands (docs/architecture.md, "Command line"): ``run`` (the default) and ``migrate`` go to
cli/service.py; ``check`` to cli/check.py; the requests ``signal``, ``order place``,
``order cancel`` and ``close`` to cli/requests.py; the listings ``orders`` and
``positions`` to cli/listings.py; ``report`` to cli/report.py; ``status`` to cli/status.py.

Exit codes: 0 success, 1 failure (a bad setting, a refused start, a rejected request,
an unreachable database), 2 bad arguments (one line naming the argument) or no outcome in
time. Arguments are checked before settings are loaded, so a typo costs nothing else;
then a request is checked against the live daemon serving the account, as published in
``monitoring.daemons`` (its ``TRADER_SYMBOLS``), before anything is queued.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from cli import arguments as value
from cli.arguments import InputError
from config.settings import Settings, SettingsError, load_settings

ORDER_TYPES = ("limit", "stop_market", "stop_limit", "take_profit_market", "trailing_stop")


class _Parser(argparse.ArgumentParser):
    """argparse, but an input error is one line naming the argument, and exit 2.

    A value that starts with a minus and a digit (``--stop-loss -2%``, ``--amount -1e3``)
    is a value, never an option: it reaches our checks, which say what is wrong with it,
    instead of argparse's "expected one argument". (argparse only recognises plain
    negative numbers; Python 3.13 widened it the same way.) No option of ours looks like
    ``-<digit>``, so nothing is shadowed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=value.seconds,
        metavar="SECONDS",
        help="wait this long for the daemon's outcome (exit 0 done, 1 refused, 2 no outcome)",
    )


def _signal_parser(sub: Any) -> None:
    p = sub.add_parser("signal", help="open a position (entry + protective stop)")
    p.add_argument("--symbol", required=True, type=value.symbol, help="e.g. BTC/USDT:USDT")
    p.add_argument("--side", required=True, type=value.lower, choices=("long", "short"))
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--amount", type=value.positive_decimal, metavar="Q", help="base amount")
    size.add_argument(
        "--quote-amount", type=value.positive_decimal, metavar="Q", help="amount in quote"
    )
    p.add_argument("--entry", type=value.lower, choices=("market", "limit"), default="market")
    p.add_argument("--price", type=value.positive_decimal, metavar="P", help="limit entry price")
    p.add_argument(
        "--stop-loss", type=value.price_or_percent, metavar="2%|PRICE", help="percent or price"
    )
    p.add_argument(
        "--take-profit", type=value.price_or_percent, metavar="4%|PRICE", help="percent or price"
    )
    p.add_argument("--trailing-activation", type=value.percent, metavar="PCT")
    p.add_argument("--trailing-callback", type=value.percent, metavar="PCT")
    _wait(p)
    p.set_defaults(parser=p)


def _order_parsers(sub: Any) -> None:
    order = sub.add_parser("order", help="place or cancel a manual order")
    actions = order.add_subparsers(
        dest="action", metavar="place|cancel", required=True, parser_class=_Parser
    )
    place = actions.add_parser("place", help="place a limit / stop / take-profit / trailing order")
    place.add_argument("--symbol", required=True, type=value.symbol)
    place.add_argument("--side", required=True, type=value.lower, choices=("buy", "sell"))
    place.add_argument("--type", required=True, type=value.lower, choices=ORDER_TYPES)
    place.add_argument("--amount", required=True, type=value.positive_decimal, metavar="Q")
    place.add_argument("--price", type=value.positive_decimal, metavar="P")
    place.add_argument("--trigger-price", type=value.positive_decimal, metavar="P")
    trail = place.add_mutually_exclusive_group()
    trail.add_argument("--trail-percent", type=value.percent, metavar="X")
    trail.add_argument("--trail-amount", type=value.positive_decimal, metavar="X")
    place.add_argument("--activation-price", type=value.positive_decimal, metavar="P")
    place.add_argument("--expires-in", type=value.expiry, metavar="30m")
    place.add_argument("--reduce-only", action="store_true")
    place.add_argument("--position", type=value.positive_int, metavar="ID")
    place.add_argument("--native", action="store_true", help="rest on the exchange")
    place.add_argument(
        "--price-source",
        type=value.lower,
        choices=("last", "mark", "quote"),
        help="the price an emulated order watches: last trade (default), mark, or quote "
        "(ask for a buy, bid for a sell)",
    )
    _wait(place)
    place.set_defaults(parser=place)
    cancel = actions.add_parser("cancel", help="cancel an order")
    cancel.add_argument(
        "order", type=value.order_ref, metavar="ORDER_ID|CLIENT_ORDER_ID", help="the order"
    )
    _wait(cancel)
    cancel.set_defaults(parser=cancel)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (docs/architecture.md, "Command line")."""
    parser = _Parser(prog="main.py", description="The trading daemon and its tools.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.add_parser("run", help="run the daemon (the default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    sub.add_parser("check", help="check settings, database and exchange; exit 1 on a problem")
    sub.add_parser("status", help="the daemons serving each account, and requests nobody takes")
    _signal_parser(sub)
    _order_parsers(sub)
    for name, what in (("orders", "live orders"), ("positions", "open positions")):
        listing = sub.add_parser(name, help=f"list {what} (--all: every one)")
        listing.add_argument("--all", action="store_true", help="include finished ones")
        listing.add_argument("--json", action="store_true", help="print JSON")
    close = sub.add_parser("close", help="close a position at market")
    close.add_argument("position_id", type=value.positive_int, metavar="POSITION_ID")
    _wait(close)
    close.set_defaults(parser=close)
    audit = sub.add_parser("audit", help="the audit trail's dead letters")
    audit_actions = audit.add_subparsers(dest="action", required=True, parser_class=_Parser)
    audit_actions.add_parser(
        "replay", help="write the dead letters again (after fixing their cause); idempotent"
    )
    psql = sub.add_parser("psql", help="psql on the daemon's database (embedded or not)")
    psql.add_argument("psql_args", nargs="*", metavar="-- PSQL_ARGS", help="passed to psql")
    db_url = sub.add_parser("db-url", help="the database URL, password masked")
    db_url.add_argument("--show-secret", action="store_true", help="print the password too")
    reference = sub.add_parser("settings", help="every TRADER_* setting: type, default, meaning")
    reference.add_argument(
        "--markdown", action="store_true", help="as Markdown (docs/settings.md is this)"
    )
    report = sub.add_parser("report", help="performance: win rate, P&L, drawdown, daily P&L")
    report.add_argument("--since", type=value.duration, metavar="7d", help="e.g. 30m, 24h, 7d")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.add_argument(
        "--plot",
        type=value.plot_file,
        metavar="FILE.png|FILE.svg",
        help="draw equity, drawdown and trades (PNG or SVG, by the extension)",
    )
    return parser


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(1) from None


def _build_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(kind, row or payload) of a request command; raise :class:`InputError`."""
    from cli import requests

    if args.command == "signal":
        return "signal", requests.signal_row(args)
    if args.command == "close":
        return "close_position", requests.close_position_payload(args)
    if args.action == "place":
        return "place_order", requests.place_order_payload(args)
    return "cancel_order", requests.cancel_order_payload(args)


def _request(args: argparse.Namespace) -> int:
    from cli import requests
    from cli.connect import run_with_pool

    try:
        kind, fields = _build_request(args)
    except InputError as exc:
        args.parser.error(str(exc))  # reported under the sub-command's name, like argparse
    settings = _settings()
    account = settings.account

    async def submit(pool: Any) -> int:
        # Checked against the daemon that will run it, as it checks every row.
        daemon = await requests.admit(pool, kind, fields, account, args.parser.prog)
        markets = daemon["markets"]
        if kind == "signal":
            return await requests.submit_signal(pool, fields, account, args.wait, markets=markets)
        return await requests.submit_command(
            pool, kind, fields, account, args.wait, markets=markets
        )

    return run_with_pool(settings, submit)


def _check() -> int:
    from cli.check import check_command

    try:
        settings = load_settings()
    except SettingsError as exc:
        for line in str(exc).split("; "):
            print(f"settings: {line}", file=sys.stderr)
        return 1
    return check_command(settings)


def main(argv: Sequence[str]) -> int:
    """Parse ``argv`` (without the program name), run the command, return the exit code."""
    args = build_parser().parse_args(list(argv))
    command = args.command or "run"
    if command in ("signal", "order", "close"):
        return _request(args)
    if command == "check":
        return _check()
    if command == "settings":  # the reference needs no settings of its own
        from cli.settings_reference import render_markdown, render_text

        print(render_markdown() if args.markdown else render_text(), end="")
        return 0
    settings = _settings()
    if command in ("psql", "db-url"):
        from cli.psql import db_url_command, psql_command

        if command == "db-url":
            return db_url_command(settings, show_secret=args.show_secret)
        return psql_command(settings, args.psql_args)
    if command in ("orders", "positions", "report"):
        return _query(settings, args)
    if command == "audit":
        from cli.audit_replay import replay_command
        from cli.connect import run_with_pool

        spool = settings.spool_dir / settings.account
        return run_with_pool(settings, lambda pool: replay_command(pool, spool))
    if command == "status":
        from cli.connect import run_with_pool
        from cli.status import status_command

        return run_with_pool(settings, status_command)
    if command == "migrate":
        from cli.service import migrate_command

        return migrate_command(settings)
    from cli.service import run_command

    return run_command(settings)


def _query(settings: Settings, args: argparse.Namespace) -> int:
    from cli.connect import run_with_pool

    account = settings.account
    if args.command == "report":
        from cli.report import report_command

        return run_with_pool(
            settings,
            lambda pool: report_command(
                pool,
                account,
                venue=settings.exchange,
                window=args.since,
                as_json=args.json,
                plot=args.plot,
            ),
        )
    from cli.listings import orders_command, positions_command

    listing = orders_command if args.command == "orders" else positions_command
    return run_with_pool(
        settings, lambda pool: listing(pool, account, everything=args.all, as_json=args.json)
    )
