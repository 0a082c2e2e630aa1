"""No overlap and run now (DESIGN.md §4).

* A due time that finds the schedule's previous task still pending or running is skipped, the
  skip recorded with that task's id; the schedule fires again once the task is over.
* Run now merges with an identical pending run (promoted to NORMAL), is refused with
  "already running: <id>" while another run is pending or running, and otherwise submits a
  NORMAL task of origin ``manual``.

A pending task is kept pending by ``tasks.workers: 1`` and a long NORMAL task in that slot.
"""

from __future__ import annotations

from typing import Any

import pytest
from sched_helpers import (
    START,
    AppFactory,
    all_finished,
    at,
    idle,
    schedule_tasks,
    step,
    tick_schedule,
    wait_state,
)

from ucore.app import App
from ucore.foundation.errors import NotFoundError
from ucore.foundation.events import Event
from ucore.scheduling.scheduler import ScheduleBusyError, UnknownScheduleError
from ucore.stores.records import Priority, TaskState
from ucore.testing import FakeClock

LONG = 3600.0  # a sleep task that runs until it is cancelled (or the app shuts down)


async def occupy_the_only_slot(app: App) -> int:
    blocker = await app.tasks.submit("sleep", {"seconds": LONG}, priority=Priority.NORMAL)
    await wait_state(app, blocker, TaskState.RUNNING)
    return blocker


def skip_events(app: App) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def on_event(event: Event) -> None:
        if event.kind == "schedule.skipped":
            seen.append(event.data)

    app.ctx.events.subscribe(on_event, "schedule.")
    return seen


# -- no overlap -------------------------------------------------------------------------
async def test_due_time_skipped_while_previous_task_pending(apps: AppFactory) -> None:
    config = apps.config({"tick": tick_schedule(initial_delay_seconds=10)}, tasks={"workers": 1})
    clock = FakeClock(START)
    app = await apps(config, clock)
    skips = skip_events(app)
    blocker = await occupy_the_only_slot(app)

    await step(clock, 10)
    [first] = await schedule_tasks(app)
    assert first.submitted_at == at(10) and first.state is TaskState.PENDING

    await step(clock, 60)  # due at 70: the task of 10 is still pending
    assert [t.id for t in await schedule_tasks(app)] == [first.id], "overlapping run submitted"
    state = (await app.tasks.store.schedule_states())["tick"]
    assert state.last_skip_at == at(70)
    assert state.last_skip_reason is not None and f"task {first.id}" in state.last_skip_reason
    assert "pending or running" in state.last_skip_reason
    assert state.last_fire == at(10), "a skip is not a fire"
    assert state.next_fire == at(130), "the skipped due time was not passed"
    assert skips == [{"name": "tick", "reason": state.last_skip_reason}]

    [status] = [s for s in await app.scheduler.status() if s.name == "tick"]
    assert status.last_skip_at == at(70) and status.last_skip_reason == state.last_skip_reason
    assert status.to_json()["last_skip"] == {
        "at": "2026-01-05T12:01:10Z",
        "reason": state.last_skip_reason,
    }
    assert status.last_run is not None and status.last_run.id == first.id

    await app.tasks.cancel(blocker)
    await wait_state(app, first.id, TaskState.COMPLETED)
    await step(clock, 60)  # 130: the previous run is over, so it fires again
    tasks = await schedule_tasks(app)
    assert [t.submitted_at for t in tasks] == [at(10), at(130)]


async def test_due_time_skipped_while_previous_task_running(apps: AppFactory) -> None:
    config = apps.config({"tick": tick_schedule(seconds=LONG)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await idle(clock)
    [first] = await schedule_tasks(app)
    await wait_state(app, first.id, TaskState.RUNNING)

    await step(clock, 60)
    await step(clock, 60)
    assert len(await schedule_tasks(app)) == 1
    state = (await app.tasks.store.schedule_states())["tick"]
    assert state.last_skip_at == at(120)
    assert state.last_skip_reason is not None and f"task {first.id}" in state.last_skip_reason

    await app.tasks.cancel(first.id)
    await wait_state(app, first.id, TaskState.CANCELLED)
    await step(clock, 60)
    tasks = await schedule_tasks(app)
    assert [t.submitted_at for t in tasks] == [START, at(180)]
    assert tasks[1].state in (TaskState.PENDING, TaskState.RUNNING)


# -- run now ----------------------------------------------------------------------------
async def test_run_now(apps: AppFactory) -> None:
    config = apps.config(
        {"tick": tick_schedule(seconds=LONG, initial_delay_seconds=10)}, tasks={"workers": 1}
    )
    clock = FakeClock(START)
    app = await apps(config, clock)
    sched = app.scheduler
    blocker = await occupy_the_only_slot(app)
    await step(clock, 10)
    [pending] = await schedule_tasks(app)
    assert pending.state is TaskState.PENDING and pending.priority is Priority.LOW

    # an identical pending run: merged, promoted to NORMAL, its id returned
    assert await sched.run_now("tick") == (pending.id, True)
    promoted = await app.tasks.get(pending.id)
    assert promoted.priority is Priority.NORMAL and promoted.state is TaskState.PENDING
    assert await sched.run_now("tick", {"seconds": LONG}) == (pending.id, True)
    assert len(await app.tasks.list_tasks(limit=100)) == 2  # the blocker and that one

    # other parameters while one is pending: refused
    with pytest.raises(ScheduleBusyError, match=f"^already running: {pending.id}$"):
        await sched.run_now("tick", {"seconds": 5})

    # while one is running: refused, identical parameters or not
    await app.tasks.cancel(blocker)
    await wait_state(app, pending.id, TaskState.RUNNING)
    with pytest.raises(ScheduleBusyError, match=f"^already running: {pending.id}$"):
        await sched.run_now("tick")
    with pytest.raises(ScheduleBusyError, match=f"^already running: {pending.id}$"):
        await sched.run_now("tick", {"seconds": 5})
    assert len(await app.tasks.list_tasks(limit=100)) == 2

    # none active: a new NORMAL task of origin "manual"
    await app.tasks.cancel(pending.id)
    await wait_state(app, pending.id, TaskState.CANCELLED)
    task_id, merged = await sched.run_now("tick", {"seconds": 0})
    assert merged is False and task_id not in (blocker, pending.id)
    manual = await app.tasks.get(task_id)
    assert manual.origin == "manual" and manual.priority is Priority.NORMAL
    assert manual.name == "sleep" and manual.params["seconds"] == 0
    assert manual.unique_key == "schedule:tick"
    await wait_state(app, task_id, TaskState.COMPLETED)

    # running by hand does not move the schedule's next fire time
    assert (await app.tasks.store.schedule_states())["tick"].next_fire == at(70)


async def test_run_now_refusals(apps: AppFactory) -> None:
    clock = FakeClock(START)
    ghost = {"ghost": {"task": "ghost_task", "interval_hours": 6}}
    app = await apps(apps.config(ghost), clock)
    await idle(clock)
    with pytest.raises(UnknownScheduleError, match="unknown schedule 'nope'"):
        await app.scheduler.run_now("nope")
    with pytest.raises(NotFoundError, match="not registered"):
        await app.scheduler.run_now("ghost")
    await all_finished(app)
