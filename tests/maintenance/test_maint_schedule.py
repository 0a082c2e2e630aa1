"""The three tasks run from their default schedules in a service (FakeClock time)."""

from __future__ import annotations

from datetime import timedelta

from maint_helpers import START, AppFactory, journal_of, wait_until

from ucore.app import App
from ucore.stores.records import NewTask, Priority, TaskRecord, TaskState
from ucore.testing import FakeClock

THREE = ("background_verification", "database_optimization", "database_cleanup")


async def schedule_runs(app: App, name: str) -> list[TaskRecord]:
    found = await app.tasks.list_tasks(limit=1000)
    return [t for t in found if t.origin == f"schedule:{name}"]


async def advance(clock: FakeClock, seconds: float, step: float = 10.0) -> None:
    done = 0.0
    while done < seconds:
        await wait_until(lambda: clock.sleepers >= 1, what="the scheduler asleep")
        await clock.advance(step)
        done += step


async def test_the_default_schedules_run_the_three_tasks(apps: AppFactory) -> None:
    clock = FakeClock(START)
    app = await apps(role="service", clock=clock, tasks={"lease_seconds": 10_000_000})
    await advance(clock, 310)  # database_optimization: initial delay 300 s

    async def all_ran() -> bool:
        for name in THREE:
            runs = await schedule_runs(app, name)
            if not runs or not all(t.state.finished for t in runs):
                return False
        return True

    await wait_until(all_ran, what="a scheduled run of each task")
    for name in THREE:
        for task in await schedule_runs(app, name):
            assert task.state is TaskState.COMPLETED, (name, task.error)
            assert len(await journal_of(app, task.id, f"maintenance.{name}")) == 1
            assert task.result["dry_run"] is False


async def test_optimization_schedule_waits_for_a_running_scan(apps: AppFactory) -> None:
    clock = FakeClock(START)
    app = await apps(
        role="service",
        clock=clock,
        tasks={"lease_seconds": 10_000_000},
        maintenance={
            "schedule": {
                n: {"enabled": False}
                for n in (
                    "background_verification",
                    "database_cleanup",
                    "cache_cleanup",
                    "orphaned_cleanup",
                    "log_rotation",
                )
            }
        },
    )
    store = app.tasks.store
    later = clock.now() + timedelta(days=1)
    scan_id, _ = await store.insert_task(
        NewTask("library_scan", {}, Priority.NORMAL, "api", clock.now(), not_before=later)
    )
    claimed = await store.claim_task(
        node_id="scanner-node",
        host="elsewhere.example",
        pid=4242,
        now=later,
        lease_until=later + timedelta(days=3650),
        task_id=scan_id,
    )
    assert claimed is not None
    await advance(clock, 310)

    async def skipped() -> str | None:
        for s in await app.scheduler.status():
            if s.name == "database_optimization" and s.last_skip_reason:
                return s.last_skip_reason
        return None

    reason = await wait_until(skipped, what="the not_while skip")
    assert "library_scan" in reason and str(scan_id) in reason
    assert await schedule_runs(app, "database_optimization") == []
