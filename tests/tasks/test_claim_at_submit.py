"""A submit to a pool with a free slot and nothing else due claims its task in the same
transaction (WorkerPool.reserve, Store.insert_and_claim); everything else queues as before."""

from __future__ import annotations

import asyncio
from typing import Any

from task_helpers import finished, outcomes, wait_until

from ucore.foundation.events import Event
from ucore.stores.records import Priority, TaskFilter, TaskState
from ucore.tasks import TaskContext


async def idle_pool(app: Any) -> Any:
    """The app's pool once its first look found nothing due."""
    pool = await app.tasks.start_workers()
    await wait_until(lambda: pool._drained, what="the pool's first empty pick")
    return pool


async def test_a_submit_to_an_idle_pool_is_running_when_it_returns(make_app: Any) -> None:
    app = await make_app("client", workers=2)
    gate = asyncio.Event()
    kinds: list[str] = []

    async def held(ctx: TaskContext) -> str:
        await gate.wait()
        return "done"

    app.tasks.register("held", held)
    app.ctx.events.subscribe(lambda e: kinds.append(e.kind), "task.")
    await idle_pool(app)
    task_id = await app.tasks.submit("held")
    record = await app.tasks.get(task_id)
    assert record.state is TaskState.RUNNING and record.attempts == 1
    assert kinds[:2] == ["task.submitted", "task.started"]
    gate.set()
    assert (await finished(app, task_id)).result == "done"


async def test_a_submit_queues_behind_tasks_already_waiting(make_app: Any) -> None:
    # workers=1: the slot is busy, so the submits queue; when it frees, priority decides
    app = await make_app("client", workers=1)
    gate = asyncio.Event()
    order: list[str] = []

    async def held(ctx: TaskContext) -> None:
        await gate.wait()

    async def tag(ctx: TaskContext) -> None:
        order.append(ctx.params["tag"])

    app.tasks.register("held", held)
    app.tasks.register("tag", tag)
    await idle_pool(app)
    held_id = await app.tasks.submit("held")
    assert (await app.tasks.get(held_id)).state is TaskState.RUNNING
    low = await app.tasks.submit("tag", {"tag": "low"}, priority=Priority.LOW)
    high = await app.tasks.submit("tag", {"tag": "high"}, priority=Priority.HIGH)
    assert (await app.tasks.get(low)).state is TaskState.PENDING
    gate.set()
    await finished(app, low)
    await finished(app, high)
    assert order == ["high", "low"]


async def test_a_task_claimed_for_a_cancelled_submit_still_runs(make_app: Any) -> None:
    app = await make_app("client", workers=2)
    ran: list[int] = []

    async def job(ctx: TaskContext) -> None:
        ran.append(ctx.task_id)

    app.tasks.register("job", job)
    await idle_pool(app)
    submit = asyncio.ensure_future(app.tasks.submit("job"))
    await asyncio.sleep(0)  # the submit has reserved a slot and queued its write
    submit.cancel()
    await asyncio.sleep(0.05)
    stored = await app.tasks.store.list_tasks(TaskFilter(name="job"))
    assert len(stored) == 1  # the write was on its way: it landed
    record = await finished(app, stored[0].id)
    assert record.state is TaskState.COMPLETED and ran == [record.id]
    assert app.tasks.pool._reserved == 0


async def test_a_task_claimed_by_a_submit_as_the_pool_stops_is_requeued(make_app: Any) -> None:
    app = await make_app("client", workers=2, shutdown_grace_seconds=0.2)
    events: list[Event] = []

    async def held(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    app.tasks.register("held", held)
    app.ctx.events.subscribe(events.append, "task.finished")
    pool = await idle_pool(app)
    submit = asyncio.ensure_future(app.tasks.submit("held"))
    await asyncio.sleep(0)  # reserved, its write queued
    stop = asyncio.ensure_future(pool.stop(0.2))
    task_id = await submit
    await stop
    record = await app.tasks.get(task_id)
    assert record.state is TaskState.PENDING  # to run at the next start
    assert await outcomes(app, task_id) == ["interrupted"]
    assert [e.data["outcome"] for e in events] == ["interrupted"]
