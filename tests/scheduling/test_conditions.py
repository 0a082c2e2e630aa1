"""Conditions (DESIGN.md §4, issue 6): on battery, CPU load, other tasks running.

Checked when the schedule is due; a failed condition skips the run, records the reason
(shown by status), and is checked again every 15 minutes until the next due time, when that
due time is skipped for good and the schedule continues. Battery and CPU come from a
FakeProbe; a "running library_scan" is a task put into the running state through the store.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sched_helpers import (
    DEFAULTS_OFF,
    START,
    AppFactory,
    FakeProbe,
    all_finished,
    at,
    finish_task,
    idle,
    quiet,
    running_task,
    schedule_tasks,
    step,
    tick_schedule,
    wait_until,
)

from ucore.app import App
from ucore.foundation.clock import iso
from ucore.scheduling.conditions import RECHECK_SECONDS
from ucore.stores.records import NewTask, Priority, TaskState
from ucore.testing import FakeClock

HOUR = 3600
FIRST = 60  # the first due time: START + initial delay


def hourly(**overrides: Any) -> dict[str, Any]:
    entry = tick_schedule(interval_seconds=HOUR, initial_delay_seconds=FIRST)
    entry.update(overrides)
    return entry


async def start(apps: AppFactory, probe: FakeProbe, **overrides: Any) -> tuple[App, FakeClock]:
    clock = FakeClock(START)
    app = await apps(apps.config({"tick": hourly(**overrides), **DEFAULTS_OFF}), clock)
    app.scheduler.probe = probe
    await idle(clock)
    assert await schedule_tasks(app) == []
    return app, clock


async def state(app: App) -> Any:
    return (await app.tasks.store.schedule_states())["tick"]


async def status_of(app: App) -> Any:
    return next(s for s in await app.scheduler.status() if s.name == "tick")


def test_recheck_is_fifteen_minutes() -> None:
    assert RECHECK_SECONDS == 15 * 60


async def test_on_battery_skipped_then_fires_at_the_recheck(apps: AppFactory) -> None:
    probe = FakeProbe(battery=True)
    app, clock = await start(apps, probe, not_on_battery=True)
    await step(clock, FIRST)
    await quiet(app, clock)
    assert await schedule_tasks(app) == []
    st = await state(app)
    assert st.last_skip_reason == "on battery" and st.last_skip_at == at(FIRST)
    assert st.next_fire == at(FIRST + RECHECK_SECONDS)
    assert st.nominal_next == at(FIRST)  # the due time itself is not given up yet
    status = await status_of(app)
    assert status.to_json()["last_skip"] == {"at": iso(at(FIRST)), "reason": "on battery"}
    assert status.next_run == at(FIRST + RECHECK_SECONDS)

    probe.battery = False  # plugged in
    await step(clock, RECHECK_SECONDS - 1)
    await quiet(app, clock)
    assert await schedule_tasks(app) == [], "checked again before 15 minutes"
    await step(clock, 1)
    await all_finished(app)
    tasks = await schedule_tasks(app)
    assert [t.submitted_at for t in tasks] == [at(FIRST + RECHECK_SECONDS)]
    assert tasks[0].state is TaskState.COMPLETED
    st = await state(app)
    # the schedule goes on from its due time, not from the late fire
    assert st.nominal_next == at(FIRST + HOUR) and st.next_fire == at(FIRST + HOUR)
    assert st.last_fire == at(FIRST + RECHECK_SECONDS)


async def test_on_battery_until_the_next_due_time(apps: AppFactory) -> None:
    """Still on battery at every recheck: that due time is skipped for good, the schedule
    continues with the next one (checked again there), each skip recorded."""
    probe = FakeProbe(battery=True)
    app, clock = await start(apps, probe, not_on_battery=True)
    await step(clock, FIRST)
    skips = []
    for _ in range(3):  # rechecks at +15, +30, +45 min
        await step(clock, RECHECK_SECONDS)
        st = await state(app)
        skips.append(st.last_skip_at)
        assert st.last_skip_reason == "on battery"
    assert skips == [at(FIRST + RECHECK_SECONDS * k) for k in range(1, 4)]
    # the last recheck (at +45 min) gave the due time up: next is the following due time
    st = await state(app)
    assert st.nominal_next == at(FIRST + HOUR) and st.next_fire == at(FIRST + HOUR)
    await step(clock, RECHECK_SECONDS)  # the next due time, still on battery
    st = await state(app)
    assert st.last_skip_at == at(FIRST + HOUR)
    assert st.next_fire == at(FIRST + HOUR + RECHECK_SECONDS)
    assert await schedule_tasks(app) == []
    probe.battery = False
    await step(clock, RECHECK_SECONDS)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [
        at(FIRST + HOUR + RECHECK_SECONDS)
    ]
    st = await state(app)
    assert st.nominal_next == at(FIRST + 2 * HOUR)


async def test_recheck_outside_the_window_waits_for_the_next_window(apps: AppFactory) -> None:
    """Window 12:00–12:20 UTC, due 12:00 on battery: rechecked at 12:15 (inside); the next
    recheck would be 12:30, outside the window: the run waits for the next window instead of
    firing outside it."""
    clock = FakeClock(at(-60))
    probe = FakeProbe(battery=True)
    cfg = apps.config(
        {
            **DEFAULTS_OFF,
            "tick": tick_schedule(
                interval_seconds=24 * HOUR,
                initial_delay_seconds=60,
                window={"start": "12:00", "end": "12:20"},
                timezone="UTC",
                not_on_battery=True,
            ),
        }
    )
    app = await apps(cfg, clock)
    app.scheduler.probe = probe
    await step(clock, 60)  # 12:00
    assert (await state(app)).next_fire == at(RECHECK_SECONDS)
    await step(clock, RECHECK_SECONDS)  # 12:15, still on battery
    st = await state(app)
    assert st.last_skip_at == at(RECHECK_SECONDS) and st.last_skip_reason == "on battery"
    assert at(24 * HOUR) <= st.next_fire < at(24 * HOUR + 1200), st.next_fire
    probe.battery = False
    await step(clock, RECHECK_SECONDS)  # 12:30: outside the window
    await quiet(app, clock)
    assert await schedule_tasks(app) == [], "fired outside its window"
    await clock.advance_to(st.next_fire)
    await idle(clock)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [st.next_fire]


async def test_not_on_battery_off_ignores_the_battery(apps: AppFactory) -> None:
    app, clock = await start(apps, FakeProbe(battery=True))
    await step(clock, FIRST)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(FIRST)]


async def test_cpu_above_then_below(apps: AppFactory) -> None:
    probe = FakeProbe(cpu=90.0)
    app, clock = await start(apps, probe, max_cpu_percent=70)
    await step(clock, FIRST)
    await quiet(app, clock)
    assert await schedule_tasks(app) == []
    assert probe.cpu_reads == 1
    st = await state(app)
    assert st.last_skip_reason == "CPU load 90% above 70%"
    assert st.next_fire == at(FIRST + RECHECK_SECONDS)
    status = await status_of(app)
    assert status.last_skip_reason == "CPU load 90% above 70%"
    probe.cpu = 70.0  # not above
    await step(clock, RECHECK_SECONDS)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(FIRST + RECHECK_SECONDS)]


async def test_cpu_below_fires_at_once(apps: AppFactory) -> None:
    probe = FakeProbe(cpu=12.5)
    app, clock = await start(apps, probe, max_cpu_percent=70)
    await step(clock, FIRST)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(FIRST)]
    assert probe.cpu_reads == 1
    assert (await state(app)).last_skip_reason is None


async def test_not_while_library_scan_runs(apps: AppFactory) -> None:
    probe = FakeProbe()
    app, clock = await start(apps, probe, not_while=["library_scan"])
    scan_id, run_id = await running_task(app, "library_scan")
    await step(clock, FIRST)
    await quiet(app, clock, ignore=frozenset({scan_id}))
    assert await schedule_tasks(app) == []
    reason = f"not while library_scan runs (task {scan_id})"
    st = await state(app)
    assert st.last_skip_reason == reason and st.last_skip_at == at(FIRST)
    assert st.next_fire == at(FIRST + RECHECK_SECONDS)
    assert (await status_of(app)).to_json()["last_skip"]["reason"] == reason

    await finish_task(app, scan_id, run_id)
    await step(clock, RECHECK_SECONDS)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(FIRST + RECHECK_SECONDS)]


async def test_not_while_ignores_pending_and_other_names(apps: AppFactory) -> None:
    """Only a *running* task of a named kind blocks: neither a running task of another name
    nor a pending one of that name."""
    app, clock = await start(apps, FakeProbe(), not_while=["library_scan"])
    await running_task(app, "thumbnails_generate")
    await app.tasks.store.insert_task(
        NewTask(
            name="library_scan",
            params={},
            priority=Priority.NORMAL,
            origin="api",
            submitted_at=START,
            not_before=START + timedelta(days=365),
        )
    )
    await step(clock, FIRST)
    tasks = await wait_until(lambda: schedule_tasks(app), what="the tick task")
    assert [t.submitted_at for t in tasks] == [at(FIRST)]
    assert (await state(app)).last_skip_reason is None


async def test_database_optimization_ships_not_while_library_scan(apps: AppFactory) -> None:
    clock = FakeClock(START)
    app = await apps(apps.config(), clock)
    assert app.scheduler.schedules["database_optimization"].not_while == ("library_scan",)
