"""Start in each role (DESIGN.md §1, §4; origin.md "Log lines it expected at start").

The service role logs the scheduler's start lines and runs its loop; the client role has the
scheduler system (status, run now) but logs none of them, starts no loop, writes no schedule
state and never fires. ``maintenance.enabled: false`` (or a schedule's own ``enabled: false``)
means nothing fires.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sched_helpers import (
    DEFAULT_NAMES,
    REFERENCE_MAINTENANCE,
    START,
    TASKS_DEFAULTS,
    AppFactory,
    at,
    fire_step,
    idle,
    schedule_tasks,
    tick_schedule,
)

from ucore.foundation.config import parse_config
from ucore.testing import FakeClock

START_LINES = ("PeriodicTaskScheduler", "Scheduled periodic task")


def scheduler_info(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ucore.scheduler" and r.levelno == logging.INFO
    ]


def reference_config(data_dir: Path):  # type: ignore[no-untyped-def]
    raw = {"maintenance": REFERENCE_MAINTENANCE, "tasks": dict(TASKS_DEFAULTS)}
    return parse_config(raw, data_dir=data_dir, env={})


async def test_service_start_log_lines(apps: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ucore.scheduler")
    clock = FakeClock(START)
    app = await apps(reference_config(apps.data_dir), clock)
    await idle(clock)
    lines = [m for m in scheduler_info(caplog) if m.startswith(START_LINES)]
    assert lines == [
        "PeriodicTaskScheduler initializing...",
        *(f"Scheduled periodic task: {name}" for name in DEFAULT_NAMES),
        "PeriodicTaskScheduler ready (6 tasks)",
    ]
    assert set(app.scheduler.schedules) == set(DEFAULT_NAMES)
    loops = [t for t in asyncio.all_tasks() if t.get_name() == "ucore-scheduler"]
    assert len(loops) == 1 and not loops[0].done()
    # the reference block loads as written: its intervals and delay
    status = {s.name: s for s in await app.scheduler.status()}
    assert status["background_verification"].trigger == "every 5 minutes"
    assert status["cache_cleanup"].trigger == "every 6 hours"
    assert status["database_cleanup"].trigger == "every 7 days"
    assert status["database_optimization"].next_run == at(300)


async def test_ready_line_counts_custom_schedules(
    apps: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.scheduler")
    clock = FakeClock(START)
    await apps(apps.config(), clock)
    await idle(clock)
    lines = scheduler_info(caplog)
    assert "Scheduled periodic task: tick" in lines
    assert "PeriodicTaskScheduler ready (7 tasks)" in lines


async def test_client_role_logs_nothing_starts_no_loop_never_fires(
    apps: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ucore")
    clock = FakeClock(START)
    app = await apps(reference_config(apps.data_dir), clock, role="client")
    assert [m for m in scheduler_info(caplog) if m.startswith(START_LINES)] == []
    assert [r for r in caplog.records if r.name == "ucore.scheduler"] == []
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "ucore-scheduler"]
    assert clock.sleepers == 0
    await clock.advance(7 * 86400)
    await asyncio.sleep(0.05)
    assert await app.tasks.list_tasks(limit=100) == []
    assert await app.tasks.store.schedule_states() == {}
    # a client still shows the schedules: never fired = now + the initial delay
    status = {s.name: s for s in await app.scheduler.status()}
    assert status["database_optimization"].next_run == clock.now() + (at(300) - START)
    assert status["cache_cleanup"].next_run == clock.now()


async def test_maintenance_disabled_nothing_fires(apps: AppFactory) -> None:
    clock = FakeClock(START)
    app = await apps(apps.config(enabled=False), clock)
    for _ in range(10):
        await clock.advance(60)
        # nothing is due: the loop waits for a change only, it does not sleep on time
        assert await app.scheduler.tick() is None
        assert clock.sleepers == 0
    await asyncio.sleep(0.05)
    assert await app.tasks.list_tasks(limit=100) == []
    status = await app.scheduler.status()
    assert {s.name for s in status} == {*DEFAULT_NAMES, "tick"}
    assert all(s.enabled is False and s.next_run is None for s in status)
    assert all(s.to_json()["enabled"] is False for s in status)


async def test_one_schedule_disabled(apps: AppFactory) -> None:
    config = apps.config({"tick": tick_schedule(enabled=False), "tock": tick_schedule()})
    clock = FakeClock(START)
    app = await apps(config, clock)
    await idle(clock)
    for _ in range(3):
        await fire_step(app, clock, 60)
    assert await schedule_tasks(app, "tick") == []
    assert len(await schedule_tasks(app, "tock")) == 4
    status = {s.name: s for s in await app.scheduler.status()}
    assert status["tick"].enabled is False and status["tick"].next_run is None
    assert status["tock"].enabled is True
