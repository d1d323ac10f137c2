"""Wiring the trading core and the daemon's run loop from settings, over one venue.

Separate from running the service (cli/service.py): this is pure construction, no I/O,
which the chaos tests reuse to wire many account cores the way the daemon does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cli.systemd import Notifier, watchdog_interval_s
from cli.trailing_state import save_trailing, trailing_file
from config.settings import Settings
from core.atomic_position_manager import ApmConfig, AtomicPositionManager
from core.audit_gate import TrailHealth
from core.daemon import Daemon, DaemonConfig
from core.execution import Executor
from core.intake import IntakeHandler
from core.journal import Journal
from core.order_manager import OrderManager
from core.position_book import PositionBook
from core.position_lifecycle import PositionLifecycle
from core.prices import PriceBoard
from core.reconciler import Reconciler
from core.tick_loop import TaskSet, TickLoop
from core.triggers import TriggerBook
from core.venue import ExchangeAdapter


@dataclass
class Core:
    """The trading core wired over one venue and one journal."""

    executor: Executor
    book: PositionBook
    prices: PriceBoard
    apm: AtomicPositionManager
    lifecycle: PositionLifecycle
    triggers: TriggerBook
    orders: OrderManager
    tasks: TaskSet
    reconciler: Reconciler
    intake_handler: IntakeHandler
    venue: ExchangeAdapter
    journal: Journal


def apm_config(settings: Settings, venue: ExchangeAdapter) -> ApmConfig:
    """The position manager's settings: stop, take-profit, breakeven, trailing, leverage."""
    return ApmConfig(
        account=settings.account,
        default_stop_pct=settings.stop_loss_percent,
        default_tp_pct=settings.take_profit_percent,
        breakeven_pct=settings.breakeven_percent,
        trailing_activation_pct=settings.trailing_activation_percent,
        trailing_callback_pct=settings.trailing_callback_percent,
        stop_tries=settings.stop_retries,
        stop_move_min_ticks=settings.stop_move_min_ticks,
        stop_move_interval_s=settings.stop_move_interval_s,
        leverage=settings.leverage or getattr(venue, "leverage", None),
    )


def _reconciler(
    settings: Settings,
    venue: ExchangeAdapter,
    executor: Executor,
    book: PositionBook,
    apm: AtomicPositionManager,
    lifecycle: PositionLifecycle,
    orders: OrderManager,
) -> Reconciler:
    return Reconciler(
        venue,
        executor,
        book,
        apm,
        lifecycle,
        orders,
        account=settings.account,
        symbols=settings.symbols,
    )


def build_core(
    settings: Settings,
    venue: ExchangeAdapter,
    journal: Journal,
    ids: Any,
    trail: TrailHealth | None = None,
) -> Core:
    """The trading core; ``trail`` (the audit writer) gates new risk (core/audit_gate.py)."""
    executor = Executor(venue, journal)
    book = PositionBook()
    prices = PriceBoard()
    apm = AtomicPositionManager(
        venue,
        executor,
        book,
        ids,
        apm_config(settings, venue),
        last_price=prices.price,
        trail=trail,
    )
    lifecycle = PositionLifecycle(venue, executor, book, apm, prices)
    triggers = TriggerBook()
    orders = OrderManager(
        venue,
        executor,
        triggers,
        prices,
        account=settings.account,
        positions=book,
        linked_fills=lifecycle.apply_order_fills,
        trail=trail,
    )
    # Orders placed for a position (--position) end with it, whatever ends it.
    apm.on_position_end(orders.end_position_orders)
    reconciler = _reconciler(settings, venue, executor, book, apm, lifecycle, orders)
    handler = IntakeHandler(
        settings.account, apm, lifecycle, orders, symbols=settings.symbols, book=book
    )
    return Core(
        executor,
        book,
        prices,
        apm,
        lifecycle,
        triggers,
        orders,
        TaskSet("executions"),
        reconciler,
        handler,
        venue,
        journal,
    )


def build_daemon(settings: Settings, core: Core, feed: Any, notifier: Notifier) -> Daemon:
    """The run loop over a wired core and a feed."""
    hooks = (core.venue.on_tick,) if hasattr(core.venue, "on_tick") else ()
    loop = TickLoop(feed, core.prices, core.orders, core.lifecycle, core.tasks, venue_hooks=hooks)
    interval = watchdog_interval_s()
    path = trailing_file(settings)
    return Daemon(
        config=DaemonConfig(
            account=settings.account,
            reconcile_interval_s=settings.reconcile_interval_s,
            heartbeat_interval_s=min(interval, 5.0) if interval else 5.0,
        ),
        journal=core.journal,
        book=core.book,
        lifecycle=core.lifecycle,
        orders=core.orders,
        tick_loop=loop,
        tasks=core.tasks,
        notify=notifier,
        save_trailing=lambda states: save_trailing(path, states),
    )
