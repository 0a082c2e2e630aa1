"""Graceful shutdown (DESIGN.md §3): not a cancel; stopped tasks are interrupted and re-queued."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from task_helpers import finished, outcomes, runs_of, wait_state

from ucore.stores.records import TaskState
from ucore.tasks import TaskContext


def cooperative(ctx: TaskContext) -> dict[str, int]:
    ctx.wait(10 if ctx.attempt == 1 else 0.05)
    return {"attempt": ctx.attempt}


async def cooperative_async(ctx: TaskContext) -> dict[str, int]:
    await ctx.sleep(10 if ctx.attempt == 1 else 0.05)
    return {"attempt": ctx.attempt}


@pytest.mark.parametrize("handler", [cooperative, cooperative_async])
async def test_shutdown_interrupts_and_requeues_then_a_restart_completes(
    make_app: Any, handler: Any
) -> None:
    conf = {"workers": 1, "shutdown_grace_seconds": 0.5}
    app = await make_app("service", **conf)
    app.tasks.register("job", handler)
    task_id = await app.tasks.submit("job")
    await wait_state(app, task_id, TaskState.RUNNING)
    t0 = time.monotonic()
    await app.shutdown()
    assert time.monotonic() - t0 < 0.5  # it stopped when asked, no need for the grace

    look = await make_app("client")
    record = await look.tasks.get(task_id)
    assert record.state is TaskState.PENDING  # a shutdown is not a cancel
    assert not record.cancel_requested and record.failures == 0
    assert await outcomes(look, task_id) == ["interrupted"]
    (run,) = await runs_of(look, task_id)
    assert run.error is not None and "shut down" in run.error
    await look.shutdown()

    again = await make_app("service", **conf)
    again.tasks.register("job", handler)
    record = await finished(again, task_id)
    assert record.state is TaskState.COMPLETED
    assert record.result == {"attempt": 2}
    assert await outcomes(again, task_id) == ["interrupted", "completed"]


async def test_handler_ignoring_stop_is_interrupted_after_the_grace(make_app: Any) -> None:
    grace = 0.5
    app = await make_app("service", workers=2, shutdown_grace_seconds=grace)
    release = asyncio.Event()

    def stubborn(ctx: TaskContext) -> None:
        time.sleep(1.5)  # never looks at stop requests

    async def stubborn_async(ctx: TaskContext) -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # swallows the cancellation

    app.tasks.register("stubborn", stubborn)
    app.tasks.register("stubborn_async", stubborn_async)
    sync_id = await app.tasks.submit("stubborn")
    async_id = await app.tasks.submit("stubborn_async")
    await wait_state(app, sync_id, TaskState.RUNNING)
    await wait_state(app, async_id, TaskState.RUNNING)
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(app.shutdown(), grace + 3)
    finally:
        release.set()
    took = time.monotonic() - t0
    assert grace - 0.05 <= took < grace + 1.0, took

    look = await make_app("client")
    for task_id in (sync_id, async_id):
        record = await look.tasks.get(task_id)
        assert record.state is TaskState.PENDING, record
        assert await outcomes(look, task_id) == ["interrupted"]
