"""Timeouts and retries (DESIGN.md §3): timed_out is its own outcome; failures are retried."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

import pytest
from task_helpers import finished, outcomes, runs_of

from ucore.stores.records import TaskState
from ucore.tasks import TaskContext


async def test_timeout_of_a_cooperative_sync_handler(make_app: Any) -> None:
    app = await make_app("client")
    stopped: list[str | None] = []

    def slow(ctx: TaskContext) -> None:
        try:
            ctx.wait(5)
        finally:
            stopped.append(ctx.stop_reason)

    app.tasks.register("slow", slow, timeout=0.2)
    await app.tasks.start_workers()
    t0 = time.monotonic()
    record = await finished(app, await app.tasks.submit("slow"))
    took = time.monotonic() - t0
    assert record.state is TaskState.TIMED_OUT
    assert record.error == "timed out after 0.2 s"
    assert record.failures == 1
    assert 0.2 <= took < 1.0, took
    assert stopped == ["timeout"]
    assert await outcomes(app, record.id) == ["timed_out"]


async def test_timeout_of_an_async_handler(make_app: Any) -> None:
    app = await make_app("client")

    async def slow(ctx: TaskContext) -> None:
        await asyncio.sleep(5)

    app.tasks.register("slow", slow, timeout=0.2)
    await app.tasks.start_workers()
    record = await finished(app, await app.tasks.submit("slow"))
    assert record.state is TaskState.TIMED_OUT
    assert await outcomes(app, record.id) == ["timed_out"]


async def test_timeout_and_cancel_are_different_outcomes(make_app: Any) -> None:
    app = await make_app("client", workers=2)
    app.tasks.register("slow", lambda ctx: ctx.wait(5), timeout=0.3)
    await app.tasks.start_workers()
    timed = await app.tasks.submit("slow")
    cancelled = await app.tasks.submit("slow")
    await asyncio.sleep(0.1)
    await app.tasks.cancel(cancelled)
    r_cancel, r_timed = await finished(app, cancelled), await finished(app, timed)
    assert (r_cancel.state, r_timed.state) == (TaskState.CANCELLED, TaskState.TIMED_OUT)
    assert r_cancel.failures == 0 and r_timed.failures == 1
    assert await outcomes(app, cancelled) == ["cancelled"]
    assert await outcomes(app, timed) == ["timed_out"]


async def test_failures_are_retried_until_success(make_app: Any) -> None:
    app = await make_app("client")
    attempts: list[int] = []

    def flaky(ctx: TaskContext) -> dict[str, int]:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"failure {ctx.attempt}")
        return {"attempt": ctx.attempt}

    app.tasks.register("flaky", flaky, max_attempts=3, retry_backoff=0.05)
    await app.tasks.start_workers()
    t0 = time.monotonic()
    task_id = await app.tasks.submit("flaky")
    assert (await app.tasks.get(task_id)).max_attempts == 3
    record = await finished(app, task_id)
    took = time.monotonic() - t0
    assert record.state is TaskState.COMPLETED
    assert record.result == {"attempt": 3}
    assert (record.attempts, record.failures, record.interruptions) == (3, 2, 0)
    assert record.error is None and record.traceback is None
    assert attempts == [1, 2, 3]
    runs = await runs_of(app, task_id)
    assert [r.outcome.value if r.outcome else None for r in runs] == [
        "failed",
        "failed",
        "completed",
    ]
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert [r.error for r in runs] == ["RuntimeError: failure 1", "RuntimeError: failure 2", None]
    # the backoff (0.05 s, then 0.1 s) is waited, not a 1 s poll
    assert runs[1].started_at >= runs[0].finished_at  # type: ignore[operator]
    gap = (runs[2].started_at - runs[1].finished_at).total_seconds()  # type: ignore[operator]
    assert 0.09 <= gap < 0.6, gap
    assert took < 1.5


async def test_retries_exhausted_fail_and_timeouts_count_as_failures(make_app: Any) -> None:
    app = await make_app("client")
    app.tasks.register("always", lambda ctx: 1 / 0, max_attempts=2, retry_backoff=0.05)
    app.tasks.register(
        "slow", lambda ctx: ctx.wait(5), timeout=0.1, max_attempts=2, retry_backoff=0.05
    )
    await app.tasks.start_workers()
    failing = await finished(app, await app.tasks.submit("always"))
    assert failing.state is TaskState.FAILED and failing.failures == 2
    assert failing.error == "ZeroDivisionError: division by zero"
    assert await outcomes(app, failing.id) == ["failed", "failed"]
    slow = await finished(app, await app.tasks.submit("slow"))
    assert slow.state is TaskState.TIMED_OUT and slow.failures == 2
    assert await outcomes(app, slow.id) == ["timed_out", "timed_out"]


async def test_an_abandoned_handler_leaves_no_unretrieved_exception(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The handler's own TaskCancelled, after its timeout, is not this attempt's result; it
    # must not surface as asyncio's "exception was never retrieved" when collected (such a
    # log formats a traceback from a finalizer, at any point of the program).
    app = await make_app("client")
    app.tasks.register("slow", lambda ctx: ctx.wait(5), timeout=0.1)
    await app.tasks.start_workers()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        record = await finished(app, await app.tasks.submit("slow"))
        await app.shutdown()
        gc.collect()
    assert record.state is TaskState.TIMED_OUT
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_an_async_handler_ignoring_its_timeout_is_abandoned(make_app: Any) -> None:
    # It swallows the cancellation: after the grace its attempt is recorded timed out, its
    # slot is free for the next task, and what it returns at last changes nothing.
    app = await make_app("client", workers=1)
    release = asyncio.Event()
    returned: list[str] = []

    async def stubborn(ctx: TaskContext) -> dict[str, bool]:
        while not release.is_set():
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                continue
        returned.append("late")
        return {"late": True}

    app.tasks.register("stubborn", stubborn, timeout=0.2)
    app.tasks.register("quick", lambda ctx: {"ok": True})
    await app.tasks.start_workers()
    t0 = time.monotonic()
    stubborn_id = await app.tasks.submit("stubborn")
    quick_id = await app.tasks.submit("quick")
    record = await finished(app, stubborn_id)
    took = time.monotonic() - t0
    assert record.state is TaskState.TIMED_OUT
    assert record.error == "timed out after 0.2 s"
    assert 0.2 + 1.0 <= took < 3.0, took  # the timeout, then the grace (1 s)
    assert (await finished(app, quick_id)).result == {"ok": True}
    release.set()
    for _ in range(50):
        if returned:
            break
        await asyncio.sleep(0.02)
    assert returned == ["late"]
    await asyncio.sleep(0.1)
    again = await app.tasks.get(stubborn_id)
    assert (again.state, again.result) == (TaskState.TIMED_OUT, None)
    assert await outcomes(app, stubborn_id) == ["timed_out"]
    assert app.tasks.pool is not None and stubborn_id not in app.tasks.pool.running
