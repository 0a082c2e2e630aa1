"""One fire per due time with several schedulers on one database (DESIGN.md §4).

Two service apps in one event loop share the database file; their fake clocks show the same
time. The forced-race test makes both schedulers read the schedule state before either fires
(a rendezvous in ``schedule_states``), so every due time is contended for real and the
compare-and-set decides: one fire, one "taken".
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sched_helpers import (
    START,
    AppFactory,
    all_finished,
    at,
    idle,
    schedule_tasks,
    step,
    tick_schedule,
)

from ucore.app import App
from ucore.stores.records import FireResult
from ucore.testing import FakeClock

DUE_TIMES = 10


def config(apps: AppFactory) -> Any:
    # first due time one interval after start: due times 60, 120, ... 600
    return apps.config({"tick": tick_schedule(initial_delay_seconds=60)})


def expected_times() -> list[Any]:
    return [at(60 * k) for k in range(1, DUE_TIMES + 1)]


def count_fires(app: App, results: Counter[str]) -> None:
    store = app.tasks.store
    original = store.fire_schedule

    async def fire_schedule(name: str, **kwargs: Any) -> FireResult:
        result = await original(name, **kwargs)
        if name == "tick":
            results["fired" if result.fired else (result.reason or "?")] += 1
        return result

    store.fire_schedule = fire_schedule  # type: ignore[method-assign]


async def test_two_schedulers_shared_clock_one_task_per_due_time(apps: AppFactory) -> None:
    clock = FakeClock(START)
    cfg = config(apps)
    app1 = await apps(cfg, clock)
    app2 = await apps(cfg, clock)
    await idle(clock, 2)
    results: Counter[str] = Counter()
    count_fires(app1, results)
    count_fires(app2, results)
    for _ in range(DUE_TIMES):
        await all_finished(app1)
        await step(clock, 60, sleepers=2)
    await all_finished(app1)
    tasks = await schedule_tasks(app1)
    assert [t.submitted_at for t in tasks] == expected_times()
    assert results["fired"] == DUE_TIMES
    assert await schedule_tasks(app2) == tasks


async def test_two_schedulers_own_clocks_one_task_per_due_time(apps: AppFactory) -> None:
    clock1, clock2 = FakeClock(START), FakeClock(START)
    cfg = config(apps)
    app1 = await apps(cfg, clock1)
    app2 = await apps(cfg, clock2)
    await idle(clock1)
    await idle(clock2)
    for _ in range(DUE_TIMES):
        await all_finished(app1)
        await asyncio.gather(clock1.advance(60), clock2.advance(60))
        await idle(clock1)
        await idle(clock2)
    await all_finished(app1)
    assert [t.submitted_at for t in await schedule_tasks(app2)] == expected_times()


async def test_forced_race_compare_and_set(apps: AppFactory) -> None:
    clock = FakeClock(START)
    cfg = config(apps)
    app1 = await apps(cfg, clock)
    app2 = await apps(cfg, clock)
    await idle(clock, 2)

    barrier = asyncio.Barrier(2)
    stuck: list[str] = []

    def rendezvous(app: App) -> None:
        # both schedulers decided on the same stored state: they meet right before their
        # compare-and-set writes, so every due time is contended
        store = app.tasks.store
        original = store.fire_schedule

        async def fire_schedule(*args: Any, **kwargs: Any) -> Any:
            if not stuck:
                try:
                    await asyncio.wait_for(barrier.wait(), 3)
                except (TimeoutError, asyncio.BrokenBarrierError):
                    stuck.append("the two schedulers did not meet")
            return await original(*args, **kwargs)

        store.fire_schedule = fire_schedule  # type: ignore[method-assign]

    results: Counter[str] = Counter()
    for app in (app1, app2):
        count_fires(app, results)
        rendezvous(app)
    for _ in range(DUE_TIMES):
        await all_finished(app1)
        await step(clock, 60, sleepers=2)
    await all_finished(app1)
    assert not stuck, stuck
    assert [t.submitted_at for t in await schedule_tasks(app1)] == expected_times()
    # every due time was contended: one process fired, the other found it taken
    assert results == Counter({"fired": DUE_TIMES, "taken": DUE_TIMES})
