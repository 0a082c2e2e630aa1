"""Cancel (DESIGN.md §3): pending at once, running cooperatively, from another process."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from typing import Any

import pytest
from task_helpers import finished, outcomes, wait_state

from ucore.stores.records import TaskState
from ucore.tasks import TaskContext
from ucore.tasks.errors import TaskNotFoundError


async def test_cancel_pending_is_immediate_and_it_never_runs(make_app: Any) -> None:
    app = await make_app("client", workers=1)
    gate = asyncio.Event()
    ran: list[int] = []

    async def gate_task(ctx: TaskContext) -> None:
        await gate.wait()

    def victim(ctx: TaskContext) -> None:
        ran.append(ctx.task_id)

    app.tasks.register("gate", gate_task)
    app.tasks.register("victim", victim)
    await app.tasks.start_workers()
    gate_id = await app.tasks.submit("gate")
    await wait_state(app, gate_id, TaskState.RUNNING)
    victim_id = await app.tasks.submit("victim")
    keep_id = await app.tasks.submit("victim")
    record = await app.tasks.cancel(victim_id)
    assert record.state is TaskState.CANCELLED
    assert record.error == "cancelled by user" and record.finished_at is not None
    assert (await app.tasks.get(victim_id)).state is TaskState.CANCELLED
    gate.set()
    assert (await finished(app, keep_id)).state is TaskState.COMPLETED
    assert ran == [keep_id]
    assert await outcomes(app, victim_id) == []  # it never had an attempt
    # cancelling again, or cancelling a finished task, changes nothing
    assert (await app.tasks.cancel(victim_id)).state is TaskState.CANCELLED
    assert (await app.tasks.cancel(keep_id)).state is TaskState.COMPLETED


async def test_cancel_running_sync_sleep_within_a_second(make_app: Any) -> None:
    app = await make_app("service")
    task_id = await app.tasks.submit("sleep", {"seconds": 10})
    await wait_state(app, task_id, TaskState.RUNNING)
    t0 = time.monotonic()
    asked = await app.tasks.cancel(task_id)
    assert asked.state is TaskState.RUNNING and asked.cancel_requested
    record = await finished(app, task_id)
    assert time.monotonic() - t0 < 1.0
    assert record.state is TaskState.CANCELLED
    assert record.error == "cancelled by user"
    assert record.failures == 0 and not record.cancel_requested
    assert await outcomes(app, task_id) == ["cancelled"]


async def test_cancel_running_async_handler_by_asyncio_cancellation(make_app: Any) -> None:
    app = await make_app("client")
    saw: list[str] = []

    async def long(ctx: TaskContext) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            saw.append(f"cancelled ({ctx.stop_reason})")
            raise

    app.tasks.register("long", long)
    await app.tasks.start_workers()
    task_id = await app.tasks.submit("long")
    await wait_state(app, task_id, TaskState.RUNNING)
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await app.tasks.cancel(task_id)
    record = await finished(app, task_id)
    assert time.monotonic() - t0 < 0.5
    assert record.state is TaskState.CANCELLED
    assert saw == ["cancelled (cancel)"]
    assert await outcomes(app, task_id) == ["cancelled"]


async def test_cancel_from_another_process_reaches_the_worker(make_app: Any) -> None:
    service = await make_app("service")
    client = await make_app("client")
    task_id = await client.tasks.submit("sleep", {"seconds": 10})
    await wait_state(client, task_id, TaskState.RUNNING)
    t0 = time.monotonic()
    asked = await client.tasks.cancel(task_id)
    assert asked.state is TaskState.RUNNING and asked.cancel_requested
    record = await finished(client, task_id)
    took = time.monotonic() - t0
    assert record.state is TaskState.CANCELLED, record
    assert took < 1.5, took
    assert record.node_id == service.ctx.node_id
    assert await outcomes(client, task_id) == ["cancelled"]


async def test_cancel_unknown_id(make_app: Any) -> None:
    app = await make_app("client")
    with pytest.raises(TaskNotFoundError, match="12345"):
        await app.tasks.cancel(12345)
    with pytest.raises(TaskNotFoundError):
        await app.tasks.get(12345)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_stop_before_the_handler_started_ends_the_attempt_without_running_it(
    make_app: Any, kind: str
) -> None:
    """A stop that reaches an execution before its handler's first step (here: from the
    "started" event) cancels the attempt; nothing hangs and no coroutine is left unawaited."""
    app = await make_app("client", workers=1)
    ran: list[int] = []

    async def victim_async(ctx: TaskContext) -> None:
        ran.append(ctx.task_id)

    def victim_sync(ctx: TaskContext) -> None:
        ctx.check_cancelled()
        ran.append(ctx.task_id)

    app.tasks.register("victim", victim_async if kind == "async" else victim_sync)

    def on_started(event: Any) -> None:
        pool = app.tasks.pool
        assert pool is not None
        pool.stop_task(event.data["task_id"], "cancel")

    app.ctx.events.subscribe(on_started, "task.started")
    await app.tasks.start_workers()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        task_id = await app.tasks.submit("victim")
        record = await finished(app, task_id)
        gc.collect()
    assert record.state is TaskState.CANCELLED
    assert record.error == "cancelled by user"
    assert ran == []
    assert await outcomes(app, task_id) == ["cancelled"]
