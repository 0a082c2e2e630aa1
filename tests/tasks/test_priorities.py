"""Priorities (DESIGN.md §3): HIGH > NORMAL > LOW, FIFO inside one, and the LOW slot limit."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

from task_helpers import finished, wait_state

from ucore.stores.records import Priority, TaskState
from ucore.tasks import TaskContext


async def test_high_before_normal_before_low_fifo_inside(make_app: Any) -> None:
    app = await make_app("client", workers=1)
    gate = asyncio.Event()
    order: list[str] = []

    async def gate_task(ctx: TaskContext) -> None:
        await gate.wait()

    async def record(ctx: TaskContext) -> None:
        order.append(ctx.params["tag"])

    app.tasks.register("gate", gate_task)
    app.tasks.register("record", record)
    await app.tasks.start_workers()

    gate_id = await app.tasks.submit("gate")
    await wait_state(app, gate_id, TaskState.RUNNING)
    ids = []
    for tag, priority in [
        ("low1", Priority.LOW),
        ("normal1", "normal"),
        ("high1", Priority.HIGH),
        ("low2", "low"),
        ("normal2", Priority.NORMAL),
        ("high2", "HIGH"),
        ("low3", Priority.LOW),
        ("high3", Priority.HIGH),
    ]:
        ids.append(await app.tasks.submit("record", {"tag": tag}, priority=priority))
    # the only worker is busy: nothing else starts
    await asyncio.sleep(0.1)
    assert order == []
    gate.set()
    for task_id in ids:
        assert (await finished(app, task_id)).state is TaskState.COMPLETED
    assert order == ["high1", "high2", "high3", "normal1", "normal2", "low1", "low2", "low3"]
    stored = {r.id: r.priority for r in await app.tasks.list_tasks(limit=100)}
    assert stored[ids[0]] is Priority.LOW and stored[ids[2]] is Priority.HIGH


async def test_low_priority_slots_cap_concurrent_low_tasks(make_app: Any) -> None:
    app = await make_app("client", workers=2, low_priority_slots=1)
    lock = threading.Lock()
    spans: dict[str, tuple[float, float]] = {}

    def work(ctx: TaskContext) -> None:
        start = time.monotonic()
        ctx.wait(ctx.params["seconds"])
        with lock:
            spans[ctx.params["tag"]] = (start, time.monotonic())

    app.tasks.register("work", work)
    await app.tasks.start_workers()
    ids = [
        await app.tasks.submit("work", {"tag": f"low{i}", "seconds": 0.15}, priority="low")
        for i in range(3)
    ]
    ids.append(await app.tasks.submit("work", {"tag": "normal", "seconds": 0.15}))
    for task_id in ids:
        assert (await finished(app, task_id)).state is TaskState.COMPLETED

    lows = sorted(spans[f"low{i}"] for i in range(3))
    for (_, end), (start, _) in itertools.pairwise(lows):
        assert start >= end - 0.01, f"two LOW tasks overlapped: {lows}"
    n_start, n_end = spans["normal"]
    assert any(s < n_end and n_start < e for s, e in lows), (
        f"the NORMAL task did not run beside a LOW one: {spans}"
    )
