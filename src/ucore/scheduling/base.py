"""What every part of the scheduler shares: its schedules, the TaskSystem, the state rules."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime
from typing import Any

from ucore.foundation.config.loader import LoadedConfig
from ucore.foundation.context import Context
from ucore.foundation.errors import UsageError
from ucore.foundation.system import BaseSystem
from ucore.scheduling.conditions import Probe, SystemProbe
from ucore.scheduling.planner import fire_time, first_nominal
from ucore.scheduling.schedules import Schedule
from ucore.stores.records import ScheduleState
from ucore.tasks.system import TaskSystem

log = logging.getLogger("ucore.scheduler")


class UnknownScheduleError(UsageError):
    pass


class SchedulerBase(BaseSystem):
    name = "scheduler"
    depends_on = ("tasks",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.schedules: dict[str, Schedule] = build_schedules(ctx.config)
        self.clock = ctx.clock
        #: battery and CPU readings for conditions (tests put a fake here)
        self.probe: Probe = SystemProbe()
        self.rng = random.Random()
        self.started_at = ctx.clock.now()
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._startup_done: set[str] = set()
        #: schedules held back for a running predecessor: name -> when to look again at
        #: the latest (a task.finished event makes it look at once)
        self._held: dict[str, datetime] = {}
        self._warned_unregistered: set[str] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._own_write: tuple[int, int, int] | None = None
        self._unsubscribe: list[Any] = []
        #: the stored states as last read; None: read them again at the next tick. A timer
        #: wake-up decides on this copy without a database round trip (the decision's
        #: compare-and-set catches a copy gone stale); every change or write drops it.
        self._states: dict[str, ScheduleState] | None = None

    @property
    def tasks(self) -> TaskSystem:
        return self.ctx.typed("tasks", TaskSystem)

    def wake(self) -> None:
        """Re-evaluate the schedules now (a change happened)."""
        self._changed.set()

    def get(self, name: str) -> Schedule:
        try:
            return self.schedules[name]
        except KeyError:
            known = ", ".join(sorted(self.schedules)) or "none"
            raise UnknownScheduleError(f"unknown schedule '{name}' (known: {known})") from None

    async def _announce(self) -> None:
        """Tell the other processes this process's schedule definitions (config drift)."""
        hashes = {name: s.definition_hash for name, s in self.schedules.items()}
        await self.tasks.announce(schedules=hashes)

    async def _ensure_state(self, schedule: Schedule, state: ScheduleState | None) -> ScheduleState:
        store = self.tasks.store
        if state is None:
            nominal = first_nominal(schedule, self.started_at)
            return await store.init_schedule(
                schedule.name,
                nominal_next=nominal,
                next_fire=fire_time(schedule, nominal, self.rng),
                definition_hash=schedule.definition_hash,
            )
        if state.definition_hash != schedule.definition_hash:
            # the definition changed since the state was written: due times follow the new
            # trigger, counted from the last fire (a missed time fires once, as any catch-up)
            if state.last_fire is not None:
                nominal = schedule.trigger.next_fire(state.last_fire)
            else:
                nominal = first_nominal(schedule, self.started_at)
            await store.reschedule(
                schedule.name,
                nominal_next=nominal,
                next_fire=fire_time(schedule, nominal, self.rng),
                definition_hash=schedule.definition_hash,
            )
            log.info("schedule %s changed: next due %s", schedule.name, nominal)
            return (await store.schedule_states())[schedule.name]
        return state


def build_schedules(loaded: LoadedConfig) -> dict[str, Schedule]:
    maint = loaded.config.maintenance
    return {
        name: Schedule.from_config(cfg, enabled=maint.enabled, window=maint.window)
        for name, cfg in loaded.schedules.items()
    }
