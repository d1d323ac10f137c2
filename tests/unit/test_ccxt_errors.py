"""Every ccxt exception maps into our error tree, in one place (exchanges/ccxt_errors.py)."""

from __future__ import annotations

import asyncio
import inspect
from decimal import Decimal
from typing import cast

import ccxt
import pytest
from ccxt.base import errors as ccxt_errors

from core import venue as base
from core.models import Side
from core.order_model import OrderType
from core.venue import OrderRequest
from exchanges.ccxt_errors import (
    is_duplicate_id,
    is_translatable,
    is_unsupported,
    mapped_class,
    rounds_to_zero,
    scrub,
    submit_outcome_unknown,
    translate_ccxt_error,
)
from tests.unit.ccxt_fixtures import adapter_for, route_ticker


def ccxt_exception_classes() -> set[type[BaseException]]:
    """Every BaseError subclass ccxt defines or exports, found by walking both."""
    found: set[type[BaseException]] = set()
    for module in (ccxt_errors, ccxt):
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, ccxt.BaseError):
                found.add(cast(type[BaseException], value))
    stack = list(found)
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


# The deliberate decision for each class ccxt 4.5.90 has (pinned in pyproject.toml).
EXPECTED: dict[str, type[base.ExchangeError]] = {
    "BaseError": base.ExchangeError,
    "ExchangeError": base.ExchangeError,
    "AuthenticationError": base.AuthenticationError,
    "PermissionDenied": base.AuthenticationError,
    "AccountNotEnabled": base.AuthenticationError,
    "AccountSuspended": base.AuthenticationError,
    "ArgumentsRequired": base.InvalidOrder,
    "BadRequest": base.InvalidOrder,
    "BadSymbol": base.InvalidOrder,
    "OperationRejected": base.OrderRejected,
    "NoChange": base.OrderRejected,
    "MarginModeAlreadySet": base.OrderRejected,
    "MarketClosed": base.OrderRejected,
    "ManualInteractionNeeded": base.OrderRejected,
    "RestrictedLocation": base.AuthenticationError,
    "InsufficientFunds": base.InsufficientFunds,
    "InvalidAddress": base.ExchangeError,
    "AddressPending": base.ExchangeError,
    "InvalidOrder": base.InvalidOrder,
    "OrderNotFound": base.OrderNotFound,
    "OrderNotCached": base.OrderNotFound,
    "OrderImmediatelyFillable": base.InvalidOrder,
    "OrderNotFillable": base.InvalidOrder,
    "DuplicateOrderId": base.InvalidOrder,
    "ContractUnavailable": base.InvalidOrder,
    "NotSupported": base.InvalidOrder,
    "InvalidProxySettings": base.ExchangeError,
    "ExchangeClosedByUser": base.ExchangeError,
    "OperationFailed": base.ExchangeUnavailable,
    "NetworkError": base.ExchangeUnavailable,
    "DDoSProtection": base.RateLimited,
    "RateLimitExceeded": base.RateLimited,
    "ExchangeNotAvailable": base.ExchangeUnavailable,
    "OnMaintenance": base.ExchangeUnavailable,
    "InvalidNonce": base.ExchangeUnavailable,
    "ChecksumError": base.ExchangeUnavailable,
    "RequestTimeout": base.RequestTimeout,
    "BadResponse": base.ExchangeUnavailable,
    "NullResponse": base.ExchangeUnavailable,
    "CancelPending": base.ExchangeUnavailable,
    "UnsubscribeError": base.ExchangeError,
}


def test_every_ccxt_class_has_a_deliberate_mapping() -> None:
    """Each ccxt exception class maps exactly as decided; a new class fails this test."""
    classes = ccxt_exception_classes()
    assert {c.__name__ for c in classes} == set(EXPECTED)
    actual = {c.__name__: type(translate_ccxt_error(c("boom"))) for c in classes}
    assert actual == EXPECTED


@pytest.mark.parametrize("klass", sorted(ccxt_exception_classes(), key=repr))
def test_each_ccxt_class_lands_in_our_tree_with_the_right_retry_flag(
    klass: type[BaseException],
) -> None:
    """Transport-level failures are retryable, everything the venue decided is final."""
    error = translate_ccxt_error(klass("boom"))
    assert isinstance(error, base.ExchangeError)
    transient = issubclass(klass, ccxt.OperationFailed)
    assert error.retryable is transient
    assert isinstance(error, base.TransientExchangeError) is transient


def test_unknown_future_subclass_inherits_its_parents_meaning() -> None:
    """A ccxt subclass unknown today maps through its MRO, not to the generic root."""

    class NewTimeout(ccxt.RequestTimeout):  # type: ignore[misc]
        pass

    class NewFundsError(ccxt.InsufficientFunds):  # type: ignore[misc]
        pass

    assert mapped_class(NewTimeout) is base.RequestTimeout
    assert mapped_class(NewFundsError) is base.InsufficientFunds


def test_unclassified_venue_error_while_submitting_is_a_rejection() -> None:
    """A generic ExchangeError translated for a submit already looked up and not found is
    a final OrderRejected; on reads it stays a plain ExchangeError."""
    assert type(translate_ccxt_error(ccxt.ExchangeError("x"), submitting=True)) is (
        base.OrderRejected
    )
    assert type(translate_ccxt_error(ccxt.ExchangeError("x"))) is base.ExchangeError
    assert type(translate_ccxt_error(ccxt.NetworkError("x"), submitting=True)) is (
        base.ExchangeUnavailable
    )


# Whether a submit that raised the class may still have placed the order.
OUTCOME_UNKNOWN = {
    "BaseError": True,
    "ExchangeError": True,
    "RequestTimeout": True,
    "NetworkError": True,
    "ExchangeNotAvailable": True,
    "OnMaintenance": True,
    "BadResponse": True,
    "NullResponse": True,
    "RateLimitExceeded": False,
    "DDoSProtection": False,
    "InsufficientFunds": False,
    "InvalidOrder": False,
    "BadRequest": False,
    "BadSymbol": False,
    "OrderNotFound": False,
    "OperationRejected": False,
    "MarketClosed": False,
    "AuthenticationError": False,
    "NotSupported": False,
}


def test_submit_outcome_is_unknown_for_transport_failures_and_unclassified_errors() -> None:
    """Timeouts, outages, bad replies and unclassified venue errors leave a submit's outcome
    unknown; throttling and every classified refusal do not."""
    actual = {name: submit_outcome_unknown(getattr(ccxt, name)("x")) for name in OUTCOME_UNKNOWN}
    assert actual == OUTCOME_UNKNOWN
    assert submit_outcome_unknown(TimeoutError()) is True
    assert submit_outcome_unknown(ValueError("a bug")) is False


def test_capability_predicates_name_the_ccxt_classes() -> None:
    """Unsupported, rounds-to-zero and duplicate-id are recognised here, nowhere else."""
    actual = (
        is_unsupported(ccxt.NotSupported("x")),
        is_unsupported(NotImplementedError()),
        is_unsupported(ccxt.NetworkError("x")),
        rounds_to_zero(ccxt.InvalidOrder("amount must be greater than minimum precision")),
        rounds_to_zero(ccxt.BadSymbol("bybit does not have market symbol X")),
        is_duplicate_id(ccxt.DuplicateOrderId("x")),
        is_duplicate_id(ccxt.InvalidOrder('bybit {"retCode":110072}'), ("110072",)),
        is_duplicate_id(ccxt.InvalidOrder('bybit {"retCode":110007}'), ("110072",)),
    )
    assert actual == (True, True, False, True, False, True, True, False)


def test_cancellation_is_never_translated() -> None:
    """CancelledError is not ours to translate: it must propagate."""
    assert not is_translatable(asyncio.CancelledError())
    assert is_translatable(ccxt.NetworkError("x"))


def test_scrub_strips_query_strings_signatures_and_secrets() -> None:
    """Signed URLs, signature pairs and registered secrets never reach a message."""
    text = (
        "binanceusdm GET https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&timestamp=1"
        "&signature=deadbeefcafe X-MBX-APIKEY: my-api-key-123 body signature=abc123&x=1 "
        "secret my-secret-456"
    )
    cleaned = scrub(text, secrets=("my-api-key-123", "my-secret-456"))
    for leaked in ("deadbeefcafe", "my-api-key-123", "abc123", "my-secret-456", "timestamp=1"):
        assert leaked not in cleaned
    assert "https://fapi.binance.com/fapi/v1/order" in cleaned


async def test_adapter_error_message_has_no_signature_or_key() -> None:
    """An adapter error built from a ccxt message with a signed URL is scrubbed."""
    adapter, venue = adapter_for("binanceusdm", read_attempts=1)
    leak = (
        "binanceusdm GET https://fapi.binance.com/fapi/v1/openOrders?timestamp=1&"
        "signature=0123456789abcdef test-api-key-0001 test-api-secret-0001"
    )
    venue.on("GET", "/fapi/v1/openOrders", raises=ccxt.RequestTimeout(leak))
    with pytest.raises(base.RequestTimeout) as caught:
        await adapter.fetch_open_orders("BTCUSDT")
    message = str(caught.value)
    assert "0123456789abcdef" not in message
    assert "test-api-key-0001" not in message
    assert "test-api-secret-0001" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def sell_entry() -> OrderRequest:
    return OrderRequest("td-main-p1-en-1", "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))


async def test_bybit_110007_is_insufficient_funds() -> None:
    """Bybit retCode 110007, through ccxt's own handle_errors, is our InsufficientFunds."""
    adapter, venue = adapter_for("bybit")
    route_ticker(venue, "bybit")
    body = {"retCode": 110007, "retMsg": "ab not enough for new order", "result": {},
            "retExtInfo": {}, "time": 1700000000000}  # fmt: skip
    venue.on("POST", "/v5/order/create", body)
    with pytest.raises(base.InsufficientFunds, match="110007"):
        await adapter.create_order(sell_entry())
    assert len(venue.to("/v5/order/create")) == 1  # final: never looked up or resent


async def test_binance_2019_is_insufficient_funds() -> None:
    """Binance -2019 (HTTP 400), through ccxt's own handle_errors, is InsufficientFunds."""
    adapter, venue = adapter_for("binanceusdm")
    route_ticker(venue, "binanceusdm")
    venue.on("POST", "/fapi/v1/order", {"code": -2019, "msg": "Margin is insufficient."},
             status=400)  # fmt: skip
    with pytest.raises(base.InsufficientFunds, match="-2019"):
        await adapter.create_order(sell_entry())
    assert len(venue.to("/fapi/v1/order")) == 1


async def test_cancelled_error_propagates_through_the_adapter() -> None:
    """A task cancelled mid-call is cancelled, not turned into an exchange error."""
    adapter, venue = adapter_for("bybit")
    venue.on("GET", "/v5/position/list", raises=asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await adapter.fetch_positions()
