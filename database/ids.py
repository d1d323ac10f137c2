"""Position ids reserved ahead of need, so opening a position never awaits the database.

Ids come from ``monitoring.positions_id_seq`` in blocks. :meth:`next_position_id` is
synchronous; when the reserve runs low a refill is started in the background. Intake
itself needs the database, so a reserve of a few dozen ids outlasts any outage that still
lets signals arrive.
"""

from __future__ import annotations

import asyncio
from collections import deque

import structlog

from database.repository import Repository

log = structlog.get_logger("ids")


class PositionIdReserve:
    """Hands out position ids from a reserve refilled in blocks."""

    def __init__(self, repository: Repository, block: int = 10, low_water: int = 3) -> None:
        self._repo = repository
        self._block = block
        self._low = low_water
        self._ids: deque[int] = deque()
        self._refill: asyncio.Task[None] | None = None

    async def fill(self) -> None:
        """Top the reserve up to a full block (at start-up, and in the background)."""
        need = self._block - len(self._ids)
        if need > 0:
            self._ids.extend(await self._repo.reserve_position_ids(need))

    def next_position_id(self) -> int:
        if len(self._ids) <= self._low and (self._refill is None or self._refill.done()):
            self._refill = asyncio.get_running_loop().create_task(self._background_fill())
        if not self._ids:
            raise RuntimeError("no position id reserved: the database has been unreachable")
        return self._ids.popleft()

    async def _background_fill(self) -> None:
        try:
            await self.fill()
        except Exception as exc:  # the next call tries again; the reserve still has ids
            log.warning("position_id_refill_failed", error=repr(exc))

    async def aclose(self) -> None:
        if self._refill is not None and not self._refill.done():
            self._refill.cancel()
            await asyncio.gather(self._refill, return_exceptions=True)
