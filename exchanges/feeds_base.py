"""What every price feed is: an async iterator of :class:`~core.models.Tick` that is also an
async context manager with an idempotent ``aclose()``.

Feeds are classes with ``__anext__`` rather than async generators on purpose: a generator
abandoned mid-iteration is finalised at some later garbage collection, while a feed's
``aclose()`` stops it at once and wakes a consumer waiting inside ``__anext__``.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from core.models import Tick
from core.resource import AsyncResource


@runtime_checkable
class PriceFeed(Protocol):
    """``async with feed: async for tick in feed: ...``"""

    def __aiter__(self) -> PriceFeed: ...

    async def __anext__(self) -> Tick: ...

    async def __aenter__(self) -> PriceFeed: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def aclose(self) -> None: ...


class FeedBase(AsyncResource):
    """Iteration, context management and an interruptible sleep shared by all feeds."""

    def __init__(self) -> None:
        self._closed = False
        self._stop = asyncio.Event()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Tick:
        if self._closed:
            raise StopAsyncIteration
        tick = await self._next()
        if tick is None or self._closed:
            raise StopAsyncIteration
        return tick

    async def _next(self) -> Tick | None:
        """The next tick, or ``None`` when the feed has ended."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Stop the feed; a consumer waiting for a tick gets the end of iteration. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        await self._close()

    async def _close(self) -> None:
        """Release what the feed owns (tasks, files)."""

    async def _sleep(self, delay_s: float) -> bool:
        """Sleep ``delay_s`` unless the feed is closed first; True when still open.

        A zero delay still yields to the loop once, so a feed read flat out cannot starve
        the other tasks.
        """
        if delay_s <= 0:
            await asyncio.sleep(0)
        elif not self._closed:
            try:
                async with asyncio.timeout(delay_s):
                    await self._stop.wait()
            except TimeoutError:
                pass
        return not self._closed
