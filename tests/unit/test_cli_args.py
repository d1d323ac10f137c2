"""Command-line parsing: arguments become the request rows the daemon reads, and bad
input is one line naming the argument, exit 2, before anything else happens."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import structlog

from cli.app import build_parser, main
from cli.requests import (
    cancel_order_payload,
    close_position_payload,
    place_order_payload,
    signal_row,
)

BTC = "BTC/USDT:USDT"


def _signal(*extra: str) -> dict[str, Any]:
    args = build_parser().parse_args(["signal", "--symbol", BTC, "--side", "long", *extra])
    return signal_row(args)


def _order(*extra: str) -> dict[str, Any]:
    args = build_parser().parse_args(
        ["order", "place", "--symbol", BTC, "--side", "buy", "--amount", "0.01", *extra]
    )
    return place_order_payload(args)


def test_signal_with_percent_stop_and_take_profit() -> None:
    """``--stop-loss 2%`` / ``--take-profit 4%`` become the percent columns."""
    row = _signal("--amount", "0.01", "--stop-loss", "2%", "--take-profit", "4%")
    assert {
        "symbol": BTC,
        "side": "long",
        "entry_type": "market",
        "amount": Decimal("0.01"),
        "stop_loss_percent": Decimal(2),
        "take_profit_percent": Decimal(4),
    } == row


def test_signal_with_price_levels_limit_entry_and_trailing() -> None:
    """Bare numbers are prices; trailing values are percents with or without ``%``."""
    row = _signal(
        "--quote-amount", "500", "--entry", "limit", "--price", "60000",
        "--stop-loss", "59000", "--take-profit", "63000.5",
        "--trailing-activation", "1%", "--trailing-callback", "0.5",
    )  # fmt: skip
    assert {
        "symbol": BTC,
        "side": "long",
        "entry_type": "limit",
        "quote_amount": Decimal(500),
        "price": Decimal(60000),
        "stop_loss_price": Decimal(59000),
        "take_profit_price": Decimal("63000.5"),
        "trailing_activation_percent": Decimal(1),
        "trailing_callback_percent": Decimal("0.5"),
    } == row


def test_signal_side_and_entry_are_case_insensitive() -> None:
    """``--side SHORT --entry MARKET`` is accepted as the lower-case values."""
    row = _signal("--amount", "1", "--side", "SHORT", "--entry", "MARKET")
    assert ("short", "market") == (row["side"], row["entry_type"])


def test_wait_is_parsed_as_seconds() -> None:
    """``--wait 2.5`` is 2.5 seconds; no ``--wait`` means do not wait."""
    parser = build_parser()
    base = ["signal", "--symbol", BTC, "--side", "long", "--amount", "1"]
    assert 2.5 == parser.parse_args([*base, "--wait", "2.5"]).wait
    assert parser.parse_args(base).wait is None


def test_order_place_payload_has_the_keys_the_daemon_reads() -> None:
    """A stop-limit with expiry, reduce-only and a position: exact strings, upper-case type."""
    payload = _order(
        "--type", "stop_limit", "--trigger-price", "61000", "--price", "61050",
        "--expires-in", "30m", "--reduce-only", "--position", "42",
    )  # fmt: skip
    assert {
        "symbol": BTC,
        "side": "buy",
        "type": "STOP_LIMIT",
        "amount": "0.01",
        "price": "61050",
        "trigger_price": "61000",
        "expires_in": "30m",
        "reduce_only": True,
        "native": False,
        "position_id": 42,
    } == payload


def test_order_place_trailing_and_native_limit() -> None:
    """A trailing stop by percent with activation; a native limit order."""
    trailing = _order(
        "--type", "trailing_stop", "--trail-percent", "1.5%", "--activation-price", "62000"
    )
    assert ("TRAILING_STOP", "1.5", "62000") == (
        trailing["type"],
        trailing["trail_percent"],
        trailing["activation_price"],
    )
    native = _order("--type", "limit", "--price", "50000", "--native")
    assert (True, "50000", "LIMIT") == (native["native"], native["price"], native["type"])


def test_order_place_price_source() -> None:
    """``--price-source mark`` travels in the payload; absent, the daemon uses the last
    trade."""
    marked = _order("--type", "stop_market", "--trigger-price", "51000", "--price-source", "MARK")
    assert "mark" == marked["price_source"]
    assert "price_source" not in _order("--type", "stop_market", "--trigger-price", "51000")


def test_cancel_and_close_payloads() -> None:
    """``order cancel REF`` and ``close ID`` carry the reference and the id."""
    parser = build_parser()
    cancel = parser.parse_args(["order", "cancel", "td-main-p4-sl-1"])
    assert {"order_id": "td-main-p4-sl-1"} == cancel_order_payload(cancel)
    assert {"position_id": 7} == close_position_payload(parser.parse_args(["close", "7"]))


BAD_INPUT = [
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "-1"], "--amount"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "0"], "--amount"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "NaN"], "--amount"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "inf"], "--amount"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1e400"], "--amount"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1e-40"], "--amount"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--quote-amount", "5"],
     "--quote-amount"),
    (["signal", "--symbol", BTC, "--side", "long"], "--amount"),
    (["signal", "--symbol", BTC, "--side", "buy", "--amount", "1"], "--side"),
    (["signal", "--symbol", "", "--side", "long", "--amount", "1"], "--symbol"),
    (["signal", "--symbol", "BTC/USDT", "--side", "long", "--amount", "1"], "--symbol"),
    (["signal", "--symbol", "BTC/USDT:", "--side", "long", "--amount", "1"], "--symbol"),
    (["signal", "--symbol", "BTC'--", "--side", "long", "--amount", "1"], "--symbol"),
    (["order", "place", "--symbol", "x;y", "--side", "buy", "--type", "limit",
      "--amount", "1", "--price", "5"], "--symbol"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--stop-loss", "-2%"],
     "--stop-loss"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--take-profit", "-.5"],
     "--take-profit"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--stop-loss", "abc%"],
     "--stop-loss"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--stop-loss", "150%"],
     "--stop-loss"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--stop-loss", "-5"],
     "--stop-loss"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--take-profit", "x"],
     "--take-profit"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--entry", "limit"],
     "--price"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--price", "5"], "--price"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1",
      "--trailing-activation", "1%"], "--trailing-callback"),
    (["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--wait", "-1"], "--wait"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "market", "--amount", "1"],
     "--type"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "limit", "--amount", "1"],
     "--price"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "stop_market",
      "--amount", "1"], "--trigger-price"),
    (["order", "place", "--symbol", BTC, "--side", "sell", "--type", "stop_limit",
      "--amount", "1", "--trigger-price", "10", "--price", "11"], "--price"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "trailing_stop",
      "--amount", "1"], "--trail-percent"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "trailing_stop",
      "--amount", "1", "--trail-percent", "1", "--trail-amount", "5"], "--trail-amount"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "limit", "--amount", "1",
      "--price", "5", "--trail-amount", "5"], "--trail-percent"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "trailing_stop",
      "--amount", "1", "--trail-percent", "1", "--native"], "--native"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "limit", "--amount", "1",
      "--price", "5", "--expires-in", "soon"], "--expires-in"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "limit", "--amount", "1",
      "--price", "5", "--position", "-3"], "--position"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "stop_market",
      "--amount", "1", "--trigger-price", "5", "--price-source", "index"], "--price-source"),
    (["order", "place", "--symbol", BTC, "--side", "buy", "--type", "limit", "--amount", "1",
      "--price", "5", "--native", "--price-source", "mark"], "--price-source"),
    (["order", "cancel", ""], "ORDER_ID|CLIENT_ORDER_ID"),
    (["close", "abc"], "POSITION_ID"),
    (["close", "0"], "POSITION_ID"),
    (["report", "--since", "7x"], "--since"),
    (["report", "--since", "0d"], "--since"),
    (["report", "--plot", "equity.jpg"], "--plot"),
    (["report", "--plot", "equity"], "--plot"),
    (["report", "--plot", "equity.png.pdf"], "--plot"),
    (["positions", "--bogus"], "--bogus"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "argument"), BAD_INPUT)
def test_bad_input_is_one_line_naming_the_argument_and_exit_2(
    argv: list[str], argument: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad value stops before settings or the database: exit 2, one stderr line."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    assert 2 == stopped.value.code
    assert "" == out
    assert 1 == len(err.strip().splitlines()), err
    assert argument in err
    assert err.startswith("main.py")


def test_plot_file_format_comes_from_its_extension(capsys: pytest.CaptureFixture[str]) -> None:
    """``--plot`` takes .png or .svg in any case; anything else is refused in one line
    saying which extensions work, before settings or the database."""
    parser = build_parser()
    assert "EQUITY.PNG" == parser.parse_args(["report", "--plot", "EQUITY.PNG"]).plot.name
    assert "out/x.svg" == str(parser.parse_args(["report", "--plot", "out/x.svg"]).plot)
    with pytest.raises(SystemExit) as stopped:
        main(["report", "--plot", "x.jpg"])
    assert (2, "main.py report: argument --plot: must end in .png or .svg, got 'x.jpg'\n") == (
        stopped.value.code,
        capsys.readouterr().err,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-2%", "must be a percentage between 0 and 100, got '-2%'"),
        ("-61000", "must be greater than 0, got '-61000'"),
    ],
)
def test_negative_stop_loss_reaches_our_check(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--stop-loss -2%`` is judged as a value (not taken for an option): one line
    saying what is wrong with it, exit 2."""
    with pytest.raises(SystemExit) as stopped:
        main(["signal", "--symbol", BTC, "--side", "long", "--amount", "1", "--stop-loss", value])
    assert (2, f"main.py signal: argument --stop-loss: {message}\n") == (
        stopped.value.code,
        capsys.readouterr().err,
    )


@pytest.mark.parametrize(
    "symbol",
    ["BTC/USDT:USDT", "BTCUSDT", "btc/usdt:usdt", "BTC/USDT:USDT-250627", "BTC-USDT-SWAP"],
)
def test_symbol_shapes_that_are_accepted(symbol: str) -> None:
    """Unified symbols (dated ones too) and bare exchange ids pass the shape check."""
    args = build_parser().parse_args(
        ["signal", "--symbol", f" {symbol} ", "--side", "long", "--amount", "1"]
    )
    assert symbol == args.symbol


@pytest.fixture
def paper_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """A paper deployment whose database refuses connections: a request that got past
    its checks fails with exit 1 (database), one that did not exits 2."""
    import os

    for key in list(os.environ):
        if key.startswith("TRADER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADER_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TRADER_DATABASE_URL", "postgresql://u@127.0.0.1:1/none")
    monkeypatch.setenv("TRADER_SYMBOLS", "BTC/USDT:USDT,ETH/USDT:USDT")
    yield
    structlog.reset_defaults()  # the CLI pointed logging at this test's captured stderr


@pytest.mark.usefixtures("paper_env")
@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "ethusdt", "ETHUSDT"])
def test_known_market_passes_on_to_the_database(
    symbol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A listed, priced market passes the checks (and then meets the refused database)."""
    code = main(["signal", "--symbol", symbol, "--side", "long", "--amount", "0.01"])
    assert (1, "database: ") == (code, capsys.readouterr().err[:10])


def test_symbols_match_unified_or_bare_in_any_case() -> None:
    """The shared check (core/request_check.py) knows a daemon's TRADER_SYMBOLS unified or
    bare, any case; anything else is refused naming the setting and its value."""
    from core.errors import ValidationError
    from core.request_check import check_symbol

    symbols = ("BTC/USDT:USDT", "SOLUSDT")
    for ok in ("BTC/USDT:USDT", "btcusdt", "SOLUSDT", "SOL/USDT:USDT"):
        check_symbol(ok, symbols)
    with pytest.raises(ValidationError) as refused:
        check_symbol("ETH/USDT:USDT", symbols)
    assert (
        "symbol: 'ETH/USDT:USDT' is not among the symbols this daemon trades "
        "(TRADER_SYMBOLS=BTC/USDT:USDT,SOLUSDT)"
    ) == str(refused.value)
