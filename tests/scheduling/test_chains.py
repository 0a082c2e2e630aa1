"""Chains: ``after: [names]`` (DESIGN.md §4, issue 6).

* A schedule without a timer of its own fires when every named schedule has completed
  successfully since its own last fire (not when only one did, not when one failed).
* A schedule with a timer, due while a predecessor's run is pending or running, is held (the
  wait recorded as its last skip) and fires right after that run ends: the scheduler is woken
  by the task.finished event, the fake clock does not move.
* Unknown names and cycles are config errors naming the key.
"""

from __future__ import annotations

from typing import Any

import pytest
from sched_helpers import (
    DEFAULTS_OFF,
    START,
    AppFactory,
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
from ucore.foundation.config import parse_config
from ucore.foundation.errors import ConfigError
from ucore.stores.records import TaskState
from ucore.testing import FakeClock


def chained(*after: str, **overrides: Any) -> dict[str, Any]:
    """A schedule without a timer of its own: a zero-second sleep after ``after``."""
    return {"task": "sleep", "seconds": 0, "after": list(after), **overrides}


async def count(app: App, name: str, expected: int) -> list[Any]:
    """Until schedule ``name`` has ``expected`` tasks, every one finished."""

    async def check() -> list[Any] | None:
        found = await schedule_tasks(app, name)
        return found if len(found) == expected and all(t.state.finished for t in found) else None

    return await wait_until(check, within=3, what=f"{expected} finished task(s) of {name}")  # type: ignore[no-any-return]


async def test_fires_when_both_completed_and_again_only_when_both_did(
    apps: AppFactory,
) -> None:
    """a every minute, b every 5 minutes, c after both: c fires at 60 (a and b both ran),
    not at 120–300 (only a ran), again at 360."""
    clock = FakeClock(START)
    cfg = apps.config(
        {
            **DEFAULTS_OFF,
            "a": tick_schedule(initial_delay_seconds=60),
            "b": tick_schedule(interval_seconds=300, initial_delay_seconds=60),
            "c": chained("a", "b"),
        }
    )
    app = await apps(cfg, clock)
    await quiet(app, clock)
    assert await schedule_tasks(app, "c") == []
    assert not app.scheduler.schedules["c"].has_timer

    await step(clock, 60)
    (first,) = await count(app, "c", 1)
    a_tasks, b_tasks = await schedule_tasks(app, "a"), await schedule_tasks(app, "b")
    assert first.submitted_at == at(60) and first.state is TaskState.COMPLETED
    assert first.id > max(a_tasks[0].id, b_tasks[0].id)
    a_done, b_done = a_tasks[0].finished_at, b_tasks[0].finished_at
    assert a_done is not None and b_done is not None
    assert first.submitted_at >= max(a_done, b_done)
    assert first.params["seconds"] == 0 and first.origin == "schedule:c"
    assert (await app.tasks.store.schedule_states())["c"].last_fire == at(60)

    for k in range(2, 6):  # 120 … 300: only a runs
        await step(clock, 60)
        await quiet(app, clock)
        assert len(await schedule_tasks(app, "a")) == k
        assert len(await schedule_tasks(app, "b")) == 1
        assert len(await schedule_tasks(app, "c")) == 1, f"c fired at {60 * k} after a alone"

    await step(clock, 60)  # 360: a and b
    tasks = await count(app, "c", 2)
    assert tasks[1].submitted_at == at(360)
    await quiet(app, clock)
    assert len(await schedule_tasks(app, "c")) == 2, "fired more than once for one round"


async def test_not_when_a_predecessor_failed(apps: AppFactory) -> None:
    clock = FakeClock(START)
    cfg = apps.config(
        {
            **DEFAULTS_OFF,
            "a": tick_schedule(initial_delay_seconds=60),
            "b": tick_schedule(initial_delay_seconds=60, fail=True),
            "c": chained("a", "b"),
        }
    )
    app = await apps(cfg, clock)
    for _ in range(3):
        await step(clock, 60)
        await quiet(app, clock)
    assert [t.state for t in await schedule_tasks(app, "b")] == [TaskState.FAILED] * 3
    assert [t.state for t in await schedule_tasks(app, "a")] == [TaskState.COMPLETED] * 3
    assert await schedule_tasks(app, "c") == []
    status = next(s for s in await app.scheduler.status() if s.name == "c")
    assert status.next_run is None and status.last_run is None


async def test_timed_schedule_waits_for_a_running_predecessor(apps: AppFactory) -> None:
    """y (every minute, after x) is due at 60 while x's run still runs (1.2 s of real time):
    held with "waiting for x (task N)" (recorded once, however often it looks again while x
    runs), then fired at 60 as soon as x ends."""
    clock = FakeClock(START)
    cfg = apps.config(
        {
            **DEFAULTS_OFF,
            "x": tick_schedule(interval_seconds=3600, seconds=1.2),
            "y": tick_schedule(initial_delay_seconds=60, after=["x"]),
        }
    )
    app = await apps(cfg, clock)
    await idle(clock)
    (x_task,) = await schedule_tasks(app, "x")
    assert x_task.submitted_at == START
    skips: list[str] = []
    record = app.tasks.store.record_schedule_skip

    async def record_skip(name: str, when: Any, reason: str) -> None:
        skips.append(f"{name}: {reason}")
        await record(name, when, reason)

    app.tasks.store.record_schedule_skip = record_skip  # type: ignore[method-assign]
    await clock.advance(60)
    await idle(clock)
    state = (await app.tasks.store.schedule_states())["y"]
    assert (await app.tasks.get(x_task.id)).state in (TaskState.PENDING, TaskState.RUNNING)
    assert await schedule_tasks(app, "y") == []
    assert state.last_skip_reason == f"waiting for x (task {x_task.id})"
    assert state.last_skip_at == at(60)
    status = next(s for s in await app.scheduler.status() if s.name == "y")
    assert status.to_json()["last_skip"]["reason"] == f"waiting for x (task {x_task.id})"

    # x ends: y fires without the clock moving
    (y_task,) = await count(app, "y", 1)
    x_done = await app.tasks.get(x_task.id)
    assert x_done.state is TaskState.COMPLETED
    assert y_task.submitted_at == at(60) and y_task.id > x_task.id
    assert clock.now() == at(60)
    assert skips == [f"y: waiting for x (task {x_task.id})"]
    await quiet(app, clock)
    state = (await app.tasks.store.schedule_states())["y"]
    assert state.last_fire == at(60)
    assert state.nominal_next == at(120) and state.next_fire == at(120)

    # then every minute as before (x does not run: y is not held)
    await step(clock, 60)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app, "y")] == [at(60), at(120)]


async def test_predecessor_running_elsewhere_is_rechecked_within_a_minute(
    apps: AppFactory,
) -> None:
    """x's run belongs to another process (no task.finished event here): y is held at its due
    time and fires at the next check, 60 s later, once; its schedule goes on from its due time."""
    clock = FakeClock(START)
    cfg = apps.config(
        {
            **DEFAULTS_OFF,
            "x": tick_schedule(interval_seconds=3600, initial_delay_seconds=3600),
            "y": tick_schedule(interval_seconds=3600, initial_delay_seconds=60, after=["x"]),
        }
    )
    app = await apps(cfg, clock)
    # no workers here: nothing in this process learns of x's end (no task.finished, and no
    # store.changed from the workers' polling), as with a run in another process
    assert app.tasks.pool is not None
    await app.tasks.pool.stop(0)
    app.tasks.pool = None
    x_id, run_id = await running_task(app, "sleep", unique_key="schedule:x")
    await idle(clock)
    await step(clock, 60)
    state = (await app.tasks.store.schedule_states())["y"]
    assert state.last_skip_reason == f"waiting for x (task {x_id})"
    assert await schedule_tasks(app, "y") == []
    await step(clock, 30)  # still running: held again at 120 at the latest
    await finish_task(app, x_id, run_id)
    await step(clock, 29)
    assert await schedule_tasks(app, "y") == []
    await step(clock, 1)
    (y_task,) = await schedule_tasks(app, "y")
    assert y_task.submitted_at == at(120)
    state = (await app.tasks.store.schedule_states())["y"]
    assert state.nominal_next == at(3660) and state.next_fire == at(3660)
    await step(clock, 600)
    assert len(await schedule_tasks(app, "y")) == 1


async def test_timed_schedule_not_held_when_predecessor_idle(apps: AppFactory) -> None:
    clock = FakeClock(START)
    cfg = apps.config(
        {
            **DEFAULTS_OFF,
            "x": tick_schedule(interval_seconds=3600),
            "y": tick_schedule(initial_delay_seconds=60, after=["x"]),
        }
    )
    app = await apps(cfg, clock)
    await quiet(app, clock)
    await step(clock, 60)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app, "y")] == [at(60)]
    assert (await app.tasks.store.schedule_states())["y"].last_skip_reason is None


# -- config errors ------------------------------------------------------------------------
def problems(schedule: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config({"maintenance": {"schedule": schedule}}, env={})
    return err.value.problems


def test_unknown_name_is_a_config_error() -> None:
    found = problems({"c": chained("a", "nope")} | {"a": tick_schedule()})
    assert found == ["maintenance.schedule.c.after.1: unknown schedule 'nope'"]


def test_cycle_is_a_config_error() -> None:
    found = problems({"a": chained("b"), "b": chained("a")})
    assert len(found) == 1, found
    assert found[0].startswith("maintenance.schedule.a.after: dependency cycle")
    assert "a -> b -> a" in found[0]


def test_longer_cycle_through_a_default_is_reported_once() -> None:
    found = problems(
        {
            "a": chained("b"),
            "b": chained("database_cleanup"),
            "database_cleanup": {"after": ["a"]},
        }
    )
    cycles = [p for p in found if "dependency cycle" in p]
    assert len(cycles) == 1, found
    assert cycles[0].startswith("maintenance.schedule.")
    for name in ("a", "b", "database_cleanup"):
        assert name in cycles[0]


def test_self_reference_is_a_config_error() -> None:
    found = problems({"a": chained("a")})
    assert found == ["maintenance.schedule.a.after.0: a schedule cannot follow itself"]


def test_valid_chain_loads() -> None:
    loaded = parse_config(
        {"maintenance": {"schedule": {"a": tick_schedule(), "c": chained("a", "log_rotation")}}},
        env={},
    )
    assert loaded.schedules["c"].fields.after == ["a", "log_rotation"]
