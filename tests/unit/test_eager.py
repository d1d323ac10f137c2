"""Eager starts (core/eager.py, TaskSet.start) and the tick loop's use of them: a fired
order is sent before the tick loop goes on, and a failure in one half of a tick's
handling neither hides the tick from the other half nor leaves a fired order unsent."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from structlog.testing import capture_logs

from core.eager import start_eagerly
from core.order_model import OrderStatus
from core.order_requests import parse_order_request
from core.tick_loop import TaskSet
from tests.trading_harness import BTC, build_stack

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("eager_test", default="caller")


async def test_runs_up_to_its_first_wait_before_returning() -> None:
    """The coroutine's code before its first wait has run when start_eagerly returns; the
    rest runs in the task, which returns the coroutine's result."""
    steps: list[str] = []
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def work() -> str:
        steps.append("before")
        got = await gate
        steps.append("after")
        return got + "!"

    task, exc = start_eagerly(work(), "work")
    assert ["before"] == steps and exc is None and task is not None
    gate.set_result("done")
    assert "done!" == await task
    assert ["before", "after"] == steps


async def test_ending_in_the_first_step_needs_no_task() -> None:
    """A coroutine that ends without waiting gets no task; one that raises there hands
    back its exception."""

    async def quick() -> int:
        return 1

    async def broken() -> None:
        raise ValueError("bad order")

    assert (None, None) == start_eagerly(quick(), "quick")
    task, exc = start_eagerly(broken(), "broken")
    assert task is None and isinstance(exc, ValueError) and "bad order" == str(exc)


async def test_bare_yields_and_later_failures_reach_the_task() -> None:
    """A coroutine that yields bare (sleep(0)) goes on in its task; an exception after
    the first wait fails the task with it."""

    async def work() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        raise RuntimeError("venue gone")

    task, _ = start_eagerly(work(), "work")
    assert task is not None
    with pytest.raises(RuntimeError, match="venue gone"):
        await task


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    """Cancelling the task throws CancelledError into the coroutine at its wait: its
    ``finally`` runs, and the task ends cancelled."""
    cleaned: list[bool] = []

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append(True)

    task, _ = start_eagerly(work(), "work")
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [True] == cleaned and task.cancelled()


async def test_context_set_in_the_work_stays_in_the_work() -> None:
    """A context variable the coroutine sets in its eager step is seen by its own later
    steps, never by the caller."""

    async def work() -> str:
        _VAR.set("work")
        await asyncio.sleep(0)
        return _VAR.get()

    task, _ = start_eagerly(work(), "work")
    assert "caller" == _VAR.get()
    assert task is not None and "work" == await task


async def test_task_set_logs_a_failure_of_the_eager_step() -> None:
    """TaskSet.start logs an exception raised before the first wait as task_failed, as it
    does for a task's; the set holds only work that is still running."""
    tasks = TaskSet("t")

    async def broken() -> None:
        raise ValueError("boom")

    async def waits() -> None:
        await asyncio.sleep(0)

    with capture_logs() as logs:
        assert tasks.start(broken(), "broken one") is None
        running = tasks.start(waits(), "waits")
    assert [("task_failed", "broken one")] == [(e["event"], e["task"]) for e in logs]
    assert running is not None and 1 == len(tasks)
    await tasks.drain(5)
    assert 0 == len(tasks)


def _sell_stop(**fields: Any) -> Any:
    spec = {"symbol": BTC, "side": "sell", "amount": "0.01", "type": "stop_market"}
    return parse_order_request({**spec, "trigger_price": "49900", **fields})


async def test_a_fired_order_is_sent_before_the_tick_returns() -> None:
    """When on_tick returns, the order that fired on it is already SUBMITTED, its venue
    call made and its tick-to-submit latency recorded; its fill follows in its task."""
    stack = build_stack()
    order = await stack.orders.place_order(_sell_stop())
    stack.tick(BTC, "49850")
    now = stack.orders.get_order(order.client_order_id)
    assert now is not None and OrderStatus.SUBMITTED == now.status
    assert 1 == len(stack.orders.latencies_us)
    await stack.tasks.drain(5)
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FILLED == final.status


async def test_positions_failing_on_a_tick_does_not_strand_a_fired_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the position tracker raises on a tick, the order that fired on that tick is
    still sent (not left TRIGGERED), and the failure is logged naming its half."""
    stack = build_stack()
    order = await stack.orders.place_order(_sell_stop())

    def broken(_tick: Any) -> Any:
        raise RuntimeError("position bug")

    monkeypatch.setattr(stack.lifecycle, "on_tick", broken)
    with capture_logs() as logs:
        stack.tick(BTC, "49850")
    await stack.tasks.drain(5)
    final = stack.orders.get_order(order.client_order_id)
    assert final is not None and OrderStatus.FILLED == final.status
    failures = [e for e in logs if e["event"] == "tick_handling_failed"]
    assert ["positions"] == [e["part"] for e in failures]
