"""A trading stack on the in-memory paper venue, for tests: the same wiring as the
daemon (executor, position book, atomic manager, lifecycle, order manager, trigger book),
with a memory audit sink and short timeouts."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.atomic_position_manager import ApmConfig, AtomicPositionManager
from core.execution import Executor
from core.journal import Journal
from core.models import PositionSide, Signal, Tick
from core.money import utcnow
from core.order_manager import OrderManager
from core.order_model import OrderType
from core.position_book import PositionBook
from core.position_lifecycle import PositionLifecycle
from core.prices import PriceBoard
from core.reconciler import Reconciler
from core.records import MemorySink, RecordKind
from core.restore import order_from_row, position_from_row
from core.retry import Backoff
from core.tick_loop import TaskSet, TickLoop
from core.triggers import TriggerBook
from exchanges.paper import PaperExchange

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


class CountingIds:
    """Position ids from a counter (the daemon reserves them from a sequence)."""

    def __init__(self, start: int = 1) -> None:
        self._ids = itertools.count(start)

    def next_position_id(self) -> int:
        return next(self._ids)


@dataclass
class Stack:
    venue: PaperExchange
    sink: MemorySink
    journal: Journal
    executor: Executor
    book: PositionBook
    prices: PriceBoard
    apm: AtomicPositionManager
    lifecycle: PositionLifecycle
    orders: OrderManager
    triggers: TriggerBook
    tasks: TaskSet
    loop: TickLoop = field(init=False)
    reconciler: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        self.loop = TickLoop(
            feed=_NoFeed(),
            prices=self.prices,
            orders=self.orders,
            positions=self.lifecycle,
            tasks=self.tasks,
            venue_hooks=(self.venue.on_tick,),
        )

    def tick(self, symbol: str, price: str | Decimal) -> None:
        """One price through the whole stack, as the daemon's loop does it."""
        self.loop.on_tick(Tick(symbol, Decimal(price), utcnow()))

    def rows(self, kind: RecordKind) -> list[Mapping[str, Any]]:
        return self.sink.of(kind)

    def latest_orders(self) -> dict[str, Mapping[str, Any]]:
        """The newest snapshot of every order, as monitoring.orders would hold it."""
        latest: dict[str, Mapping[str, Any]] = {}
        for row in self.rows(RecordKind.ORDER):
            cid = row["client_order_id"]
            if cid not in latest or latest[cid]["version"] < row["version"]:
                latest[cid] = row
        return latest

    def snapshot(self) -> tuple[list[Any], list[Any]]:
        """What the database hands a restarted daemon: non-terminal positions, every order
        of those, and the other live orders (monitoring.* rows rebuilt as core values)."""
        positions: dict[int, Mapping[str, Any]] = {}
        for row in self.rows(RecordKind.POSITION):
            if row["id"] not in positions or positions[row["id"]]["version"] < row["version"]:
                positions[row["id"]] = row
        open_positions = [
            position_from_row(r)
            for r in positions.values()
            if r["status"] not in ("closed", "rolled_back", "failed")
        ]
        terminal = {"FILLED", "CANCELLED", "REJECTED", "EXPIRED", "FAILED"}
        open_ids = {p.id for p in open_positions}
        orders = [
            order_from_row(r)
            for r in self.latest_orders().values()
            if r["status"] not in terminal or r["position_id"] in open_ids
        ]
        return open_positions, orders

    def latest_position(self, position_id: int) -> Mapping[str, Any]:
        rows = [r for r in self.rows(RecordKind.POSITION) if r["id"] == position_id]
        return max(rows, key=lambda r: r["version"])

    async def venue_stops(self, symbol: str = BTC) -> list[Any]:
        return [
            o
            for o in await self.venue.fetch_open_orders(symbol)
            if o.type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)
        ]

    async def venue_position(self, symbol: str = BTC) -> Any:
        return next(
            (p for p in self.venue._book.positions.values() if p.symbol == symbol and p.qty != 0),
            None,
        )


class _NoFeed:
    def __aiter__(self) -> _NoFeed:
        return self

    async def __anext__(self) -> Tick:
        raise StopAsyncIteration


def build_stack(
    faults: Mapping[str, Any] | None = None,
    *,
    prices: Mapping[str, str] | None = None,
    seed: int = 0,
    wrap: Callable[[PaperExchange], Any] | None = None,
    venue: PaperExchange | None = None,
    trail: Any = None,
    **config: Any,
) -> Stack:
    venue = venue or PaperExchange(None, faults=faults, seed=seed)
    adapter = venue if wrap is None else wrap(venue)
    sink = MemorySink()
    journal = Journal(sink, "main")
    executor = Executor(adapter, journal, read_backoff=Backoff(tries=4, base_s=0.001, max_s=0.01))
    book = PositionBook()
    board = PriceBoard()
    settings = {
        "account": "main",
        "fill_timeout_s": 0.5,
        "flat_timeout_s": 0.5,
        "stop_backoff_s": 0.001,
        "rollback_backoff_max_s": 0.01,
        "leverage": venue.leverage,
        **config,
    }
    apm = AtomicPositionManager(
        adapter,
        executor,
        book,
        CountingIds(),
        ApmConfig(**settings),
        last_price=board.price,
        trail=trail,
    )
    lifecycle = PositionLifecycle(adapter, executor, book, apm, board)
    triggers = TriggerBook()
    orders = OrderManager(
        adapter,
        executor,
        triggers,
        board,
        account="main",
        positions=book,
        linked_fills=lifecycle.apply_order_fills,
        settle_timeout_s=0.5,
        trail=trail,
    )
    apm.on_position_end(orders.end_position_orders)  # as cli/core_wiring.py wires it
    stack = Stack(
        venue, sink, journal, executor, book, board, apm, lifecycle, orders, triggers, TaskSet("t")
    )
    stack.reconciler = Reconciler(
        adapter, executor, book, apm, lifecycle, orders, account="main", symbols=[BTC, ETH]
    )
    for symbol, price in (prices or {BTC: "50000", ETH: "3000"}).items():
        stack.tick(symbol, price)
    return stack


def long_signal(amount: str = "0.1", symbol: str = BTC, **extra: Any) -> Signal:
    return Signal(symbol=symbol, side=PositionSide.LONG, amount=Decimal(amount), **extra)


def short_signal(amount: str = "0.1", symbol: str = BTC, **extra: Any) -> Signal:
    return Signal(symbol=symbol, side=PositionSide.SHORT, amount=Decimal(amount), **extra)
