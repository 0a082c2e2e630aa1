"""Run a schedule now, by hand (DESIGN.md §4 "Run now")."""

from __future__ import annotations

from typing import Any

from ucore.foundation.errors import NotFoundError, UCoreError
from ucore.scheduling.base import SchedulerBase
from ucore.stores.records import ACTIVE_STATES, Priority, TaskFilter, TaskState


class ScheduleBusyError(UCoreError):
    """Run now refused: the schedule's task is already queued or running."""


class RunNowMixin(SchedulerBase):
    async def run_now(self, name: str, params: dict[str, Any] | None = None) -> tuple[int, bool]:
        """Run a schedule's task now; returns (task id, merged with a pending run).

        An identical pending run (same parameters) is promoted to NORMAL priority and
        returned; while another run of the schedule is pending or running, it is refused.
        """
        schedule = self.get(name)
        if schedule.task not in self.tasks.handlers:
            raise NotFoundError(f"schedule {name}: task '{schedule.task}' is not registered")
        reg = self.tasks.handlers.get(schedule.task)
        wanted = reg.canonical({**schedule.params, **(params or {})})
        for _ in range(3):
            active = await self.tasks.store.list_tasks(
                TaskFilter(states=ACTIVE_STATES, unique_key=schedule.unique_key, limit=1)
            )
            if active:
                current = active[0]
                if current.state is TaskState.PENDING and current.params == wanted:
                    await self.tasks.promote(current.id, Priority.NORMAL)
                    return current.id, True
                raise ScheduleBusyError(f"already running: {current.id}")
            task_id, created = await self.tasks.submit_ex(
                schedule.task,
                wanted,
                priority=Priority.NORMAL,
                unique_key=schedule.unique_key,
                origin="manual",
            )
            if created:
                return task_id, False
        raise ScheduleBusyError(f"schedule {name} keeps changing; try again")
