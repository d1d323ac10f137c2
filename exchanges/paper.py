"""The paper venue: a simulated exchange with persistent state, the default ``ExchangeAdapter``.

It is what every trading test runs against, so it behaves like a strict real venue:
orders are validated against the market's tick, step and minimums, client order ids are
unique forever, reduce-only is enforced, and fills follow the rules documented in
``exchanges/paper_book.py`` with exact ``Decimal`` arithmetic.

Prices come from outside: the daemon hands every feed tick to :meth:`PaperExchange.on_tick`
(or a test calls :meth:`PaperExchange.set_price`), which matches resting orders at once.
Both are synchronous and return the orders the price changed, like a private order stream.

State lives in ``directory`` (``settings.paper_dir``) and is durable before any call
returns (``exchanges/paper_store.py``); a reopened venue has exactly the state it had, so
a daemon crash or a database outage does not reset it. ``directory=None`` keeps everything
in memory, for fast unit tests. A persisted balance wins over the ``balance`` argument,
which only seeds a new directory.

Fault modes (``exchanges/paper_faults.py``) can be changed at any time through
:attr:`PaperExchange.faults`; their dice are seeded, so a test is deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.logging import get_logger
from core.models import Market, Tick
from core.money import ZERO, require_aware, to_decimal, utcnow
from core.order_model import Fill
from core.resource import AsyncResource
from core.venue import (
    ExchangeError,
    ExchangeOrder,
    ExchangePosition,
    ExchangeUnavailable,
    InvalidOrder,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    RequestTimeout,
)
from exchanges.paper_book import PaperBook
from exchanges.paper_faults import FaultDice, PaperFaults
from exchanges.paper_ledger import TRIGGER_TYPES, PaperOrder
from exchanges.paper_markets import BUILTIN_MARKETS, MarketTable, load_markets_file
from exchanges.paper_store import PaperStore, encode_delta
from exchanges.paper_views import (
    PaperBalance,
    PositionHistory,
    acknowledgement,
    order_view,
    position_view,
)

if TYPE_CHECKING:
    from config.settings import Settings

log = get_logger(__name__)


class PaperExchange(AsyncResource):
    """A simulated exchange implementing :class:`core.venue.ExchangeAdapter`."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        balance: Decimal = Decimal(10000),
        markets: Mapping[str, Market] | None = None,
        markets_file: Path | None = None,
        faults: PaperFaults | Mapping[str, Any] | None = None,
        seed: int | None = 0,
        maker_fee: Decimal = Decimal("0.0002"),
        taker_fee: Decimal = Decimal("0.00055"),
        slippage_bps: Decimal = Decimal(2),
        leverage: Decimal = Decimal(10),
        fsync: bool = True,
        now: Callable[[], datetime] = utcnow,
        quote_currency: str = "USDT",
    ) -> None:
        table = dict(markets if markets is not None else BUILTIN_MARKETS)
        if markets_file is not None:
            table = load_markets_file(markets_file, table)
        self._markets = MarketTable(table)
        self._listed = frozenset(k for k, m in self._markets.markets.items() if k == m.symbol)
        self._now = now
        self._quote = quote_currency
        self._book = PaperBook(
            self._markets,
            balance=balance,
            now=now,
            maker_fee=maker_fee,
            taker_fee=taker_fee,
            slippage_bps=slippage_bps,
            leverage=leverage,
        )
        self._dice = FaultDice(seed)
        self._faults = PaperFaults()
        self.faults = PaperFaults.parse(faults)
        self._store: PaperStore | None = None
        if directory is not None:
            self._store = PaperStore(Path(directory), fsync=fsync)
            self._store.open(self._book)
        self._closed = False
        # Position history for the position_lag_s fault: per symbol, (changed_at, view).
        self._history = PositionHistory(self._book.positions)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PaperExchange:
        """The venue the daemon uses: state under ``settings.paper_dir``."""
        kwargs: dict[str, Any] = {
            "balance": settings.paper_balance,
            "markets_file": settings.paper_markets_file,
            "faults": settings.paper_faults,
            "seed": settings.feed_seed,
            "slippage_bps": settings.paper_slippage_bps,
        }
        kwargs.update(overrides)
        return cls(settings.paper_dir, **kwargs)

    # -- resource ------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Compact the state to a snapshot and release the directory. Idempotent."""
        self.close()

    def close(self) -> None:
        """Synchronous :meth:`aclose`, for scripts without an event loop."""
        if self._closed:
            return
        self._closed = True
        if self._store is not None:
            try:
                self._store.compact(self._book)
            finally:
                self._store.close()

    # -- configuration -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "paper"

    @property
    def faults(self) -> PaperFaults:
        return self._faults

    @faults.setter
    def faults(self, value: PaperFaults | Mapping[str, Any] | None) -> None:
        self._faults = PaperFaults.parse(value)
        self._book.partial_fill = self._faults.partial_fill
        if self._faults.active:
            log.info("paper_faults", **{k: str(v) for k, v in self._faults.active.items()})

    # -- prices --------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> tuple[ExchangeOrder, ...]:
        """Learn a price, match resting orders, return those it changed (unlisted: none)."""
        if self._closed:  # every tick passes here: the common one costs checks, not calls
            self._check_open()
        if tick.symbol not in self._listed:  # a market's unified symbol needs no resolving
            try:
                market = self._markets.resolve(tick.symbol)
            except InvalidOrder:
                return ()
            tick = Tick(market.symbol, tick.price, tick.ts, tick.bid, tick.ask, tick.mark)
        try:
            changed = self._book.on_price(tick)
        finally:
            if self._book.unsaved:  # not on the common tick: a price alone waits
                self._commit()
        return tuple(self._view(o) for o in changed) if changed else ()

    def set_price(
        self, symbol: str, price: Decimal | str | int, ts: datetime | None = None
    ) -> tuple[ExchangeOrder, ...]:
        """:meth:`on_tick` for a bare price (tests, scripts)."""
        stamp = self._now() if ts is None else require_aware(ts, "ts")
        return self.on_tick(Tick(symbol, to_decimal(price, "price"), stamp))

    def last_prices(self) -> dict[str, Decimal]:
        """The last known price of every symbol (persisted), e.g. to start a feed from."""
        return {s: t.price for s, t in self._book.prices.items()}

    # -- the ExchangeAdapter protocol ------------------------------------------------------
    async def load_markets(self) -> Mapping[str, Market]:
        await self._call()
        return self._markets.markets

    def market(self, symbol: str) -> Market:
        return self._markets.resolve(symbol)

    async def create_order(self, request: OrderRequest) -> ExchangeOrder:
        await self._call()
        market = self._markets.resolve(request.symbol)
        faults = self._faults
        if request.type in TRIGGER_TYPES and self._dice.roll(faults.reject_stop):
            raise OrderRejected(f"paper fault reject_stop: {request.type.value} order rejected")
        if not request.reduce_only and self._dice.roll(faults.reject_entry):
            raise OrderRejected("paper fault reject_entry: order rejected")
        try:
            order = self._book.place(request, market)
        finally:
            self._commit()
        if self._dice.roll(faults.timeout_after_accept):
            raise RequestTimeout(
                f"paper fault timeout_after_accept: no reply for {request.client_order_id}"
            )
        reply = self._view(order)
        if self._dice.roll(faults.id_only_reply):
            return ExchangeOrder(reply.symbol, reply.exchange_order_id, reply.client_order_id)
        if self._dice.roll(faults.no_average_price):
            reply = acknowledgement(reply)
        if self._dice.roll(faults.no_status):
            reply = replace(reply, status=None)
        return reply

    async def cancel_order(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
        conditional: bool = False,
    ) -> ExchangeOrder:
        await self._call()
        order = self._find(symbol, exchange_order_id, client_order_id)
        try:
            self._book.cancel(order)
        finally:
            self._commit()
        return self._view(order)

    async def edit_order(
        self,
        symbol: str,
        exchange_order_id: str,
        *,
        amount: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> ExchangeOrder:
        await self._call()
        order = self._find(symbol, exchange_order_id, None)
        try:
            self._book.edit(order, amount, price, trigger_price)
        finally:
            self._commit()
        return self._view(order)

    async def fetch_order(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
        conditional: bool = False,
    ) -> ExchangeOrder:
        await self._call()
        return self._view(self._find(symbol, exchange_order_id, client_order_id))

    async def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]:
        await self._call()
        unified = None if symbol is None else self._markets.resolve(symbol).symbol
        return [self._view(o) for o in self._book.open_orders(unified)]

    async def fetch_positions(
        self, symbols: Sequence[str] | None = None
    ) -> Sequence[ExchangePosition]:
        await self._call()
        wanted = None if symbols is None else {self._markets.resolve(s).symbol for s in symbols}
        cutoff = self._now() - timedelta(seconds=float(self._faults.position_lag_s))
        result = []
        for symbol in self._history.symbols():
            if wanted is not None and symbol not in wanted:
                continue
            view = self._history.visible(symbol, cutoff)
            if view is None:
                continue
            tick = self._book.prices.get(symbol)
            size = self._markets.resolve(symbol).contract_size
            mark = None if tick is None else tick.price
            result.append(position_view(symbol, view, mark, size, self._book.leverage, self._now()))
        return result

    async def fetch_fills(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        since: datetime | None = None,
    ) -> Sequence[Fill]:
        await self._call()
        unified = self._markets.resolve(symbol).symbol
        source = (
            self._book.fills
            if exchange_order_id is None
            else self._book.fills_by_order.get(exchange_order_id, [])
        )
        return [f for f in source if f.symbol == unified and (since is None or f.ts >= since)]

    async def fetch_price(self, symbol: str) -> Tick:
        await self._call()
        unified = self._markets.resolve(symbol).symbol
        tick = self._book.prices.get(unified)
        if tick is None:
            raise ExchangeUnavailable(f"paper: no price known for {unified} yet")
        return tick

    # -- extras beyond the protocol ----------------------------------------------------------
    async def fetch_balance(self) -> PaperBalance:
        """The quote balance, the margin in use, and the free part."""
        await self._call()
        total, used = self._book.balance, self._book.used_margin()
        return PaperBalance(self._quote, total, used, total - used)

    async def fetch_free_balance(self, currency: str) -> Decimal:
        """The free part of the quote balance; the paper account holds nothing else."""
        balance = await self.fetch_balance()
        return balance.free if currency.upper() == self._quote else ZERO

    @property
    def leverage(self) -> Decimal:
        """The leverage the venue margins positions and orders at."""
        return self._book.leverage

    @property
    def balance(self) -> Decimal:
        """The quote balance (fees and realised P&L included)."""
        return self._book.balance

    def export_state(self) -> dict[str, Any]:
        """The whole venue state as JSON-able data (what the snapshot file holds)."""
        return encode_delta(self._book.snapshot())

    # -- internals ---------------------------------------------------------------------------
    async def _call(self) -> None:
        self._check_open()
        # Every call suspends once, as a real venue's does: else a fired order's submit,
        # fills and stop resize run in one step, ahead of other orders' submits.
        await asyncio.sleep(float(self._faults.latency_ms) / 1000)  # parsed >= 0
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise ExchangeUnavailable("paper venue is closed")

    def _find(
        self, symbol: str, exchange_order_id: str | None, client_order_id: str | None
    ) -> PaperOrder:
        unified = self._markets.resolve(symbol).symbol
        order = self._book.find(exchange_order_id, client_order_id)
        if order.symbol != unified:
            raise OrderNotFound(f"paper: order {order.id} is not on {unified}")
        return order

    def _commit(self) -> None:
        """Make the pending changes durable (and note position changes for the lag fault)."""
        delta = self._book.take_delta()
        if delta is None:
            return
        self._history.remember(delta, self._now, self._faults.position_lag_s)
        if self._store is None:
            return
        try:
            self._store.append(delta)
        except OSError as exc:
            # Memory is now ahead of the disk: go back to what the disk holds, so the
            # venue never shows state that a restart would not have. If even that fails,
            # the venue stops serving rather than serve state it cannot keep.
            try:
                self._reload()
            except (OSError, ExchangeError):
                self._closed = True
            raise ExchangeUnavailable(f"paper: could not persist state: {exc}") from None
        if self._store.wants_compaction():
            self._store.compact(self._book)

    def _reload(self) -> None:
        assert self._store is not None
        old = self._book
        self._store.close()
        self._book = PaperBook(
            self._markets,
            balance=old.balance,
            now=self._now,
            maker_fee=old.maker_fee,
            taker_fee=old.taker_fee,
            slippage_bps=old.slippage_bps,
            leverage=old.leverage,
        )
        self._book.partial_fill = old.partial_fill
        self._store.open(self._book)

    def _view(self, order: PaperOrder) -> ExchangeOrder:
        fills = tuple(self._book.fills_by_order.get(order.id, ()))
        return order_view(order, fills, self._markets.resolve(order.symbol).quote)
