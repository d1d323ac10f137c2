"""Start a coroutine now, in the caller's step of the event loop, and hand it to a task
at its first wait: what Python 3.12 calls an eager task (``asyncio.eager_task_factory``),
for the Python 3.11 this daemon runs on.

Why: a fired order's execution used to start one loop turn after its tick, behind every
callback already waiting (stop moves spawned by the same tick, the audit writer encoding
a batch, a venue sync): that wait was most of tick-to-submit. Started eagerly, the
execution runs up to its venue call (the order made SUBMITTED, the request sent) before
the tick loop goes on, and only what follows the venue's answer runs as a task.

The task drives the started coroutine through :class:`_Started`, which gives the task
the future the coroutine is waiting on first, then forwards every ``send`` and ``throw``
(a cancellation reaches the coroutine as it would in a plain task).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

_FORWARDING = object()  # _Started's first wait was handed to the task


class _Started(Coroutine[Any, Any, Any]):
    """A coroutine that has run its first step, seen by a task as one not yet started."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def send(self, value: Any) -> Any:
        waiting_on = self._waiting_on
        if waiting_on is not _FORWARDING:
            # The task's first step: what the coroutine yielded in its eager step (a
            # future, or None for a bare yield) is what the task must wait for.
            self._waiting_on = _FORWARDING
            return waiting_on
        return self._coro.send(value)

    def throw(self, *exc: Any) -> Any:
        self._waiting_on = _FORWARDING
        return self._coro.throw(*exc)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        raise TypeError("a started coroutine is driven by its task, not awaited")


def start_eagerly(
    coro: Coroutine[Any, Any, Any], name: str
) -> tuple[asyncio.Task[Any] | None, BaseException | None]:
    """Run ``coro`` until it first waits; return the task that carries it on from there,
    or, when it ended in that first step, no task and the exception it raised (if any).

    The coroutine runs in a copy of the caller's context, as a task's does, and its task
    keeps that copy: context variables it sets never leak into the caller.
    """
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coro.send, None)
    except StopIteration:
        return None, None
    except (KeyboardInterrupt, SystemExit):
        raise  # as a task re-raises them
    except BaseException as exc:  # the caller logs it, as a failed task's
        return None, exc
    loop = asyncio.get_running_loop()
    return loop.create_task(_Started(coro, waiting_on), name=name, context=context), None
