"""Handlers (DESIGN.md §3): sync and async, JSON results, failures, progress and events."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

from pydantic import BaseModel
from task_helpers import finished, outcomes, runs_of

from ucore.foundation.events import Event
from ucore.stores.records import TaskState
from ucore.tasks import TaskContext


async def test_async_and_sync_handlers_store_json_results(make_app: Any) -> None:
    app = await make_app("client")
    threads: dict[str, str] = {}

    async def async_handler(ctx: TaskContext) -> dict[str, Any]:
        threads["async"] = threading.current_thread().name
        await ctx.sleep(0.01)
        return {"kind": "async", "n": ctx.params["n"], "nested": [1, 2.5, None, "x"]}

    def sync_handler(ctx: TaskContext) -> list[Any]:
        threads["sync"] = threading.current_thread().name
        ctx.wait(0.01)
        return ["sync", ctx.params["n"], {"ok": True}]

    class Out(BaseModel):
        total: int

    def model_handler(ctx: TaskContext) -> Out:
        return Out(total=7)

    app.tasks.register("a", async_handler)
    app.tasks.register("s", sync_handler)
    app.tasks.register("m", model_handler)
    await app.tasks.start_workers()
    a = await app.tasks.submit("a", {"n": 1})
    s = await app.tasks.submit("s", {"n": 2})
    m = await app.tasks.submit("m")
    ra, rs, rm = (await finished(app, a)), (await finished(app, s)), (await finished(app, m))
    assert ra.state is TaskState.COMPLETED and rs.state is TaskState.COMPLETED
    assert ra.result == {"kind": "async", "n": 1, "nested": [1, 2.5, None, "x"]}
    assert rs.result == ["sync", 2, {"ok": True}]
    assert rm.result == {"total": 7}
    # the async one ran on the loop's thread, the sync one in a thread of its own
    assert threads["async"] == threading.current_thread().name
    assert threads["sync"] != threading.current_thread().name
    # the result is in the run history too, and who ran it
    (run,) = await runs_of(app, a)
    assert run.outcome is not None and run.outcome.value == "completed"
    assert run.result_summary == ra.result
    assert run.node_id == app.ctx.node_id and run.pid == app.ctx.pid
    assert ra.node_id == app.ctx.node_id and ra.host == app.ctx.host
    assert ra.started_at is not None and ra.finished_at is not None
    assert ra.finished_at >= ra.started_at >= ra.submitted_at


async def test_non_json_result_fails_clearly(make_app: Any) -> None:
    app = await make_app("client")

    def bad(ctx: TaskContext) -> dict[str, Any]:
        return {"files": {1, 2, 3}}

    app.tasks.register("bad", bad)
    await app.tasks.start_workers()
    record = await finished(app, await app.tasks.submit("bad"))
    assert record.state is TaskState.FAILED
    assert record.result is None
    assert record.error is not None and "JSON" in record.error and "set" in record.error
    assert await outcomes(app, record.id) == ["failed"]


async def test_exception_fails_with_error_and_traceback(make_app: Any) -> None:
    app = await make_app("client")

    def explode_here(ctx: TaskContext) -> None:
        raise ValueError("boom at step 3")

    async def explode_async(ctx: TaskContext) -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    app.tasks.register("explode", explode_here)
    app.tasks.register("explode_async", explode_async)
    await app.tasks.start_workers()
    r1 = await finished(app, await app.tasks.submit("explode"))
    r2 = await finished(app, await app.tasks.submit("explode_async"))
    assert r1.state is TaskState.FAILED
    assert r1.error == "ValueError: boom at step 3"
    assert r1.traceback is not None
    assert "explode_here" in r1.traceback and "ValueError: boom at step 3" in r1.traceback
    assert r1.failures == 1 and r1.attempts == 1
    assert r2.state is TaskState.FAILED and r2.error is not None
    assert r2.error.startswith("KeyError")
    assert r2.traceback is not None and "explode_async" in r2.traceback
    (run,) = await runs_of(app, r1.id)
    assert run.outcome is not None and run.outcome.value == "failed"
    assert run.error == "ValueError: boom at step 3"
    assert run.finished_at is not None and run.duration is not None


async def test_progress_reaches_subscribers_at_once_and_store_at_bounded_rate(
    make_app: Any,
) -> None:
    interval = 0.2
    app = await make_app("client", progress_interval_seconds=interval)
    seen: list[Event] = []
    app.ctx.events.subscribe(seen.append, "task.")
    store = app.tasks.store
    writes: list[tuple[float, Any]] = []
    original = store.set_progress

    async def counting(*args: Any) -> None:
        writes.append((time.monotonic(), args))
        await original(*args)

    store.set_progress = counting
    late: list[int] = []
    steps = 20

    async def reporter(ctx: TaskContext) -> str:
        for i in range(steps):
            ctx.progress(i, steps, f"step {i}")
            # an in-process subscriber has it before progress() returns
            last = seen[-1]
            if not (last.kind == "task.progress" and last.data["message"] == f"step {i}"):
                late.append(i)
            await asyncio.sleep(0.03)
        ctx.progress(steps, steps, "done")
        return "ok"

    app.tasks.register("reporter", reporter)
    await app.tasks.start_workers()
    t0 = time.monotonic()
    task_id = await app.tasks.submit("reporter")
    record = await finished(app, task_id)
    elapsed = time.monotonic() - t0
    assert record.state is TaskState.COMPLETED
    assert late == []
    progress = [e for e in seen if e.kind == "task.progress" and e.data["task_id"] == task_id]
    assert [e.data["message"] for e in progress] == [f"step {i}" for i in range(steps)] + ["done"]
    assert progress[0].data["fraction"] == 0.0 and progress[-1].data["fraction"] == 1.0
    # the store: about one write per interval, not one per report
    ours = [t for t, args in writes if args[0] == task_id]
    assert 2 <= len(ours) <= elapsed / interval + 2, (len(ours), elapsed)
    gaps = [b - a for a, b in itertools.pairwise(ours)]
    # the last one may be the final flush when the task ends; the others keep the interval
    assert all(g >= interval * 0.9 for g in gaps[:-1]), gaps
    # the finished record keeps the last progress reported
    assert record.progress == 1.0 and record.progress_message == "done"


async def test_progress_from_a_thread_reaches_subscribers_promptly(make_app: Any) -> None:
    app = await make_app("client", progress_interval_seconds=5.0)
    got = threading.Event()
    delays: list[float] = []

    def on_progress(event: Event) -> None:
        if event.kind == "task.progress":
            got.set()

    app.ctx.events.subscribe(on_progress, "task.progress")

    def reporter(ctx: TaskContext) -> None:
        for i in range(5):
            got.clear()
            t = time.monotonic()
            ctx.progress(i, 5, f"step {i}")
            got.wait(2.0)
            delays.append(time.monotonic() - t)

    app.tasks.register("reporter", reporter)
    await app.tasks.start_workers()
    record = await finished(app, await app.tasks.submit("reporter"))
    assert record.state is TaskState.COMPLETED
    assert len(delays) == 5 and max(delays) < 0.2, delays


async def test_events_submitted_started_progress_finished_in_order(make_app: Any) -> None:
    app = await make_app("client", progress_interval_seconds=0.05)
    seen: list[Event] = []
    app.ctx.events.subscribe(seen.append, "task.")
    app.tasks.register("steps", lambda ctx: [ctx.progress(i, 3) for i in range(3)] and "x")
    await app.tasks.start_workers()
    task_id = await app.tasks.submit("steps")
    record = await finished(app, task_id)
    assert record.state is TaskState.COMPLETED
    kinds = [e.kind for e in seen if e.data["task_id"] == task_id]
    assert kinds == [
        "task.submitted",
        "task.started",
        "task.progress",
        "task.progress",
        "task.progress",
        "task.finished",
    ]
    last = [e for e in seen if e.data["task_id"] == task_id][-1]
    assert last.data["outcome"] == "completed" and last.data["state"] == "completed"
    assert last.data["record"].result == "x"
    # cancelling a pending task publishes its end too
    app2 = await make_app("client")
    seen2: list[Event] = []
    app2.ctx.events.subscribe(seen2.append, "task.")
    # a task only app2 knows: the first app's workers (woken by app2's commit) leave it
    app2.tasks.register("only_app2", lambda ctx: None)
    other = await app2.tasks.submit("only_app2")
    await app2.tasks.cancel(other)
    assert [(e.kind, e.data.get("outcome")) for e in seen2] == [
        ("task.submitted", None),
        ("task.finished", "cancelled"),
    ]
