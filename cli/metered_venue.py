"""The venue as the metrics see it: every call timed by method, every failure counted by
the kind of error, around whichever adapter the daemon trades through.

A wrapper in the composition root rather than code in each adapter: the paper venue and
the ccxt adapter are measured the same way, and the core stays free of metrics.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from cli.metrics import TraderMetrics
from core.venue import ExchangeError

# The ExchangeAdapter protocol's venue calls (core/venue.py); everything else (name,
# market, the paper venue's on_tick, ...) passes through untouched.
TIMED = frozenset(
    {
        "load_markets",
        "create_order",
        "cancel_order",
        "edit_order",
        "fetch_order",
        "fetch_open_orders",
        "fetch_positions",
        "fetch_fills",
        "fetch_free_balance",
        "fetch_price",
    }
)


class MeteredVenue:
    """Forwards to ``venue``; its venue calls are timed and their errors counted."""

    def __init__(self, venue: Any, metrics: TraderMetrics) -> None:
        self._venue = venue
        self._metrics = metrics

    def __repr__(self) -> str:
        return f"MeteredVenue({self._venue!r})"

    def __getattr__(self, name: str) -> Any:
        # Only reached for a name not yet on this object. A method (timed, or forwarded
        # like ``market`` and the paper venue's ``on_tick``, which run on every tick) is
        # stored on the instance, so later look-ups never come back here. Plain values
        # (``name``, ``leverage``) are read from the venue each time.
        target = getattr(self._venue, name)
        if name in TIMED:
            target = self._timed(name, target)
        elif not callable(target):
            return target
        setattr(self, name, target)
        return target

    def _timed(
        self, method: str, call: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        seconds = self._metrics.venue_call.labels(method)
        errors = self._metrics.venue_errors

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            except ExchangeError as exc:
                errors.labels(type(exc).__name__).inc()
                raise
            except Exception:
                errors.labels("unexpected").inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - started)

        return timed
