"""What ``ucore status`` and the panel show: per schedule its state, last run, drift."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ucore.foundation.clock import iso
from ucore.scheduling.base import SchedulerBase
from ucore.scheduling.planner import first_nominal
from ucore.scheduling.schedules import Schedule
from ucore.stores.records import TaskFilter, TaskRecord


@dataclass(frozen=True)
class ScheduleStatus:
    name: str
    task: str
    enabled: bool
    registered: bool
    trigger: str
    next_run: datetime | None
    last_run: TaskRecord | None
    last_skip_at: datetime | None
    last_skip_reason: str | None
    period: float | None
    #: live processes whose definition of this schedule differs: [{node, host, pid, role, hash}]
    drift: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "enabled": self.enabled,
            "registered": self.registered,
            "trigger": self.trigger,
            "next_run": iso(self.next_run),
            "last_run": self.last_run.to_json() if self.last_run else None,
            "last_skip": None
            if self.last_skip_at is None
            else {"at": iso(self.last_skip_at), "reason": self.last_skip_reason},
            "drift": list(self.drift),
        }


class StatusMixin(SchedulerBase):
    async def last_run(self, schedule: Schedule) -> TaskRecord | None:
        found = await self.tasks.store.list_tasks(
            TaskFilter(unique_key=schedule.unique_key, limit=1)
        )
        return found[0] if found else None

    async def drift(self) -> dict[str, list[dict[str, Any]]]:
        """Per schedule, the live processes whose definition differs from another's."""
        nodes = await self.tasks.nodes()
        own = {n: s.definition_hash for n, s in self.schedules.items()}
        found: dict[str, list[dict[str, Any]]] = {}
        for name, mine in own.items():
            seen = [
                (n, (n.info.get("schedules") or {}).get(name))
                for n in nodes
                if n.id != self.ctx.node_id and n.info.get("schedules")
            ]
            if all(h == mine for _, h in seen):
                continue
            found[name] = [
                {"node": n.id, "host": n.host, "pid": n.pid, "role": n.role, "hash": h}
                for n, h in seen
            ] + [
                {
                    "node": self.ctx.node_id,
                    "host": self.ctx.host,
                    "pid": self.ctx.pid,
                    "role": self.ctx.role.value,
                    "hash": mine,
                }
            ]
        return found

    async def status(self) -> list[ScheduleStatus]:
        states = await self.tasks.store.schedule_states()
        drift = await self.drift()
        now = self.clock.now()
        out = []
        for schedule in self.schedules.values():
            state = states.get(schedule.name)
            if not schedule.enabled:
                next_run = None
            elif state is None:
                next_run = first_nominal(schedule, now)
            else:
                next_run = state.next_fire
            out.append(
                ScheduleStatus(
                    name=schedule.name,
                    task=schedule.task,
                    enabled=schedule.enabled,
                    registered=schedule.task in self.tasks.handlers,
                    trigger=schedule.trigger.describe(),
                    next_run=next_run,
                    last_run=await self.last_run(schedule),
                    last_skip_at=state.last_skip_at if state else None,
                    last_skip_reason=state.last_skip_reason if state else None,
                    period=schedule.trigger.period,
                    drift=tuple(drift.get(schedule.name, ())),
                )
            )
        return out

    async def next_fires(self, name: str, count: int) -> list[datetime]:
        """The next ``count`` fire times: the stored one, then the trigger's own times."""
        schedule = self.get(name)
        state = (await self.tasks.store.schedule_states()).get(name)
        now = self.clock.now()
        if state is not None and state.next_fire is not None:
            first, nominal = state.next_fire, state.nominal_next or state.next_fire
        else:
            first = nominal = first_nominal(schedule, now)  # type: ignore[assignment]
        times: list[datetime] = []
        if first is None:
            return times
        times.append(first)
        current: datetime | None = nominal
        while len(times) < count and current is not None:
            current = schedule.trigger.next_fire(current)
            if current is not None:
                times.append(current)
        return times
