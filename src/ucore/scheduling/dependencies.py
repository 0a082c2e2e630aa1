"""Chains: ``after: [schedule names]``.

* A schedule **without a timer of its own** (no interval, no cron) fires when every named
  schedule has completed successfully since its own last fire.
* A schedule **with a timer** keeps it, and when due it also waits for the named schedules:
  while one of them has a run pending or running, it is held back and fires right after.

Cycles and unknown names are config errors (the loader checks them).
"""

from __future__ import annotations

from datetime import datetime

from ucore.scheduling.schedules import Schedule
from ucore.stores.records import ACTIVE_STATES, TaskFilter
from ucore.tasks.system import TaskSystem


def schedule_key(name: str) -> str:
    return f"schedule:{name}"


async def last_success(tasks: TaskSystem, name: str) -> datetime | None:
    """When the latest successful run of schedule ``name`` finished."""
    done = await tasks.store.list_tasks(
        TaskFilter(states=("completed",), unique_key=schedule_key(name), limit=1)
    )
    return done[0].finished_at if done else None


async def chain_ready(schedule: Schedule, tasks: TaskSystem, last_fire: datetime | None) -> bool:
    """For a schedule without a timer: have all its predecessors completed since its last fire?"""
    if not schedule.after:
        return False
    for name in schedule.after:
        finished = await last_success(tasks, name)
        if finished is None or (last_fire is not None and finished <= last_fire):
            return False
    return True


async def waiting_for(schedule: Schedule, tasks: TaskSystem) -> str | None:
    """For a due schedule: a predecessor whose run is pending or running, if any."""
    for name in schedule.after:
        active = await tasks.store.list_tasks(
            TaskFilter(states=ACTIVE_STATES, unique_key=schedule_key(name), limit=1)
        )
        if active:
            return f"waiting for {name} (task {active[0].id})"
    return None
