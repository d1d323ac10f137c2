"""The one place ccxt's exceptions become ours (DESIGN.md section 6).

:func:`translate_ccxt_error` walks the exception's MRO and takes the first class listed
in :data:`_MAPPING`, so a subclass ccxt adds later inherits its parent's meaning instead
of falling through. The choices, family by family:

=================================================  ==========================================
ccxt                                               ours
=================================================  ==========================================
RequestTimeout                                     RequestTimeout (the call may have executed)
RateLimitExceeded, DDoSProtection                  RateLimited
NetworkError (ExchangeNotAvailable, OnMaintenance,  ExchangeUnavailable
InvalidNonce, ChecksumError)
OperationFailed (BadResponse, NullResponse,        ExchangeUnavailable: the venue did not give
CancelPending)                                     a usable answer; try again later
AuthenticationError, PermissionDenied,             AuthenticationError
AccountNotEnabled, AccountSuspended,
RestrictedLocation
InsufficientFunds                                  InsufficientFunds
OrderNotFound, OrderNotCached                      OrderNotFound
InvalidOrder (OrderNotFillable, DuplicateOrderId,  InvalidOrder
OrderImmediatelyFillable, ContractUnavailable),
BadRequest, BadSymbol, ArgumentsRequired,
NotSupported
OperationRejected (MarketClosed, NoChange, ...)    OrderRejected
ExchangeError and anything else                    ExchangeError; OrderRejected while
                                                   submitting (the venue answered "no")
=================================================  ==========================================

The message keeps ccxt's text (it names the venue's code) minus anything secret: URLs
lose their query string (Binance signs GET / DELETE requests there), ``signature=`` /
``sign=`` / key-looking pairs are masked, and every registered secret is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import ccxt

from exchanges.base import (
    AuthenticationError,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    RequestTimeout,
)

_MAPPING: Mapping[type[BaseException], type[ExchangeError]] = {
    ccxt.RequestTimeout: RequestTimeout,
    ccxt.RateLimitExceeded: RateLimited,
    ccxt.DDoSProtection: RateLimited,
    ccxt.NetworkError: ExchangeUnavailable,
    ccxt.OperationFailed: ExchangeUnavailable,
    ccxt.AuthenticationError: AuthenticationError,
    ccxt.RestrictedLocation: AuthenticationError,
    ccxt.InsufficientFunds: InsufficientFunds,
    ccxt.OrderNotFound: OrderNotFound,
    ccxt.OrderNotCached: OrderNotFound,
    ccxt.InvalidOrder: InvalidOrder,
    ccxt.BadRequest: InvalidOrder,
    ccxt.ArgumentsRequired: InvalidOrder,
    ccxt.NotSupported: InvalidOrder,
    ccxt.OperationRejected: OrderRejected,
    ccxt.ExchangeError: ExchangeError,
    ccxt.BaseError: ExchangeError,
    # Raised by the HTTP layer under ccxt in the rare paths it does not wrap.
    TimeoutError: RequestTimeout,
    ConnectionError: ExchangeUnavailable,
}

MAX_MESSAGE = 500
REDACTED = "***"
_URL_QUERY = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")
_SECRET_PAIR = re.compile(
    r"(?i)\b(signature|sign|apikey|api_key|x-mbx-apikey|x-bapi-api-key|x-bapi-sign|secret)"
    r"([\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+"
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without query strings, signature / key pairs or any of ``secrets``."""
    text = _URL_QUERY.sub(r"\1?…", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return text


def mapped_class(exc_type: type[BaseException], *, submitting: bool = False) -> type[ExchangeError]:
    """Our class for ``exc_type``: the first of its MRO in the table."""
    for klass in exc_type.__mro__:
        target = _MAPPING.get(klass)
        if target is None:
            continue
        if submitting and target is ExchangeError:
            # The venue answered an order submit with an error it did not classify:
            # the order was refused, and sending it again would be refused again.
            return OrderRejected
        return target
    return ExchangeError


def is_translatable(exc: BaseException) -> bool:
    """True for the exceptions :func:`translate_ccxt_error` is meant for.

    ``asyncio.CancelledError`` is a ``BaseException``, never in the table, so it always
    propagates untouched.
    """
    return isinstance(exc, ccxt.BaseError | TimeoutError | ConnectionError)


def translate_ccxt_error(
    exc: BaseException, *, secrets: Iterable[str] = (), submitting: bool = False
) -> ExchangeError:
    """Our error for a ccxt (or HTTP-layer) exception, with a scrubbed message.

    ``submitting`` marks an order submit, where an unclassified venue error is a
    rejection. The caller raises the result ``from None`` so the original (whose text
    may hold a signed URL) is not chained into logs.
    """
    klass = mapped_class(type(exc), submitting=submitting)
    detail = str(exc) or type(exc).__name__
    return klass(scrub(f"{type(exc).__name__}: {detail}", secrets))
