"""Human output: numbers never in exponent form, prices / amounts / P&L to the market's
precision in done lines and tables, every digit in JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from cli.listings import position_cells
from cli.numbers import Precision, plain, precisions, rounded_row, shown
from cli.requests import describe, entry_outcome

BTC = Precision(Decimal("0.1"), Decimal("0.001"))
DOGE = Precision(Decimal("0.00001"), Decimal("1"))


def test_no_exponent_anywhere() -> None:
    """1E+5 reads 100000, 1.00E+6 reads 1000000, with or without a known market."""
    assert ["100000", "1000000", "0.0001", "0"] == [
        plain(v) for v in (Decimal("1E+5"), "1.00E+6", Decimal("1E-4"), Decimal("0E-8"))
    ]
    assert "quantity=100000 amount=100000" == describe(
        {"quantity": "1.0E+5", "amount": Decimal("1E+5")}
    )


def test_done_line_rounds_to_the_market() -> None:
    """Prices to the tick's decimals, amounts to the lot step's, P&L to cents (or the
    tick's decimals when finer); text fields untouched."""
    values = {
        "symbol": "BTC/USDT:USDT",
        "quantity": "0.02",
        "entry_price": "60012.34567",
        "realized_pnl": "-1.23456789",
        "exit_reason": "manual",
    }
    assert (
        "symbol=BTC/USDT:USDT quantity=0.020 entry_price=60012.3 realized_pnl=-1.23 "
        "exit_reason=manual"
    ) == describe(values, BTC)
    assert "0.14988" == shown("entry_price", "0.149876543", DOGE)
    assert "-1.23457" == shown("realized_pnl", "-1.23456789", DOGE)


def test_partial_entry_reads_filled_of_requested() -> None:
    """A signal's done line says filled/requested instead of the quantity."""
    result = {"position_id": 3, "quantity": "0.01", "filled": "0.01", "requested": "0.02"}
    assert "position_id=3 filled=0.010/0.020" == describe(entry_outcome(result, BTC), BTC)


def test_tables_round_but_keep_decimals_and_unknown_markets_stay_exact() -> None:
    """A position row is rounded for its table line; without a published market the
    stored value is shown exactly (trailing zeros dropped)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = {
        "id": 1, "symbol": "BTC/USDT:USDT", "side": "long", "status": "closed",
        "quantity": Decimal("0.017"), "entry_price": Decimal("60012.06"),
        "current_price": None, "exit_price": Decimal("60003.27"),
        "stop_loss_price": None, "take_profit_price": None,
        "unrealized_pnl": Decimal(0), "realized_pnl": Decimal("-1.170012345"),
        "fees": Decimal("1.0201"), "opened_at": now, "closed_at": now, "exit_reason": "manual",
    }  # fmt: skip
    cells = position_cells(rounded_row(row, BTC), now)
    assert ["60012.1", "60003.3", "-1.17", "1.02"] == [cells[6], cells[7], cells[11], cells[12]]
    exact = position_cells(rounded_row(row, None), now)
    assert "-1.170012345" == exact[11]
    assert {"BTC/USDT:USDT": BTC} == precisions(
        {"BTC/USDT:USDT": {"tick_size": "0.1", "amount_step": "0.001"}, "X": {"bad": 1}}
    )
