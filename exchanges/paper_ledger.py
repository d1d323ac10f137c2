"""The paper venue's state: its entities, the ledger that holds them, and its deltas.

State: the quote balance, every order ever accepted (terminal ones too, so a client id
stays unique and a late fetch still finds the order), every fill, one one-way position per
symbol and the id counters. Orders and positions are mutable entities here because the
venue updates them in place; what leaves the venue is always a frozen copy
(``ExchangeOrder``, ``Fill``, ``ExchangePosition``, built in ``exchanges/paper.py``).

Every mutation is also written into a :class:`Delta` that the store makes durable before
the venue call returns; a snapshot is simply a delta holding everything, so loading a
snapshot and replaying the journal use the same :meth:`PaperLedger.apply`. The matching
rules that change the state live in the layer above, ``exchanges/paper_book.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from core.models import Market, Side, Tick
from core.money import ONE, ZERO, utcnow
from core.order_model import Fill, OrderStatus, OrderType
from core.venue import (
    ExchangeUnavailable,
    OrderNotFound,
)
from exchanges.paper_markets import MarketTable

BPS = Decimal(10_000)
TRIGGER_TYPES = frozenset(
    {OrderType.STOP_MARKET, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_MARKET}
)
SUPPORTED_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, *TRIGGER_TYPES})
TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "PO"})
LIVE = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


@dataclass(slots=True)
class PaperOrder:
    """One order on the venue. ``seq`` is the placement order, used for matching priority."""

    id: str
    seq: int
    client_order_id: str | None
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    reduce_only: bool
    time_in_force: str | None
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    filled: Decimal = ZERO
    cost: Decimal = ZERO
    fee: Decimal = ZERO
    triggered: bool = False
    reason: str | None = None

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    @property
    def average_price(self) -> Decimal | None:
        return self.cost / self.filled if self.filled else None

    @property
    def is_live(self) -> bool:
        return self.status in LIVE


@dataclass(slots=True)
class PaperPosition:
    """A one-way position: ``qty`` > 0 long, < 0 short. ``realized_pnl`` is gross of fees."""

    symbol: str
    qty: Decimal
    entry_price: Decimal
    realized_pnl: Decimal
    opened_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class Delta:
    """What changed in one venue call (or, for a snapshot, everything)."""

    balance: Decimal
    next_order: int
    next_trade: int
    orders: list[PaperOrder] = field(default_factory=list)
    positions: dict[str, PaperPosition | None] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    prices: dict[str, Tick] = field(default_factory=dict)
    # Nothing but prices changed (the store writes such a delta without a disk flush).
    prices_only: bool = False


def _epoch_seconds(now: Callable[[], datetime]) -> Callable[[], float]:
    """``now`` as epoch seconds. The real clock is read as ``time.time`` directly: this
    runs on every tick, and building a datetime costs six times as much."""
    if now is utcnow:
        return time.time
    return lambda: now().timestamp()


class PaperLedger:
    """Balances, orders, positions and fills of one paper account, and what changed."""

    def __init__(
        self,
        markets: MarketTable,
        *,
        balance: Decimal,
        now: Callable[[], datetime],
        maker_fee: Decimal = Decimal("0.0002"),
        taker_fee: Decimal = Decimal("0.00055"),
        slippage_bps: Decimal = Decimal(2),
        leverage: Decimal = Decimal(10),
        price_save_interval: timedelta = timedelta(seconds=5),
    ) -> None:
        self.markets = markets
        self.balance = balance
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.slippage_bps = slippage_bps
        self.leverage = leverage
        self.partial_fill = ZERO
        self._now = now
        self.orders: dict[str, PaperOrder] = {}
        self.by_client: dict[str, PaperOrder] = {}
        self.fills: list[Fill] = []
        self.fills_by_order: dict[str, list[Fill]] = {}
        self.positions: dict[str, PaperPosition] = {}
        self.prices: dict[str, Tick] = {}
        self.next_order = 1
        self.next_trade = 1
        # Live orders per symbol, in placement order (dicts keep insertion order).
        self._resting: dict[str, dict[str, PaperOrder]] = {}
        # Per symbol, the open price range in which none of its resting orders matches
        # (see _quiet_band); dropped whenever an order of the symbol changes.
        self._quiet: dict[str, tuple[Decimal, Decimal]] = {}
        self._changed_orders: dict[str, PaperOrder] = {}
        self._changed_positions: set[str] = set()
        self._new_fills: list[Fill] = []
        self._changed_prices: set[str] = set()
        self._dirty = False
        # Prices alone are saved at most once per interval (any other change saves them
        # at once): cheap, and a restart resumes from a price at most that old.
        self.price_save_interval = price_save_interval
        self._price_save_s = price_save_interval.total_seconds()
        self._prices_due_at: float | None = None  # epoch seconds; None: at the first price
        self._seconds = _epoch_seconds(now)

    # -- lookups -----------------------------------------------------------------------
    def find(self, exchange_order_id: str | None, client_order_id: str | None) -> PaperOrder:
        """An order by exchange id or client id; ``OrderNotFound`` when the venue has none."""
        order = None
        if exchange_order_id:
            order = self.orders.get(exchange_order_id)
        elif client_order_id:
            order = self.by_client.get(client_order_id)
        if order is None:
            raise OrderNotFound(
                f"paper: no order with id {exchange_order_id!r} / client id {client_order_id!r}"
            )
        return order

    def last_price(self, symbol: str) -> Decimal:
        tick = self.prices.get(symbol)
        if tick is None:
            # Transient: the feed has not delivered a price yet; it will.
            raise ExchangeUnavailable(f"paper: no price known for {symbol} yet")
        return tick.price

    # -- bookkeeping -------------------------------------------------------------------
    def _rest(self, order: PaperOrder) -> None:
        self._resting.setdefault(order.symbol, {})[order.id] = order
        self._quiet.pop(order.symbol, None)

    def _touch(self, order: PaperOrder) -> None:
        # Every change of an order passes here (placed, amended, triggered, filled, ended).
        self._quiet.pop(order.symbol, None)
        order.updated_at = self._now()
        self._changed_orders[order.id] = order
        self._dirty = True

    def _apply_to_position(
        self, symbol: str, side: Side, qty: Decimal, price: Decimal, market: Market, now: datetime
    ) -> Decimal:
        """Move the one-way position by a fill; return the gross P&L it realised."""
        signed = qty if side is Side.BUY else -qty
        position = self.positions.get(symbol)
        self._changed_positions.add(symbol)
        self._dirty = True
        if position is None:
            self.positions[symbol] = PaperPosition(symbol, signed, price, ZERO, now, now)
            return ZERO
        old = position.qty
        position.updated_at = now
        if (old > 0) is (signed > 0):
            new = old + signed
            position.entry_price = (position.entry_price * abs(old) + price * qty) / abs(new)
            position.qty = new
            return ZERO
        closed = min(qty, abs(old))
        direction = ONE if old > 0 else -ONE
        realized = (price - position.entry_price) * closed * direction * market.contract_size
        position.realized_pnl += realized
        new = old + signed
        if new == 0:
            del self.positions[symbol]
        else:
            if (new > 0) is not (old > 0):
                # Flipped through flat: the remainder is a new position opened at this fill.
                position.entry_price = price
                position.opened_at = now
                position.realized_pnl = ZERO
            position.qty = new
        return realized

    def used_margin(self) -> Decimal:
        """Margin held by open positions and resting opening orders."""
        used = ZERO
        for position in self.positions.values():
            size = self.markets.resolve(position.symbol).contract_size
            used += abs(position.qty) * position.entry_price * size / self.leverage
        for resting in self._resting.values():
            for order in resting.values():
                if order.reduce_only:
                    continue
                price = order.price or order.trigger_price
                if price is None:
                    tick = self.prices.get(order.symbol)
                    price = tick.price if tick is not None else ZERO
                size = self.markets.resolve(order.symbol).contract_size
                used += order.remaining * price * size / self.leverage
        return used

    # -- deltas, snapshots ---------------------------------------------------------------
    def take_delta(self) -> Delta | None:
        """What changed since the last call, ``None`` when nothing needs saving.

        Prices that moved ride along with the next other change; when only prices moved,
        they are saved once ``price_save_interval`` has passed since they were last
        saved, so ``last_prices`` survives a crash without a write per tick.
        """
        if not self.unsaved:
            return None
        if self._changed_prices:
            self._prices_due_at = self._seconds() + self._price_save_s
        delta = Delta(
            balance=self.balance,
            next_order=self.next_order,
            next_trade=self.next_trade,
            orders=list(self._changed_orders.values()),
            positions={s: self.positions.get(s) for s in self._changed_positions},
            fills=self._new_fills,
            prices={s: self.prices[s] for s in self._changed_prices if s in self.prices},
            prices_only=not self._dirty,
        )
        self._changed_orders = {}
        self._changed_positions = set()
        self._new_fills = []
        self._changed_prices = set()
        self._dirty = False
        return delta

    @property
    def unsaved(self) -> bool:
        """Whether :meth:`take_delta` has something to save now (checked on every tick).

        Prices alone fall due by the venue's own clock, not by the ticks' timestamps: a
        feed's glitched future timestamp must not stop them being saved."""
        if self._dirty:
            return True
        if not self._changed_prices:
            return False
        due = self._prices_due_at
        return due is None or self._seconds() >= due

    def discard_delta(self) -> None:
        """Forget pending changes (only after a load, where they are already on disk)."""
        self._changed_orders = {}
        self._changed_positions = set()
        self._new_fills = []
        self._changed_prices = set()
        self._dirty = False

    def snapshot(self) -> Delta:
        """Everything, as one delta (orders in placement order)."""
        return Delta(
            balance=self.balance,
            next_order=self.next_order,
            next_trade=self.next_trade,
            orders=sorted(self.orders.values(), key=lambda o: o.seq),
            positions=dict(self.positions),
            fills=list(self.fills),
            prices=dict(self.prices),
        )

    def apply(self, delta: Delta) -> None:
        """Load a snapshot or replay one journal record; call :meth:`reindex` when done."""
        self.balance = delta.balance
        self.next_order = delta.next_order
        self.next_trade = delta.next_trade
        for order in delta.orders:
            self.orders[order.id] = order
            if order.client_order_id:
                self.by_client[order.client_order_id] = order
        for symbol, position in delta.positions.items():
            if position is None:
                self.positions.pop(symbol, None)
            else:
                self.positions[symbol] = position
        self._add_fills(delta.fills)
        self.prices.update(delta.prices)

    def reindex(self) -> None:
        """Rebuild the live-order index after loading, in placement order (match priority)."""
        self._resting = {}
        self._quiet = {}
        for order in sorted(self.orders.values(), key=lambda o: o.seq):
            if order.is_live:
                self._rest(order)

    def _add_fills(self, fills: Iterable[Fill]) -> None:
        for fill in fills:
            self.fills.append(fill)
            self.fills_by_order.setdefault(fill.exchange_order_id or "", []).append(fill)

    def open_orders(self, symbol: str | None) -> list[PaperOrder]:
        groups: Mapping[str, dict[str, PaperOrder]] = (
            self._resting if symbol is None else {symbol: self._resting.get(symbol, {})}
        )
        return sorted((o for g in groups.values() for o in g.values()), key=lambda o: o.seq)
