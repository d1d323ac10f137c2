"""Bounded retries with exponential back-off, for transient venue errors only.

Final errors (a rejection, an unknown order, bad credentials) are raised at once: retrying
them repeats the mistake. Order submits are not retried here blindly: the adapter resolves
a timed-out submit by client id first (failure mode 14), and callers that retry a submit
after a definite failure use a new client id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from core.venue import TransientExchangeError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """``tries`` attempts, sleeping ``base_s * factor**n`` (capped at ``max_s``) between."""

    tries: int = 3
    base_s: float = 0.05
    factor: float = 2.0
    max_s: float = 2.0

    def delay_s(self, attempt: int) -> float:
        return float(min(self.base_s * self.factor**attempt, self.max_s))


async def retry_transient(call: Callable[[], Awaitable[T]], backoff: Backoff = Backoff()) -> T:
    """Run ``call``; on a transient venue error, back off and try again, up to ``tries``."""
    for attempt in range(backoff.tries):
        try:
            return await call()
        except TransientExchangeError:
            if attempt + 1 >= backoff.tries:
                raise
            await asyncio.sleep(backoff.delay_s(attempt))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
