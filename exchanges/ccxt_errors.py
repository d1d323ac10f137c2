"""The one place ccxt's exceptions become ours (the tree is in core/venue.py).

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
ExchangeError and anything else                    ExchangeError (see below for a submit)
=================================================  ==========================================

An order submit that fails without a clear answer leaves its outcome unknown
(:func:`submit_outcome_unknown`): a timeout or outage, and also an error the venue did not
classify (Bybit retCode 10016 "Server error", codes ccxt does not know such as 10000
"Server Timeout"), because the venue may have accepted the order before failing. The
adapter then looks the order up by client id; only when the look-up answers "not found"
is an unclassified error the final :class:`OrderRejected` (``submitting=True``), never
before (failure mode 14).

Some ccxt conditions matter as facts rather than as errors of ours:
:func:`is_unsupported` (ccxt or the venue lacks a feature, e.g. a sandbox or
``watch_ticker``), :func:`rounds_to_zero` (ccxt's ``amount_to_precision`` refusing an
amount under one step) and :func:`is_duplicate_id` (a client id already used). They are
named here so no other module has to know ccxt's exception classes.

The message keeps ccxt's text (it names the venue's code) minus anything secret: URLs
lose their query string (Binance signs GET / DELETE requests there), ``signature=`` /
``sign=`` / key-looking pairs are masked, and every registered secret is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import ccxt

from core.venue import (
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
    """Our class for ``exc_type``: the first of its MRO in the table.

    ``submitting`` is for a submit already resolved as refused (the order was looked up
    by client id and not found): an unclassified venue error is then ``OrderRejected``.
    """
    for klass in exc_type.__mro__:
        target = _MAPPING.get(klass)
        if target is None:
            continue
        if submitting and target is ExchangeError:
            return OrderRejected
        return target
    return ExchangeError


def submit_outcome_unknown(exc: BaseException) -> bool:
    """True when an order submit that raised ``exc`` may still have placed the order.

    That is a failure without a usable answer (timeout, network, outage, bad reply) and
    any venue error nobody classified: it may be a server fault after acceptance. A
    throttled request (``RateLimited``) was refused before it ran; every other class is
    the venue's considered "no" and final.
    """
    if not is_translatable(exc):
        return False
    target = mapped_class(type(exc))
    return target is ExchangeError or issubclass(target, ExchangeUnavailable)


def is_duplicate_id(exc: BaseException, venue_codes: Iterable[str] = ()) -> bool:
    """True when the venue refused an order's client id as already used: ccxt's
    ``DuplicateOrderId``, or an ``InvalidOrder`` carrying one of ``venue_codes`` (codes
    ccxt does not classify, e.g. Bybit 110072, Binance -4116). The earlier order may be
    ours, so it is looked up rather than failed."""
    if isinstance(exc, ccxt.DuplicateOrderId):
        return True
    text = str(exc)
    return isinstance(exc, ccxt.InvalidOrder) and any(code in text for code in venue_codes)


def is_unsupported(exc: BaseException) -> bool:
    """True when ccxt or the venue does not support what was asked (no sandbox URL, no
    websocket method): a capability to do without, not a failure to retry."""
    return isinstance(exc, ccxt.NotSupported | NotImplementedError)


def rounds_to_zero(exc: BaseException) -> bool:
    """True for what ccxt's ``amount_to_precision`` raises when the amount truncates to 0
    (``InvalidOrder``). An unknown symbol or a market without precision raises
    ``BadSymbol``, which is translated like any other error."""
    return isinstance(exc, ccxt.InvalidOrder)


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

    ``submitting`` marks an order submit already looked up and not found, where an
    unclassified venue error is a rejection. The caller raises the result ``from None``
    so the original (whose text may hold a signed URL) is not chained into logs.
    """
    klass = mapped_class(type(exc), submitting=submitting)
    detail = str(exc) or type(exc).__name__
    return klass(scrub(f"{type(exc).__name__}: {detail}", secrets))
