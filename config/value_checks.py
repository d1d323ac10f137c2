"""The rules a setting's value must meet, where they take more than a line: PostgreSQL
URLs (never echoed: they may hold a password), the paper venue's fault list, percentages,
and the session URL that transaction pooling requires. Each raises ValueError with the
words the one-line settings error shows after the setting's name."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

FAULT_NAMES = {
    "reject_stop": "probability",
    "reject_entry": "probability",
    "timeout_after_accept": "probability",
    "no_average_price": "probability",
    "no_status": "probability",
    "id_only_reply": "probability",
    "position_lag_s": "seconds",
    "latency_ms": "milliseconds",
    "partial_fill": "fraction",
}


def postgres_url(value: str) -> str:
    """``value`` stripped, when it is empty or a postgresql:// URL."""
    raw = value.strip()
    if raw:
        # Never echo the URL in a message: it may hold a password.
        try:
            parts = urlsplit(raw)
            port = parts.port  # raises on a port that is not a number in 0-65535
        except ValueError:
            raise ValueError(
                "must be a postgresql:// URL (its host or port is malformed)"
            ) from None
        if parts.scheme not in ("postgres", "postgresql") or not (parts.hostname or parts.path):
            raise ValueError("must be a postgresql:// URL")
        if port == 0:
            raise ValueError("must be a postgresql:// URL (port 0 is not a port)")
    return raw


def session_url_needed(session_url: str, database_url: str, pool_mode: str | None) -> None:
    """Behind transaction pooling the lock and LISTEN need their own session URL."""
    if pool_mode != "transaction":
        return
    if not session_url or session_url == database_url:
        raise ValueError(
            "required, and different from TRADER_DATABASE_URL, with"
            " TRADER_DATABASE_POOL_MODE=transaction: the account lock and LISTEN need a"
            " session connection (the server itself, or a pool in session mode);"
            " without one the single-instance lock cannot be guaranteed"
        )


def paper_faults(value: Any) -> dict[str, Decimal]:
    """``name=value,...`` (or a mapping) as checked fault settings."""
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = []
        for item in str(value or "").split(","):
            if not item.strip():
                continue
            name, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"{item.strip()!r} must be name=value")
            pairs.append((name.strip(), text.strip()))
    faults: dict[str, Decimal] = {}
    for name, raw in pairs:
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
        try:
            number = Decimal(str(raw).strip())
        except ArithmeticError:
            raise ValueError(f"{name} must be a number") from None
        if not number.is_finite() or number < 0:
            raise ValueError(f"{name} must be a finite number >= 0")
        if FAULT_NAMES[name] in ("probability", "fraction") and number > 1:
            raise ValueError(f"{name} is a {FAULT_NAMES[name]} and must be <= 1")
        faults[name] = number
    return faults


def percent(value: Any) -> Decimal | None:
    """A percentage in (0, 100), a trailing ``%`` allowed; None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = Decimal(str(value).strip().rstrip("%"))
    except ArithmeticError:
        raise ValueError("must be a number") from None
    if not number.is_finite() or number <= 0 or number >= 100:
        raise ValueError("must be a percentage between 0 and 100 (exclusive)")
    return number
