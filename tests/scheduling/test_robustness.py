"""A failing store or task never stops the scheduler; shutdown is clean (DESIGN.md §4).

The store failure is injected into ``fire_schedule``; the retry waits on the FakeClock
(1 s, 2 s, 4 s …), so the test moves the clock by exactly the backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from sched_helpers import (
    START,
    AppFactory,
    all_finished,
    at,
    fire_step,
    idle,
    schedule_tasks,
    step,
    tick_schedule,
)

from ucore.scheduling.scheduler import PeriodicTaskScheduler
from ucore.stores.records import FireResult, TaskState
from ucore.testing import FakeClock


class FlakyFire:
    """Wraps ``store.fire_schedule``: the first ``failures`` calls raise."""

    def __init__(self, original: Any, failures: int) -> None:
        self.original = original
        self.failures = failures
        self.calls: list[Any] = []

    async def __call__(self, name: str, **kwargs: Any) -> FireResult:
        self.calls.append(kwargs["now"])
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"database is locked (injected #{len(self.calls)})")
        result: FireResult = await self.original(name, **kwargs)
        return result


def scheduler_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ucore.scheduler" and r.levelno >= logging.ERROR
    ]


async def test_store_failure_is_logged_and_retried_with_backoff(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.scheduler")
    config = apps.config({"tick": tick_schedule(initial_delay_seconds=10)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await idle(clock)
    flaky = FlakyFire(app.tasks.store.fire_schedule, failures=1)
    monkeypatch.setattr(app.tasks.store, "fire_schedule", flaky)

    await step(clock, 10)
    assert flaky.calls == [at(10)]
    assert await schedule_tasks(app) == []
    assert scheduler_errors(caplog) == [
        "scheduler: database is locked (injected #1); retrying in 1 s"
    ]
    await step(clock, 0.999)
    assert len(flaky.calls) == 1, "retried before the backoff was over"
    await step(clock, 0.001)
    assert flaky.calls == [at(10), at(11)]
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(11)]
    # the next due time still counts from the due time (10), not from the retry
    assert (await app.tasks.store.schedule_states())["tick"].next_fire == at(70)

    await fire_step(app, clock, 59)
    await fire_step(app, clock, 60)
    await all_finished(app)
    tasks = await schedule_tasks(app)
    assert [t.submitted_at for t in tasks] == [at(11), at(70), at(130)]
    assert all(t.state is TaskState.COMPLETED for t in tasks)
    assert len(scheduler_errors(caplog)) == 1


async def test_backoff_doubles_and_resets(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.scheduler")
    config = apps.config({"tick": tick_schedule(initial_delay_seconds=10)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await idle(clock)
    flaky = FlakyFire(app.tasks.store.fire_schedule, failures=3)
    monkeypatch.setattr(app.tasks.store, "fire_schedule", flaky)

    await step(clock, 10)  # fails; retry in 1
    await step(clock, 1)  # fails; retry in 2
    await step(clock, 1.5)
    assert len(flaky.calls) == 2
    await step(clock, 0.5)  # fails; retry in 4
    await step(clock, 3.9)
    assert len(flaky.calls) == 3
    await step(clock, 0.1)  # succeeds
    assert flaky.calls == [at(10), at(11), at(13), at(17)]
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(17)]
    assert [m.rsplit("retrying in ", 1)[1] for m in scheduler_errors(caplog)] == [
        "1 s",
        "2 s",
        "4 s",
    ]

    # after a success the backoff starts again at 1 s
    flaky.failures = len(flaky.calls) + 1
    await fire_step(app, clock, 70 - 17)
    assert scheduler_errors(caplog)[-1].endswith("retrying in 1 s")
    await step(clock, 1)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(17), at(71)]


async def test_failing_task_does_not_stop_the_scheduler(apps: AppFactory) -> None:
    config = apps.config({"tick": tick_schedule(fail=True)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await idle(clock)
    for _ in range(3):
        await fire_step(app, clock, 60)
    await all_finished(app)
    tasks = await schedule_tasks(app)
    assert [t.submitted_at for t in tasks] == [START, at(60), at(120), at(180)]
    assert all(t.state is TaskState.FAILED for t in tasks)
    assert all("failed on purpose" in (t.error or "") for t in tasks)
    [status] = [s for s in await app.scheduler.status() if s.name == "tick"]
    assert status.last_run is not None and status.last_run.id == tasks[-1].id
    assert status.last_run.state is TaskState.FAILED
    assert status.next_run == at(240)


def scheduler_tasks(sched: PeriodicTaskScheduler, clock: FakeClock) -> list[asyncio.Task[Any]]:
    """Pending asyncio tasks that belong to the scheduler: its loop and its waits."""
    found = []
    for task in asyncio.all_tasks():
        if task.done():
            continue
        coro: Any = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        owner = frame.f_locals.get("self") if frame is not None else None
        owners = (sched, clock, getattr(sched, "_changed", None))
        if task.get_name() == "ucore-scheduler" or any(owner is o for o in owners):
            found.append(task)
    return found


async def test_shutdown_cancels_the_loop_quickly_and_cleanly(apps: AppFactory) -> None:
    clock = FakeClock(START)
    app = await apps(apps.config(), clock)
    sched = app.scheduler
    await idle(clock)
    assert len(scheduler_tasks(sched, clock)) >= 2  # the loop, and its waits
    assert clock.sleepers == 1

    began = time.monotonic()
    await sched.shutdown()
    assert time.monotonic() - began < 0.5
    assert scheduler_tasks(sched, clock) == []
    assert clock.sleepers == 0

    # no fire after shutdown
    await all_finished(app)
    before = len(await schedule_tasks(app))
    await clock.advance(600)
    await asyncio.sleep(0.05)
    assert len(await schedule_tasks(app)) == before
    await sched.shutdown()  # a second shutdown is harmless

    began = time.monotonic()
    await app.shutdown()
    assert time.monotonic() - began < 2


async def test_app_shutdown_while_a_fire_is_in_flight(apps: AppFactory) -> None:
    """Shutdown while the loop is inside tick (a slow store call) still ends cleanly."""
    clock = FakeClock(START)
    app = await apps(apps.config({"tick": tick_schedule(initial_delay_seconds=10)}), clock)
    await idle(clock)
    store = app.tasks.store
    original = store.fire_schedule
    entered = asyncio.Event()

    async def slow_fire(name: str, **kwargs: Any) -> FireResult:
        entered.set()
        await asyncio.sleep(30)
        result: FireResult = await original(name, **kwargs)
        return result

    store.fire_schedule = slow_fire  # type: ignore[method-assign]
    await clock.advance(10)
    await asyncio.wait_for(entered.wait(), 5)
    began = time.monotonic()
    await app.shutdown()
    assert time.monotonic() - began < 2
    assert scheduler_tasks(app.scheduler, clock) == []
