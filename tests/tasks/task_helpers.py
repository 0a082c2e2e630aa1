"""Helpers of the TaskSystem tests (imported by the test modules of this directory)."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psutil

from ucore.app import App
from ucore.stores.records import NodeRecord, RunRecord, TaskRecord, TaskState


async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]],
    *,
    within: float = 5.0,
    interval: float = 0.02,
    what: str = "a condition",
) -> Any:
    """Poll ``condition`` (sync or async) until it is truthy; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_state(app: App, task_id: int, *states: TaskState, within: float = 5.0) -> TaskRecord:
    """Until the task is in one of ``states``; returns its record."""

    async def check() -> TaskRecord | None:
        record = await app.tasks.get(task_id)
        return record if record.state in states else None

    result: TaskRecord = await wait_until(
        check, within=within, what=f"task {task_id} to be {'/'.join(states)}"
    )
    return result


async def finished(app: App, task_id: int, within: float = 5.0) -> TaskRecord:
    """``app.tasks.wait`` with a deadline."""
    return await asyncio.wait_for(app.tasks.wait(task_id, poll=0.05), within)


async def outcomes(app: App, task_id: int) -> list[str | None]:
    """The outcomes of a task's attempts, oldest first."""
    runs = await app.tasks.history(task_id=task_id, limit=1000)
    return [r.outcome.value if r.outcome else None for r in reversed(runs)]


async def runs_of(app: App, task_id: int) -> list[RunRecord]:
    """A task's attempts, oldest first."""
    return list(reversed(await app.tasks.history(task_id=task_id, limit=1000)))


def dead_pid() -> int:
    """A process id that no process of this host has."""
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid -= 1
    return pid


async def ghost_claim(
    app: App,
    task_id: int,
    *,
    host: str | None = None,
    pid: int | None = None,
    lease_seconds: float = 3600.0,
) -> str:
    """Mark ``task_id`` running under a made-up node (default: a dead process of this host).

    Registers the node and claims the task through the store, as another process would.
    Returns the node's id.
    """
    store = app.tasks.store
    now = app.ctx.clock.now()
    node_id = f"ghost-{uuid.uuid4().hex[:8]}"
    host = app.ctx.host if host is None else host
    pid = dead_pid() if pid is None else pid
    await store.register_node(
        NodeRecord(
            id=node_id,
            host=host,
            pid=pid,
            role="service",
            started_at=now,
            heartbeat_at=now,
            proc_started=None,
        )
    )
    record = await store.claim_task(
        node_id=node_id,
        host=host,
        pid=pid,
        now=now,
        lease_until=now + timedelta(seconds=lease_seconds),
        task_id=task_id,
    )
    assert record is not None and record.state is TaskState.RUNNING, record
    return node_id
