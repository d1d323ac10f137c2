"""The paper venue skips a symbol's resting orders only on ticks where none of them could
match: with the skip, every tick changes the same orders in the same way as scanning them."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import Side
from core.order_model import OrderType
from core.venue import ExchangeError, OrderRequest
from exchanges import paper_book
from exchanges.paper import PaperExchange

BTC = "BTC/USDT:USDT"
KINDS = (
    OrderType.LIMIT,
    OrderType.STOP_MARKET,
    OrderType.STOP_LIMIT,
    OrderType.TAKE_PROFIT_MARKET,
)
orders = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.sampled_from(list(Side)),
        st.integers(min_value=-30, max_value=30),  # trigger / price, ticks of 10 from 50,000
        st.integers(min_value=-5, max_value=5),  # a stop-limit's limit, from its trigger
    ),
    max_size=12,
)
moves = st.lists(st.integers(min_value=-80, max_value=80), min_size=1, max_size=40)


def run(specs: list[tuple[OrderType, Side, int, int]], path: list[int]) -> list[object]:
    """Place the orders, replay the path; what each tick changed, and the end state."""

    async def go() -> list[object]:
        venue = PaperExchange(balance=D(10**9))
        venue.set_price(BTC, "50000")
        for n, (kind, side, level, limit) in enumerate(specs):
            at = D(50000 + 10 * level)
            extra: dict[str, D] = {}
            if kind is OrderType.LIMIT:
                extra["price"] = at
            else:
                extra["trigger_price"] = at
                if kind is OrderType.STOP_LIMIT:
                    extra["price"] = at + 10 * limit
            # A refusal (a trigger already through) is the same on both runs.
            with contextlib.suppress(ExchangeError):
                await venue.create_order(
                    OrderRequest(f"o{n}", BTC, side, kind, D("0.01"), **extra)  # type: ignore[arg-type]
                )
        seen: list[object] = []
        price = 50000
        for move in path:
            price = max(10, price + move)
            changed = venue.set_price(BTC, price)
            seen.append([(o.client_order_id, o.status, o.filled) for o in changed])
        seen.append(
            [(o.client_order_id, o.status, o.filled) for o in await venue.fetch_open_orders(BTC)]
        )
        return seen

    return asyncio.run(go())


@settings(max_examples=150, deadline=None)
@given(specs=orders, path=moves)
def test_skipping_quiet_ticks_changes_nothing(
    specs: list[tuple[OrderType, Side, int, int]], path: list[int]
) -> None:
    """The same orders fill, trigger and rest, tick by tick, as with every order scanned."""
    fast = run(specs, path)
    with pytest.MonkeyPatch.context() as patch:
        # A band that never holds a price: every tick scans every resting order.
        patch.setattr(paper_book, "_quiet_band", lambda orders: (D("Infinity"), -D("Infinity")))
        slow = run(specs, path)
    assert fast == slow
