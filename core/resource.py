"""The shape every owned resource shares: closed by an idempotent ``aclose()``, and usable
as ``async with``, so the daemon opens them in an AsyncExitStack and they close in
reverse order."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """Mixin: ``async with resource`` returns it and closes it with :meth:`aclose` on the
    way out, error or not. A resource that must do work on entry overrides
    ``__aenter__`` (and returns ``self``)."""

    async def aclose(self) -> None:
        """Release what the resource holds. Idempotent."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
