"""Per-exchange parameter maps for the ccxt adapter.

Everything venue-specific the adapter needs is here, small and declarative, so
``ccxt_adapter.py`` reads the same for every exchange. Facts checked against ccxt 4.5.90:

- **Bybit** (v5, linear perpetuals): ccxt sends ``clientOrderId`` as ``orderLinkId`` and
  fills ``category`` from the market. A conditional order is ``triggerPrice`` plus a
  ``triggerDirection`` that ccxt demands ("ascending" -> 1, rises to; "descending" -> 2,
  falls to). We do not use ccxt's ``stopLossPrice`` path: it forces ``reduceOnly`` on,
  which a stop *entry* must not have. ``positionIdx: 0`` pins one-way mode. Cancels and
  look-ups by client id take ``orderLinkId``; ``/v5/order/realtime`` answers for recent
  orders of any status when asked by id, ``/v5/order/history`` for older ones, and lists
  conditional orders with the rest (no ``orderFilter`` needed for linear).
- **Binance USD-M**: ccxt routes any order with ``triggerPrice`` / ``stopLossPrice`` /
  ``takeProfitPrice`` to the algo-order endpoint (``/fapi/v1/algoOrder``) and names the
  client id ``clientAlgoId`` there, ``newClientOrderId`` elsewhere, both from the unified
  ``clientOrderId``. ``triggerPrice`` alone makes STOP_MARKET (or STOP with a limit
  price); ``takeProfitPrice`` makes TAKE_PROFIT_MARKET. Conditional orders live apart:
  fetch, cancel and list them with ``{"trigger": True}``.
- **Any other ccxt id**: the unified ``stopLossPrice`` / ``takeProfitPrice`` for
  reduce-only stops, ``triggerPrice`` for a stop entry, ``clientOrderId``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.models import Side
from core.order_model import OrderType

CONDITIONAL_TYPES = frozenset(
    {OrderType.STOP_MARKET, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_MARKET}
)
_TAKE_PROFIT = frozenset({OrderType.TAKE_PROFIT_MARKET})


@dataclass(frozen=True, slots=True)
class VenueProfile:
    """What differs between venues, as data."""

    family: str  # "bybit", "binance" or "generic"
    options: Mapping[str, Any] = field(default_factory=dict)
    extra_order_params: Mapping[str, Any] = field(default_factory=dict)
    client_id_param: str = "clientOrderId"  # for cancel / fetch by client id
    conditional_flag: Mapping[str, Any] = field(default_factory=dict)  # fetch/cancel stops
    conditional_listed_apart: bool = False  # open stops need a second list call
    trades_order_param: str | None = None  # server-side filter of fills by order id
    amendable_conditional: bool = True
    # Venue codes meaning "this client order id was already used" (ccxt reports them
    # as plain InvalidOrder): the earlier order is looked up instead of failing.
    duplicate_id_codes: tuple[str, ...] = ()


BYBIT = VenueProfile(
    family="bybit",
    options={"defaultType": "swap", "defaultSubType": "linear"},
    extra_order_params={"positionIdx": 0},
    client_id_param="orderLinkId",
    trades_order_param="orderId",
    duplicate_id_codes=("110072",),
)
BINANCE = VenueProfile(
    family="binance",
    # The reconciler lists open orders of every symbol at once: acknowledge the weight.
    options={"warnOnFetchOpenOrdersWithoutSymbol": False},
    conditional_flag={"trigger": True},
    conditional_listed_apart=True,
    trades_order_param="orderId",
    amendable_conditional=False,  # algo orders cannot be modified: replace them
    duplicate_id_codes=("-4116",),
)
GENERIC = VenueProfile(family="generic", options={"defaultType": "swap"})


def profile_for(exchange_id: str) -> VenueProfile:
    """The profile of a ccxt exchange id."""
    if exchange_id == "bybit":
        return BYBIT
    if exchange_id in ("binanceusdm", "binance"):
        return BINANCE
    return GENERIC


def is_conditional(order_type: OrderType) -> bool:
    return order_type in CONDITIONAL_TYPES


def fires_on_rise(order_type: OrderType, side: Side) -> bool:
    """True when the order triggers as the price rises to the trigger (docs/architecture.md,
    'Trigger semantics').

    A buy stop and a sell take-profit fire on a rise; a sell stop (a long's stop-loss)
    and a buy take-profit (a short's) fire on a fall.
    """
    is_take_profit = order_type in _TAKE_PROFIT
    return (side is Side.BUY) != is_take_profit


def ccxt_order_type(order_type: OrderType) -> str:
    """ccxt's base type: a stop-limit is a ``limit`` with a trigger, the rest ``market``."""
    return "limit" if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else "market"


def order_params(
    profile: VenueProfile,
    *,
    order_type: OrderType,
    side: Side,
    client_order_id: str,
    trigger_price: str | None,
    reduce_only: bool,
    time_in_force: str | None,
) -> dict[str, Any]:
    """The ``params`` for ``exchange.create_order`` (prices already rounded, as text)."""
    params: dict[str, Any] = {"clientOrderId": client_order_id, **profile.extra_order_params}
    if reduce_only:
        params["reduceOnly"] = True
    if time_in_force:
        tif = time_in_force.upper()
        if tif == "PO":
            params["postOnly"] = True
        else:
            params["timeInForce"] = tif
    if is_conditional(order_type):
        if trigger_price is None:
            raise ValueError("a conditional order needs a trigger price")
        rise = fires_on_rise(order_type, side)
        if profile.family == "bybit":
            params["triggerPrice"] = trigger_price
            params["triggerDirection"] = "ascending" if rise else "descending"
        elif profile.family == "binance":
            key = "takeProfitPrice" if order_type in _TAKE_PROFIT else "triggerPrice"
            params[key] = trigger_price
        elif reduce_only:
            key = "takeProfitPrice" if order_type in _TAKE_PROFIT else "stopLossPrice"
            params[key] = trigger_price
        else:
            params["triggerPrice"] = trigger_price
    return params
