"""Leases and recovery (DESIGN.md §3): dead processes' tasks are re-queued, never lost."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from task_helpers import finished, ghost_claim, outcomes, runs_of

from ucore.stores.records import TaskState
from ucore.tasks import TaskContext


async def test_task_of_a_dead_local_process_is_recovered_at_start(make_app: Any) -> None:
    # lease_seconds stays at its default (30 s): recovery must not wait for the lease
    setup = await make_app("client")
    task_id = await setup.tasks.submit("sleep", {"seconds": 0.05})
    ghost = await ghost_claim(setup, task_id)
    running = await setup.tasks.get(task_id)
    assert running.state is TaskState.RUNNING and running.node_id == ghost
    await setup.shutdown()

    t0 = time.monotonic()
    service = await make_app("service")
    record = await finished(service, task_id, within=5)
    assert time.monotonic() - t0 < 2.0
    assert record.state is TaskState.COMPLETED
    assert (record.attempts, record.interruptions, record.failures) == (2, 1, 0)
    runs = await runs_of(service, task_id)
    assert [r.outcome.value if r.outcome else None for r in runs] == ["interrupted", "completed"]
    assert runs[0].node_id == ghost and runs[0].error is not None
    assert "no longer exists" in runs[0].error
    assert runs[1].node_id == service.ctx.node_id
    # the dead node is gone from the nodes table
    assert ghost not in {n.id for n in await service.tasks.nodes(live_only=False)}


async def test_expired_lease_of_a_remote_node_is_recovered_by_housekeeping(
    make_app: Any,
) -> None:
    app = await make_app("client", lease_seconds=1.5)
    task_id = await app.tasks.submit("sleep", {"seconds": 0.05})
    ghost = await ghost_claim(app, task_id, host="elsewhere", pid=os.getpid(), lease_seconds=0.8)
    t0 = time.monotonic()
    await app.tasks.start_workers()
    # at start the lease is still valid: the task is left alone
    record = await app.tasks.get(task_id)
    assert record.state is TaskState.RUNNING and record.node_id == ghost
    record = await finished(app, task_id, within=6)
    took = time.monotonic() - t0
    assert record.state is TaskState.COMPLETED
    assert 0.7 <= took < 3.5, took
    runs = await runs_of(app, task_id)
    assert [r.outcome.value if r.outcome else None for r in runs] == ["interrupted", "completed"]
    assert runs[0].host == "elsewhere" and runs[0].error is not None
    assert "lease expired" in runs[0].error


async def test_max_interruptions_fails_the_task_saying_so(make_app: Any) -> None:
    app = await make_app("client", max_interruptions=2)
    task_id = await app.tasks.submit("sleep", {"seconds": 0.05})
    pool = await app.tasks.start_workers(only_ids=set())  # recovers, runs nothing
    await ghost_claim(app, task_id)
    assert await pool.recover_now() == 1
    record = await app.tasks.get(task_id)
    assert record.state is TaskState.PENDING and record.interruptions == 1
    await ghost_claim(app, task_id)
    assert await pool.recover_now() == 1
    record = await app.tasks.get(task_id)
    assert record.state is TaskState.FAILED
    assert record.interruptions == 2 and record.failures == 0
    assert record.error is not None and "max_interruptions" in record.error
    assert "2" in record.error
    assert await outcomes(app, task_id) == ["interrupted", "interrupted"]


async def test_interruptions_do_not_use_up_max_attempts(make_app: Any) -> None:
    app = await make_app("client", max_interruptions=5)
    app.tasks.register("once", lambda ctx: {"attempt": ctx.attempt}, max_attempts=1)

    def always_fails(ctx: TaskContext) -> None:
        raise RuntimeError(f"attempt {ctx.attempt}")

    app.tasks.register("fails", always_fails, max_attempts=2, retry_backoff=0.05)
    once = await app.tasks.submit("once")
    fails = await app.tasks.submit("fails")
    pool = await app.tasks.start_workers(only_ids=set())
    for _ in range(2):
        await ghost_claim(app, once)
        await ghost_claim(app, fails)
        assert await pool.recover_now() == 2
    record = await app.tasks.run_here(once)
    assert record.state is TaskState.COMPLETED
    assert (record.attempts, record.interruptions, record.failures) == (3, 2, 0)
    assert record.result == {"attempt": 3}
    record = await app.tasks.run_here(fails)
    assert record.state is TaskState.FAILED
    assert (record.attempts, record.interruptions, record.failures) == (4, 2, 2)
    assert await outcomes(app, fails) == ["interrupted", "interrupted", "failed", "failed"]


async def test_a_live_local_node_is_not_recovered(make_app: Any) -> None:
    app = await make_app("client", lease_seconds=30)
    task_id = await app.tasks.submit("sleep", {"seconds": 0.05})
    # a node of this host whose process exists (this one) holds a valid lease
    await ghost_claim(app, task_id, pid=os.getpid())
    pool = await app.tasks.start_workers(only_ids=set())
    assert await pool.recover_now() == 0
    assert (await app.tasks.get(task_id)).state is TaskState.RUNNING


async def test_a_task_claimed_during_a_lease_renewal_keeps_its_lease(make_app: Any) -> None:
    # Renewals are slowed down so that tasks are claimed while one is on its way: such a task
    # is not in the renewal's answer, yet it has not lost its lease.
    app = await make_app("client", workers=2, lease_seconds=1.5)
    store = app.tasks.store
    original = store.renew_leases

    async def slow_renew(*args: Any) -> set[int]:
        await asyncio.sleep(0.2)
        held: set[int] = await original(*args)
        return held

    store.renew_leases = slow_renew

    def short(ctx: TaskContext) -> int:
        ctx.wait(0.03)
        return ctx.attempt

    app.tasks.register("short", short)
    await app.tasks.start_workers()
    ids = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.6:  # three renewals
        ids.append(await app.tasks.submit("short"))
        await asyncio.sleep(0.02)
    for task_id in ids:
        record = await finished(app, task_id, within=10)
        assert record.state is TaskState.COMPLETED, record
        assert await outcomes(app, task_id) == ["completed"], task_id


async def test_cancel_of_a_task_whose_process_died_is_not_lost(make_app: Any) -> None:
    client = await make_app("client")
    task_id = await client.tasks.submit("sleep", {"seconds": 0.05})
    await ghost_claim(client, task_id)  # its process is gone (crash, kill -9)
    asked = await client.tasks.cancel(task_id)
    assert asked.state is TaskState.RUNNING and asked.cancel_requested
    service = await make_app("service")
    record = await finished(service, task_id)
    assert record.state is TaskState.CANCELLED, record
    assert await outcomes(service, task_id) == ["cancelled"]
