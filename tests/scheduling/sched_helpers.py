"""Helpers of the scheduling tests: configs, apps driven by a FakeClock, short real-time waits.

Time passes only through ``FakeClock.advance``: the scheduler is the only code that sleeps on
the clock, so "the scheduler is idle again" is "it sleeps on the clock again". The store works
in threads and the workers run tasks for real, so :func:`step` waits for that with a short
real-time deadline after each advance (it never waits for scheduled time to pass).

Each advance that should hit a due time moves the clock exactly to it: a fire records the
clock's time at the moment the loop runs, so a single big jump over several due times would
be a catch-up (one fire), not several.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ucore.app import App, bootstrap
from ucore.foundation.config import LoadedConfig, TaskParams, parse_config, register_task_params
from ucore.stores.records import NewTask, Outcome, Priority, TaskRecord, TaskState
from ucore.testing import FakeClock

#: A Monday noon, far from any daylight-saving change.
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

#: The six default schedules (DESIGN.md §5); tests turn them off unless they name them.
DEFAULT_NAMES = (
    "background_verification",
    "database_optimization",
    "cache_cleanup",
    "orphaned_cleanup",
    "log_rotation",
    "database_cleanup",
)

#: The reference block of origin.md, exactly as written.
REFERENCE_MAINTENANCE: dict[str, Any] = {
    "enabled": True,
    "schedule": {
        "background_verification": {"interval_minutes": 5},
        "database_optimization": {"interval_hours": 24, "initial_delay_seconds": 300},
        "cache_cleanup": {"interval_hours": 6, "max_cache_size_gb": 10, "max_age_days": 30},
        "orphaned_cleanup": {"interval_hours": 12},
        "log_rotation": {"interval_hours": 24, "max_log_files": 10, "max_log_size_mb": 100},
        "database_cleanup": {
            "interval_days": 7,
            "task_retention_days": 30,
            "journal_retention_days": 90,
        },
    },
}

# Leases far beyond any fake time a test moves through: the workers' housekeeping must never
# take a long fake jump for an expired lease.
TASKS_DEFAULTS: dict[str, Any] = {"lease_seconds": 10_000_000}


def tick_schedule(**overrides: Any) -> dict[str, Any]:
    """The custom test schedule: a zero-second ``sleep`` every 60 s, with ``overrides``."""
    entry: dict[str, Any] = {"task": "sleep", "interval_seconds": 60, "seconds": 0}
    entry.update(overrides)
    return entry


def make_config(
    data_dir: Path,
    schedules: dict[str, Any] | None = None,
    *,
    tasks: dict[str, Any] | None = None,
    enabled: bool | None = None,
) -> LoadedConfig:
    """A config on ``data_dir``: the defaults plus ``schedules`` (default: ``tick``).

    The six default schedules are turned off unless ``schedules`` names them: their
    maintenance tasks are registered and would fire at start beside what a test watches.
    """
    given = {"tick": tick_schedule()} if schedules is None else schedules
    maintenance: dict[str, Any] = {
        "schedule": {**{n: {"enabled": False} for n in DEFAULT_NAMES if n not in given}, **given}
    }
    if enabled is not None:
        maintenance["enabled"] = enabled
    raw = {"maintenance": maintenance, "tasks": {**TASKS_DEFAULTS, **(tasks or {})}}
    return parse_config(raw, data_dir=data_dir, env={})


class AppFactory:
    """``await apps(config, clock, role=...)``: a bootstrapped app, shut down after the test."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.apps: list[App] = []

    def config(self, schedules: dict[str, Any] | None = None, **kwargs: Any) -> LoadedConfig:
        return make_config(self.data_dir, schedules, **kwargs)

    async def __call__(
        self, config: LoadedConfig, clock: FakeClock, *, role: str = "service"
    ) -> App:
        app = await bootstrap(config, role=role, clock=clock)
        self.apps.append(app)
        return app

    async def close_all(self) -> None:
        for app in reversed(self.apps):
            try:
                await app.shutdown()
            except Exception as exc:  # keep closing the others
                logging.getLogger("tests").warning("app shutdown failed: %s", exc)


# -- waiting (real time, short deadlines: for threads and workers, never for fake time) ----
async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]],
    *,
    within: float = 5.0,
    what: str = "a condition",
) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.005)


async def idle(clock: FakeClock, sleepers: int = 1, within: float = 5.0) -> None:
    """Until ``sleepers`` schedulers sleep on ``clock`` again (their tick is over)."""
    await wait_until(
        lambda: clock.sleepers >= sleepers,
        within=within,
        what=f"{sleepers} scheduler(s) asleep on the clock (have {clock.sleepers})",
    )


async def step(clock: FakeClock, seconds: float, sleepers: int = 1) -> None:
    """Advance the fake time by ``seconds``, then wait for the scheduler(s) to sleep again."""
    await idle(clock, sleepers)
    await clock.advance(seconds)
    await idle(clock, sleepers)


async def schedule_tasks(app: App, name: str = "tick") -> list[TaskRecord]:
    """The tasks of schedule ``name`` (by origin), oldest first."""
    found = await app.tasks.list_tasks(limit=10_000)
    return sorted((t for t in found if t.origin == f"schedule:{name}"), key=lambda t: t.id)


async def all_finished(app: App, within: float = 5.0) -> list[TaskRecord]:
    """Until no task of the database is pending or running; returns every task, oldest first."""

    async def check() -> bool:
        found = await app.tasks.list_tasks(limit=10_000)
        return all(t.state.finished for t in found)

    await wait_until(check, within=within, what="every task to finish")
    return sorted(await app.tasks.list_tasks(limit=10_000), key=lambda t: t.id)


async def wait_state(app: App, task_id: int, *states: TaskState, within: float = 5.0) -> TaskRecord:
    async def check() -> TaskRecord | None:
        record = await app.tasks.get(task_id)
        return record if record.state in states else None

    record: TaskRecord = await wait_until(
        check, within=within, what=f"task {task_id} to be {'/'.join(states)}"
    )
    return record


def at(seconds: float, start: datetime = START) -> datetime:
    """``start`` + ``seconds`` (an aware UTC datetime)."""
    return start + timedelta(seconds=seconds)


async def fire_step(app: App, clock: FakeClock, seconds: float, sleepers: int = 1) -> None:
    """:func:`step`, after every task of the database has finished (no overlap skips)."""
    await all_finished(app)
    await step(clock, seconds, sleepers)


# -- helpers of the smart-scheduling tests (windows, conditions, chains, live changes) -----
def maintenance_config(
    data_dir: Path, maintenance: dict[str, Any], *, tasks: dict[str, Any] | None = None
) -> LoadedConfig:
    """A config on ``data_dir`` with the ``maintenance`` section exactly as given."""
    raw = {"maintenance": maintenance, "tasks": {**TASKS_DEFAULTS, **(tasks or {})}}
    return parse_config(raw, data_dir=data_dir, env={})


class FakeProbe:
    """Battery and CPU readings a test sets (``app.scheduler.probe = FakeProbe(...)``)."""

    def __init__(self, *, battery: bool = False, cpu: float = 0.0) -> None:
        self.battery = battery
        self.cpu = cpu
        self.cpu_reads = 0

    def on_battery(self) -> bool:
        return self.battery

    def cpu_percent(self) -> float:
        self.cpu_reads += 1
        return self.cpu


async def quiet(
    app: App,
    clock: FakeClock,
    sleepers: int = 1,
    settle: float = 0.05,
    ignore: frozenset[int] = frozenset(),
) -> None:
    """Until nothing moves: every task finished (but those in ``ignore``), the scheduler(s)
    asleep, no wake-up pending, and the task count unchanged over ``settle`` real seconds
    (for "it did not fire")."""

    async def finished() -> bool:
        found = await app.tasks.list_tasks(limit=10_000)
        return all(t.state.finished or t.id in ignore for t in found)

    while True:
        await wait_until(finished, what="every task to finish")
        await idle(clock, sleepers)
        before = len(await app.tasks.list_tasks(limit=10_000))
        await asyncio.sleep(settle)
        if (
            len(await app.tasks.list_tasks(limit=10_000)) == before
            and await finished()
            and clock.sleepers >= sleepers
            and not app.scheduler._changed.is_set()
        ):
            return


async def running_task(app: App, name: str, unique_key: str | None = None) -> tuple[int, int]:
    """A task ``name`` put into the running state through the store, as if another process
    ran it (this process's workers never see it pending): returns (task id, run id)."""
    store = app.tasks.store
    now = app.tasks.clock.now()
    soon = now + timedelta(microseconds=1)  # not claimable by the workers at the fake now
    task_id, created = await store.insert_task(
        NewTask(
            name=name,
            params={},
            priority=Priority.NORMAL,
            origin="api",
            submitted_at=now,
            unique_key=unique_key,
            not_before=soon,
        )
    )
    assert created
    record = await store.claim_task(
        node_id=app.ctx.node_id,
        host=app.ctx.host,
        pid=app.ctx.pid,
        now=soon,
        lease_until=now + timedelta(days=3650),
        task_id=task_id,
    )
    assert record is not None and record.state is TaskState.RUNNING
    return task_id, record.run_id or 0


async def finish_task(app: App, task_id: int, run_id: int) -> None:
    """Complete a task of :func:`running_task` through the store (no event in this process)."""
    done = await app.tasks.store.finish_run(
        task_id,
        run_id,
        outcome=Outcome.COMPLETED,
        now=app.tasks.clock.now(),
        next_state=TaskState.COMPLETED,
    )
    assert done


#: Merged into a test's schedules: the six defaults off (their maintenance tasks stay out
#: of tests about other schedules).
DEFAULTS_OFF: dict[str, Any] = {name: {"enabled": False} for name in DEFAULT_NAMES}


class GhostParams(TaskParams):
    """A task whose parameters are known but whose handler is never registered."""


register_task_params("ghost_task", GhostParams)
