"""Which price an emulated order watches (docs/architecture.md, 'Trigger semantics'): the
last trade by default, the mark price, or the quote (ask for a buy, bid for a sell)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.errors import ValidationError
from core.models import PriceSource, Side
from core.order_model import OrderType
from core.order_requests import parse_order_request
from core.records import order_record
from core.restore import order_from_row
from core.triggers import TriggerBook
from tests.unit.test_triggers_table import SYM, T0, order

D = Decimal
B, S = Side.BUY, Side.SELL
MARK, QUOTE = PriceSource.MARK, PriceSource.QUOTE


def tick(book: TriggerBook, second: int, last: str, **quotes: str) -> list[tuple[str, Decimal]]:
    """One tick; (client id, fire price) of what fired."""
    extra = {k: D(v) for k, v in quotes.items()}
    result = book.on_tick(SYM, D(last), T0 + timedelta(seconds=second), **extra)
    return [(f.client_order_id, f.fire_price) for f in result.fired]


def test_mark_stop_ignores_a_last_trade_spike_and_fires_on_the_mark() -> None:
    """A sell stop at 49000 on the mark does not fire on a last-trade wick to 48500 while
    the mark holds at 49500; it fires when the mark reaches 48990, at the mark."""
    book = TriggerBook()
    book.arm(order("m", OrderType.STOP_MARKET, S, trigger_price=D(49000), price_source=MARK))
    assert [] == tick(book, 0, "48500", mark="49500")
    assert [("m", D("48990"))] == tick(book, 1, "49100", mark="48990")


def test_quote_orders_watch_the_side_they_trade_against() -> None:
    """A buy stop on the quote fires when the ask reaches it (last still below); a sell
    limit on the quote fires when the bid reaches it."""
    book = TriggerBook()
    book.arm(order("bs", OrderType.STOP_MARKET, B, trigger_price=D(50100), price_source=QUOTE))
    book.arm(order("sl", OrderType.LIMIT, S, price=D(50300), price_source=QUOTE))
    assert [("bs", D("50100"))] == tick(book, 0, "50050", bid="50040", ask="50100")
    assert [] == tick(book, 1, "50310", bid="50290", ask="50320")
    assert [("sl", D("50300"))] == tick(book, 2, "50310", bid="50300", ask="50320")


def test_a_tick_without_the_watched_price_uses_the_last_trade() -> None:
    """A feed that knows only trades still drives mark and quote orders, on the trade."""
    book = TriggerBook()
    book.arm(order("m", OrderType.STOP_MARKET, S, trigger_price=D(49000), price_source=MARK))
    book.arm(order("q", OrderType.STOP_MARKET, S, trigger_price=D(49000), price_source=QUOTE))
    assert [("m", D("48900")), ("q", D("48900"))] == tick(book, 0, "48900")


def test_orders_of_several_prices_fire_in_one_deterministic_order() -> None:
    """Orders firing on one tick from different books come out by trigger price, then
    creation time, as if they were in one book."""
    book = TriggerBook()
    later = T0 + timedelta(seconds=1)
    book.arm(order("last-late", OrderType.STOP_MARKET, S, trigger_price=D(49000), created_at=later))
    book.arm(
        order("mark-early", OrderType.STOP_MARKET, S, trigger_price=D(49000), price_source=MARK)
    )
    book.arm(
        order("quote-low", OrderType.STOP_MARKET, S, trigger_price=D(48000), price_source=QUOTE)
    )
    fired = tick(book, 2, "47000", mark="47100", bid="46990", ask="47010")
    assert ["quote-low", "mark-early", "last-late"] == [cid for cid, _ in fired]


def test_mark_trailing_stop_trails_the_mark_peak() -> None:
    """A 1 % sell trailing stop on the mark follows the mark's peak (51000, not the
    trade's 52000 wick) and fires when the mark falls to 50490."""
    book = TriggerBook()
    book.arm(order("t", OrderType.TRAILING_STOP, S, trail_percent=D(1), price_source=MARK))
    assert [] == tick(book, 0, "50000", mark="50000")
    assert [] == tick(book, 1, "52000", mark="51000")
    assert [] == tick(book, 2, "50500", mark="50500")
    assert [("t", D("50490"))] == tick(book, 3, "50500", mark="50490")


def test_expiry_applies_to_orders_on_any_price() -> None:
    """A mark order past its expires_at is reported expired on the next tick."""
    book = TriggerBook()
    soon = T0 + timedelta(seconds=1)
    book.arm(
        order(
            "m",
            OrderType.STOP_MARKET,
            S,
            trigger_price=D(49000),
            price_source=MARK,
            expires_at=soon,
        )
    )
    result = book.on_tick(SYM, D(48000), T0 + timedelta(seconds=2), mark=D(48000))
    assert (("m",), ()) == (result.expired, result.fired)
    assert 0 == len(book)


def test_the_price_source_is_recorded_and_restored() -> None:
    """The monitoring.orders row carries the price source and a restart re-arms with it."""
    armed = order("q", OrderType.LIMIT, B, price=D(49000), price_source=QUOTE)
    row = dict(order_record(armed).row)
    assert "quote" == row["price_source"]
    assert QUOTE == order_from_row(row).price_source
    assert PriceSource.LAST == order_from_row({**row, "price_source": None}).price_source


def request(**fields: Any) -> Any:
    base = {"symbol": SYM, "side": "sell", "amount": "0.01", "type": "stop_market"}
    return parse_order_request({**base, "trigger_price": "49000", **fields})


def test_a_request_names_its_price_source() -> None:
    """``price_source`` in a place_order payload is parsed; absent means the last trade."""
    assert MARK == request(price_source="MARK").price_source
    assert PriceSource.LAST == request().price_source


@pytest.mark.parametrize(
    "fields", [{"price_source": "index"}, {"price_source": "mark", "native": True}]
)
def test_a_bad_price_source_is_refused_naming_the_field(fields: dict[str, Any]) -> None:
    """An unknown source, or one on a native order (the venue decides), is refused."""
    with pytest.raises(ValidationError) as err:
        request(**fields)
    assert "price_source" == err.value.field
