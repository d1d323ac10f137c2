"""The venue port: the ExchangeAdapter protocol, its value types and the exchange errors.

::

    TraderError (core/errors.py)
    └── ExchangeError                 anything a venue answered that is not success
        ├── TransientExchangeError    the venue may be fine in a moment: retry with back-off
        │   ├── ExchangeUnavailable   network down, 5xx, maintenance, DDoS protection
        │   │   └── RequestTimeout    no reply: the request MAY have been executed, so an
        │   │                         order submit is resolved by client id, never resent blind
        │   └── RateLimited           too many requests
        ├── OrderNotFound             the venue does not know that order (final for that id)
        ├── OrderRejected             the venue refused the order (final: retrying repeats it)
        │   ├── InsufficientFunds     not enough margin / balance
        │   └── InvalidOrder          size, price, precision, reduce-only or market rule broken
        └── AuthenticationError       bad or missing credentials (fatal at start)

Adapters raise only these. ccxt's exceptions are translated in exactly one place,
``exchanges/ccxt_errors.py``; the paper venue raises these directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from core.errors import TraderError
from core.models import Market, PositionSide, Side, Tick
from core.order_model import Fill, OrderStatus, OrderType


class ExchangeError(TraderError):
    """Root of the venue errors. ``retryable`` says whether trying again is safe."""

    retryable = False


class TransientExchangeError(ExchangeError):
    """The venue could not answer now; the same call may succeed after a back-off."""

    retryable = True


class ExchangeUnavailable(TransientExchangeError):
    """Network failure, server error, maintenance. Retry with back-off."""


class RequestTimeout(ExchangeUnavailable):
    """No reply in time. For reads, retry. For an order submit, the order may exist:
    look it up by client order id before deciding anything."""


class RateLimited(TransientExchangeError):
    """The venue throttled us. Retry after a back-off."""


class OrderNotFound(ExchangeError):
    """The venue does not know the order (never placed, or purged). Final for that id."""


class OrderRejected(ExchangeError):
    """The venue refused the order. Final: the same order would be refused again."""


class InsufficientFunds(OrderRejected):
    """Not enough balance or margin for the order. Final."""


class InvalidOrder(OrderRejected):
    """The order breaks a market rule (size, precision, price band, reduce-only). Final."""


class AuthenticationError(ExchangeError):
    """Credentials missing, wrong, or lacking permission. Final; fatal at start-up."""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order to send. Prices and amounts belong on the market's tick and step: the core
    rounds them (stops away from the entry, amounts down), the ccxt adapter rounds again
    to the exchange's precision, and the paper venue refuses off-grid values as Bybit does."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    reduce_only: bool = False
    time_in_force: str | None = None  # "GTC", "IOC", "FOK", "PO"


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """A venue's view of one order, normalised. ``None`` means the venue did not say:
    an id-only acknowledgement has ``status=None`` and ``average_price=None``, and the
    caller must fetch the order rather than guess."""

    symbol: str
    exchange_order_id: str | None
    client_order_id: str | None
    status: OrderStatus | None = None
    side: Side | None = None
    type: OrderType | None = None
    amount: Decimal | None = None
    filled: Decimal | None = None
    remaining: Decimal | None = None
    average_price: Decimal | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    reduce_only: bool | None = None
    fee: Decimal | None = None
    fee_currency: str | None = None
    fills: tuple[Fill, ...] = ()
    ts: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    """A venue's open position on one market (quantity > 0), normalised."""

    symbol: str
    side: PositionSide
    quantity: Decimal
    entry_price: Decimal | None = None
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    leverage: Decimal | None = None
    ts: datetime | None = None


@runtime_checkable
class ExchangeAdapter(Protocol):
    """Everything the trading core needs from a venue. All methods raise only
    :class:`ExchangeError` subclasses and return core types."""

    @property
    def name(self) -> str:
        """The exchange id (``paper``, ``bybit``, ``binanceusdm``, ...)."""
        ...

    async def load_markets(self) -> Mapping[str, Market]:
        """Load (once) and return the tradable markets of the account's market type."""
        ...

    def market(self, symbol: str) -> Market:
        """Resolve a unified symbol or a bare exchange id (``BTCUSDT``) to a market of the
        account's type; raise ``InvalidOrder`` for anything else (never a spot market)."""
        ...

    async def create_order(self, request: OrderRequest) -> ExchangeOrder:
        """Place an order; the reply may be partial (see :class:`ExchangeOrder`)."""
        ...

    async def cancel_order(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
        conditional: bool = False,
    ) -> ExchangeOrder:
        """Cancel by exchange id or client id. ``conditional`` marks a stop / TP order
        (venues such as Binance keep those apart)."""
        ...

    async def edit_order(
        self,
        symbol: str,
        exchange_order_id: str,
        *,
        amount: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> ExchangeOrder:
        """Amend a resting order in place, where the venue supports it."""
        ...

    async def fetch_order(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
        conditional: bool = False,
    ) -> ExchangeOrder:
        """One order by exchange id or client id; ``OrderNotFound`` if the venue has none."""
        ...

    async def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]:
        """Resting orders, conditional ones included."""
        ...

    async def fetch_positions(
        self, symbols: Sequence[str] | None = None
    ) -> Sequence[ExchangePosition]:
        """Open positions (quantity > 0)."""
        ...

    async def fetch_fills(
        self,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        since: datetime | None = None,
    ) -> Sequence[Fill]:
        """Executions of the account, optionally of one order."""
        ...

    async def fetch_free_balance(self, currency: str) -> Decimal:
        """Free (available) balance of ``currency``, for pre-trade checks."""
        ...

    async def fetch_price(self, symbol: str) -> Tick:
        """The latest price of ``symbol``."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...
