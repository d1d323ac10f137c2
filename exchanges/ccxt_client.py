"""Building ccxt clients: the exchange instance an adapter trades through, its sandbox
switch, and the ccxt pro instance a live price feed watches.

Kept apart from the adapter so a feed can build its watcher without the order path, and
so every client is built one way: rate limits on, credentials only where they go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from core.errors import ValidationError
from exchanges.ccxt_errors import (
    is_translatable,
    is_unsupported,
    translate_ccxt_error,
)
from exchanges.ccxt_params import (
    profile_for,
)

if TYPE_CHECKING:
    from config.settings import Settings

log = structlog.get_logger(__name__)


def ccxt_client(
    module: Any, exchange_id: str, *, api_key: str = "", secret: str = "", password: str = ""
) -> Any:
    """A rate-limited instance of ``exchange_id`` from ``module`` (``ccxt.async_support``
    for the adapter, ``ccxt.pro`` for a price watcher) with the venue's options."""
    klass = getattr(module, exchange_id, None)
    if klass is None or exchange_id not in module.exchanges:
        raise ValidationError("TRADER_EXCHANGE", "is not a ccxt exchange id", exchange_id)
    options = dict(profile_for(exchange_id).options)
    config: dict[str, Any] = {"enableRateLimit": True, "options": options}
    for key, value in (("apiKey", api_key), ("secret", secret), ("password", password)):
        if value:
            config[key] = value
    return klass(config)


def _enable_sandbox(exchange: Any, exchange_id: str, secrets: Sequence[str]) -> None:
    """Point ``exchange`` at the venue's testnet; a venue without one is a settings error."""
    urls = getattr(exchange, "urls", None)
    if isinstance(urls, Mapping) and not urls.get("test"):
        # ccxt 4.5 describes most venues with ``"test": None``, on which set_sandbox_mode
        # fails with a TypeError rather than NotSupported.
        raise ValidationError("TRADER_TESTNET", f"{exchange_id} has no testnet")
    try:
        exchange.set_sandbox_mode(True)
    except Exception as exc:
        if not is_translatable(exc):
            raise
        if is_unsupported(exc):
            raise ValidationError("TRADER_TESTNET", f"{exchange_id} has no testnet") from None
        raise translate_ccxt_error(exc, secrets=secrets) from None


def price_watcher(
    exchange_id: str,
    *,
    api_key: str = "",
    secret: str = "",
    password: str = "",
    testnet: bool = False,
) -> Any | None:
    """A ccxt pro instance of ``exchange_id`` for ``watch_ticker`` (same credentials,
    options and testnet as the adapter), or ``None`` when ccxt pro has no such exchange.

    The caller owns it and must ``await close()`` it (the exchange feed does).
    """
    import ccxt.pro as ccxt_pro  # websockets only where an exchange feed is built

    if exchange_id not in ccxt_pro.exchanges:
        return None
    client = ccxt_client(ccxt_pro, exchange_id, api_key=api_key, secret=secret, password=password)
    if testnet:
        _enable_sandbox(client, exchange_id, tuple(s for s in (api_key, secret, password) if s))
    return client


def credentials(settings: Settings) -> dict[str, Any]:
    """The configured credentials (out of their ``SecretStr``) and the testnet switch, as
    the adapter and the price watcher take them; nowhere else are they unwrapped."""
    return {
        "api_key": settings.api_key.get_secret_value(),
        "secret": settings.api_secret.get_secret_value(),
        "password": settings.api_password.get_secret_value(),
        "testnet": settings.testnet,
    }


def price_watcher_from_settings(settings: Settings) -> Any | None:
    """:func:`price_watcher` for ``TRADER_EXCHANGE`` (``None`` for the paper venue)."""
    if settings.is_paper:
        return None
    return price_watcher(settings.exchange, **credentials(settings))
