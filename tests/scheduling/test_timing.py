"""When schedules fire (DESIGN.md §4): counted from the last fire, restarts continue from the
stored times, never-fired schedules wait for the initial delay, missed runs fire once; the
six defaults are turned off here and a schedule of an unregistered task never fires; run_at_startup,
stored jitter, and a trigger changed between two starts.

Every test drives time with a FakeClock; apps are restarted on the same database by shutting
one down and bootstrapping another with a clock set later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sched_helpers import (
    DEFAULT_NAMES,
    DEFAULTS_OFF,
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

from ucore.stores.records import Priority, TaskState
from ucore.testing import FakeClock


async def test_fires_at_start_then_every_interval_counted_from_the_last_fire(
    apps: AppFactory,
) -> None:
    clock = FakeClock(START)
    app = await apps(apps.config(), clock)
    await idle(clock)
    first = await schedule_tasks(app)
    assert [t.submitted_at for t in first] == [START]
    task = first[0]
    assert task.name == "sleep" and task.priority is Priority.LOW
    assert task.origin == "schedule:tick"
    assert task.params["seconds"] == 0 and task.params["fail"] is False

    state = (await app.tasks.store.schedule_states())["tick"]
    assert state.last_fire == START and state.next_fire == at(60)
    assert state.last_task_id == task.id

    await fire_step(app, clock, 59.999)
    assert len(await schedule_tasks(app)) == 1, "fired before the interval was over"
    await fire_step(app, clock, 0.001)
    await fire_step(app, clock, 60)
    await all_finished(app)
    tasks = await schedule_tasks(app)
    assert [t.submitted_at for t in tasks] == [START, at(60), at(120)]
    assert all(t.state is TaskState.COMPLETED for t in tasks)
    assert (await app.tasks.store.schedule_states())["tick"].next_fire == at(180)


async def test_late_wakeup_does_not_drift(apps: AppFactory) -> None:
    """The loop woke 20 s late (the wall clock jumped while it slept, as after a suspend): it
    fires then, and the next due time still counts from the due time, not the late wake-up."""
    clock = FakeClock(START)
    app = await apps(apps.config(), clock)
    await idle(clock)
    await all_finished(app)
    clock.jump_wall(20)
    await step(clock, 60)  # the sleeper's deadline: wall time START + 80
    assert clock.now() == at(80)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [START, at(80)]
    assert (await app.tasks.store.schedule_states())["tick"].next_fire == at(120)


async def test_restart_continues_from_the_stored_times(apps: AppFactory) -> None:
    clock = FakeClock(START)
    app = await apps(apps.config(), clock)
    await idle(clock)
    await fire_step(app, clock, 60)  # fires at START and START+60
    await all_finished(app)
    await app.shutdown()

    # a new process 100 s later: between the last fire (60) and the next due time (120)
    clock2 = FakeClock(at(100))
    app2 = await apps(apps.config(), clock2)
    await idle(clock2)
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [START, at(60)], (
        "a restart must not fire at start when the stored next time is ahead"
    )
    assert (await app2.tasks.store.schedule_states())["tick"].next_fire == at(120)
    await fire_step(app2, clock2, 19.9)
    assert len(await schedule_tasks(app2)) == 2
    await fire_step(app2, clock2, 0.1)  # at 120: the stored time, not 100 + 60
    await fire_step(app2, clock2, 60)
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [
        START,
        at(60),
        at(120),
        at(180),
    ]


async def test_never_fired_schedule_waits_for_the_initial_delay(apps: AppFactory) -> None:
    config = apps.config({"tick": tick_schedule(interval_seconds=3600, initial_delay_seconds=300)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await idle(clock)
    state = (await app.tasks.store.schedule_states())["tick"]
    assert state.last_fire is None and state.next_fire == at(300)
    assert [s.next_run for s in await app.scheduler.status() if s.name == "tick"] == [at(300)]

    await step(clock, 299)
    assert await schedule_tasks(app) == [], "fired before the initial delay was over"
    await step(clock, 1)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(300)]
    await fire_step(app, clock, 3599)
    assert len(await schedule_tasks(app)) == 1
    await fire_step(app, clock, 1)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [at(300), at(3900)]


async def test_initial_delay_applies_after_every_process_start(apps: AppFactory) -> None:
    """A stored next time earlier than start + initial delay waits for the delay."""
    config = apps.config({"tick": tick_schedule(initial_delay_seconds=30)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await step(clock, 30)
    await all_finished(app)
    await app.shutdown()  # fired at 30; next due at 90

    clock2 = FakeClock(at(80))
    app2 = await apps(config, clock2)
    await step(clock2, 10)  # 90: due by the stored time, but only 10 s after start
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [at(30)]
    await step(clock2, 19.5)
    assert len(await schedule_tasks(app2)) == 1
    await step(clock2, 0.5)  # start + 30
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [at(30), at(110)]


async def test_missed_runs_fire_once_at_start_then_continue(apps: AppFactory) -> None:
    config = apps.config({"tick": tick_schedule(initial_delay_seconds=30)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await step(clock, 30)  # first fire at 30, next due 90
    await all_finished(app)
    await app.shutdown()

    # ten intervals later (and a bit): the stored next time (90) is long past
    restart = at(30 + 10 * 60 + 17)
    clock2 = FakeClock(restart)
    app2 = await apps(config, clock2)
    await idle(clock2)
    assert len(await schedule_tasks(app2)) == 1, "a missed run fired before the initial delay"
    await step(clock2, 29)
    assert len(await schedule_tasks(app2)) == 1
    await step(clock2, 1)
    catch_up = restart + timedelta(seconds=30)
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [at(30), catch_up]
    state = (await app2.tasks.store.schedule_states())["tick"]
    assert state.last_fire == catch_up
    assert state.next_fire == catch_up + timedelta(seconds=60), "not continued from the fire"

    await fire_step(app2, clock2, 59)
    assert len(await schedule_tasks(app2)) == 2, "a burst of catch-up runs"
    await fire_step(app2, clock2, 1)
    await fire_step(app2, clock2, 60)
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [
        at(30),
        catch_up,
        catch_up + timedelta(seconds=60),
        catch_up + timedelta(seconds=120),
    ]


async def test_schedule_of_an_unregistered_task_exists_but_never_fires(apps: AppFactory) -> None:
    clock = FakeClock(START)
    schedules = {
        **DEFAULTS_OFF,
        "tick": tick_schedule(),
        "ghost": {"task": "ghost_task", "interval_hours": 6},
    }
    app = await apps(apps.config(schedules), clock)
    await idle(clock)
    statuses = {s.name: s for s in await app.scheduler.status()}
    assert set(statuses) == {*DEFAULT_NAMES, "tick", "ghost"}
    assert statuses["ghost"].registered is False
    assert statuses["ghost"].enabled is True
    assert statuses["tick"].registered is True

    # a week and a bit in 6-hour steps: the ghost's due time passes every step
    for _ in range(7 * 4 + 1):
        await all_finished(app)
        await step(clock, 6 * 3600)
    await all_finished(app, within=10)
    every = await app.tasks.list_tasks(limit=10_000)
    assert {t.origin for t in every} == {"schedule:tick"}, "the ghost schedule fired"
    assert {t.name for t in every} == {"sleep"}

    state = (await app.tasks.store.schedule_states())["ghost"]
    assert state.last_fire is None and state.last_task_id is None
    assert state.last_skip_reason == "task 'ghost_task' is not registered"
    assert state.next_fire is not None and state.next_fire > clock.now()
    status = {s.name: s for s in await app.scheduler.status()}
    assert status["ghost"].last_skip_at is not None
    assert status["ghost"].last_run is None


async def test_cron_schedule_started_inside_repeated_hour_waits_for_its_time(
    apps: AppFactory,
) -> None:
    """A cron time is a wall-clock promise: a 02:30 job started at 02:10 CET on the night
    clocks go back (after the 02:30 CEST run) does not fire at start."""
    config = apps.config(
        {"nightly": {"task": "sleep", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}}
    )
    start = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET
    clock = FakeClock(start)
    app = await apps(config, clock)
    await idle(clock)
    assert await schedule_tasks(app, "nightly") == []
    nxt = (await app.tasks.store.schedule_states())["nightly"].next_fire
    assert nxt == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    await step(clock, (nxt - start).total_seconds())
    assert [t.submitted_at for t in await schedule_tasks(app, "nightly")] == [nxt]


async def test_run_at_startup_fires_once_per_process_start(apps: AppFactory) -> None:
    config = apps.config({"tick": tick_schedule(interval_seconds=3600, run_at_startup=True)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await idle(clock)
    await all_finished(app)
    await step(clock, 100)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [START]
    await app.shutdown()

    clock2 = FakeClock(at(200))
    app2 = await apps(config, clock2)
    await idle(clock2)
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [START, at(200)]
    # the startup run keeps the stored times: the regular run is still due at 3600
    assert (await app2.tasks.store.schedule_states())["tick"].next_fire == at(3600)
    await fire_step(app2, clock2, 3399)
    assert len(await schedule_tasks(app2)) == 2
    await fire_step(app2, clock2, 1)
    await fire_step(app2, clock2, 3600)
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [
        START,
        at(200),
        at(3600),
        at(7200),
    ]


async def test_jitter_is_stored_and_does_not_drift(apps: AppFactory) -> None:
    config = apps.config({"tick": tick_schedule(interval_seconds=600, jitter_seconds=300)})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await idle(clock)
    fire_times = []
    for k in range(4):
        state = (await app.tasks.store.schedule_states())["tick"]
        assert state.nominal_next == at(600 * k)
        assert at(600 * k) <= state.next_fire <= at(600 * k + 300)
        assert state.next_fire is not None
        fire_times.append(state.next_fire)
        before = (state.next_fire - clock.now()).total_seconds()
        if before > 0.001:
            await fire_step(app, clock, before - 0.001)
            assert len(await schedule_tasks(app)) == k, "fired before its jittered time"
            await fire_step(app, clock, 0.001)
        assert len(await schedule_tasks(app)) == k + 1
        await all_finished(app)
        # on to just past the next nominal time (the fire time of k+1 lies after it)
        await step(clock, (at(600 * (k + 1)) - clock.now()).total_seconds())
    assert [t.submitted_at for t in await schedule_tasks(app)] == fire_times


async def test_changed_trigger_counts_from_the_last_fire(apps: AppFactory) -> None:
    clock = FakeClock(START)
    app = await apps(apps.config(), clock)
    await idle(clock)
    await all_finished(app)
    await app.shutdown()  # fired at START; next due at 60 by the old trigger

    hourly = apps.config({"tick": tick_schedule(interval_seconds=3600)})
    clock2 = FakeClock(at(100))
    app2 = await apps(hourly, clock2)
    await idle(clock2)
    assert len(await schedule_tasks(app2)) == 1, "the old due time (60) fired"
    assert (await app2.tasks.store.schedule_states())["tick"].next_fire == at(3600)
    await fire_step(app2, clock2, 3500)
    assert [t.submitted_at for t in await schedule_tasks(app2)] == [START, at(3600)]
