"""The PeriodicTaskScheduler: fires schedules by submitting their tasks through the TaskSystem.

* It sleeps until the next due time or a change (never a per-second poll).
* **One fire per due time** across processes and machines: a fire is one transaction that
  compares-and-sets the schedule's stored next fire time and inserts the task; a process
  that loses the race finds the time taken and re-reads the state.
* **No overlap**: a schedule's tasks share the unique key ``schedule:<name>``; a due time that
  finds the previous task pending or running is skipped and the skip recorded.
* **Catch-up**: runs missed while nothing ran fire once, at start + initial delay, then the
  schedule continues from now.
* A failing submit or store never stops the loop: it is logged and retried with backoff.

The system exists in every role (status, run now); its loop runs only in the service role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ucore.foundation.clock import iso
from ucore.foundation.context import Context
from ucore.foundation.errors import NotFoundError, UCoreError, UsageError
from ucore.foundation.events import Event
from ucore.foundation.system import BaseSystem, Role
from ucore.scheduling.planner import fire_time, first_nominal, next_nominal
from ucore.scheduling.schedules import Schedule
from ucore.stores.records import (
    ACTIVE_STATES,
    NewTask,
    Priority,
    ScheduleState,
    TaskFilter,
    TaskRecord,
    TaskState,
)
from ucore.tasks.errors import InvalidParamsError
from ucore.tasks.system import TaskSystem

log = logging.getLogger("ucore.scheduler")

#: The loop retries after a failure in 1, 2, 4 … seconds, at most this long.
MAX_BACKOFF_SECONDS = 60.0


class UnknownScheduleError(UsageError):
    pass


class ScheduleBusyError(UCoreError):
    """Run now refused: the schedule's task is already queued or running."""


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
        }


class PeriodicTaskScheduler(BaseSystem):
    name = "scheduler"
    depends_on = ("tasks",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        maint = ctx.config.config.maintenance
        self.schedules: dict[str, Schedule] = {
            name: Schedule.from_config(cfg, enabled=maint.enabled, window=maint.window)
            for name, cfg in ctx.config.schedules.items()
        }
        self.clock = ctx.clock
        self.rng = random.Random()
        self.started_at = ctx.clock.now()
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._startup_done: set[str] = set()
        self._warned_unregistered: set[str] = set()

    @property
    def tasks(self) -> TaskSystem:
        system = self.ctx.system("tasks")
        assert isinstance(system, TaskSystem)
        return system

    # -- lifecycle ----------------------------------------------------------------------
    async def initialize(self) -> None:
        self.started_at = self.clock.now()
        if self.ctx.role is not Role.SERVICE:
            return
        log.info("PeriodicTaskScheduler initializing...")
        states = await self.tasks.store.schedule_states()
        for schedule in self.schedules.values():
            await self._ensure_state(schedule, states.get(schedule.name))
            log.info("Scheduled periodic task: %s", schedule.name)
        self._loop_task = asyncio.create_task(self._run(), name="ucore-scheduler")
        log.info("PeriodicTaskScheduler ready (%d tasks)", len(self.schedules))

    async def shutdown(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Re-evaluate the schedules now (a change happened)."""
        self._changed.set()

    # -- state --------------------------------------------------------------------------
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

    def due_at(self, schedule: Schedule, state: ScheduleState) -> datetime | None:
        """When this process fires the schedule next (None: not by itself)."""
        if not schedule.enabled:
            return None
        earliest = self.started_at + timedelta(seconds=schedule.initial_delay)
        candidates = []
        if state.next_fire is not None:
            candidates.append(max(state.next_fire, earliest))
        if schedule.run_at_startup and schedule.name not in self._startup_done:
            candidates.append(earliest)
        return min(candidates) if candidates else None

    # -- the loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                wake = await self.tick()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (failures - 1))
                log.error("scheduler: %s; retrying in %g s", exc, delay)
                wake = self.clock.now() + timedelta(seconds=delay)
            await self._sleep(wake)

    async def _sleep(self, wake: datetime | None) -> None:
        waits: set[asyncio.Task[Any]] = {asyncio.create_task(self._changed.wait())}
        if wake is not None:
            waits.add(asyncio.create_task(self.clock.sleep_until(wake)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def tick(self) -> datetime | None:
        """Fire what is due; return when to look again (None: only on a change)."""
        self._changed.clear()
        store = self.tasks.store
        states = await store.schedule_states()
        now = self.clock.now()
        wake: datetime | None = None
        for schedule in self.schedules.values():
            state = states.get(schedule.name)
            if state is None:
                state = await self._ensure_state(schedule, None)
            due = self.due_at(schedule, state)
            if due is None:
                continue
            if due <= now:
                await self._fire(schedule, state, now)
                return now  # state changed: look again at once
            wake = due if wake is None else min(wake, due)
        return wake

    async def _fire(self, schedule: Schedule, state: ScheduleState, now: datetime) -> None:
        store = self.tasks.store
        regular = state.next_fire is not None and state.next_fire <= now
        self._startup_done.add(schedule.name)
        if regular:
            nominal = next_nominal(schedule, state.nominal_next, now)
            nxt = fire_time(schedule, nominal, self.rng)
        else:  # only the startup run is due: keep the stored times
            nominal, nxt = state.nominal_next, state.next_fire
        if schedule.task not in self.tasks.handlers:
            reason = f"task '{schedule.task}' is not registered"
            if schedule.name not in self._warned_unregistered:
                self._warned_unregistered.add(schedule.name)
                log.warning("schedule %s: %s; it does not fire", schedule.name, reason)
            await store.advance_schedule(
                schedule.name,
                expected_next=state.next_fire,
                nominal_next=nominal,
                next_fire=nxt,
                skip_at=now,
                skip_reason=reason,
            )
            return
        try:
            params = self.tasks.handlers.get(schedule.task).canonical(schedule.params)
        except InvalidParamsError as exc:
            await store.advance_schedule(
                schedule.name,
                expected_next=state.next_fire,
                nominal_next=nominal,
                next_fire=nxt,
                skip_at=now,
                skip_reason=str(exc),
            )
            log.error("schedule %s: %s", schedule.name, exc)
            return
        result = await store.fire_schedule(
            schedule.name,
            expected_next=state.next_fire,
            nominal_next=nominal,
            next_fire=nxt,
            now=now,
            task=NewTask(
                name=schedule.task,
                params=params,
                priority=schedule.priority,
                origin=schedule.origin,
                submitted_at=now,
                max_attempts=self.tasks.handlers.get(schedule.task).max_attempts,
                unique_key=schedule.unique_key,
            ),
        )
        if result.fired:
            log.info("schedule %s fired: task %s", schedule.name, result.task_id)
            self.ctx.events.publish(
                Event("schedule.fired", {"name": schedule.name, "task_id": result.task_id})
            )
            if self.tasks.pool is not None:
                self.tasks.pool.wake()
        elif result.reason != "taken":
            log.info("schedule %s skipped: %s", schedule.name, result.reason)
            self.ctx.events.publish(
                Event("schedule.skipped", {"name": schedule.name, "reason": result.reason})
            )

    # -- queries and run now --------------------------------------------------------------
    def get(self, name: str) -> Schedule:
        try:
            return self.schedules[name]
        except KeyError:
            known = ", ".join(sorted(self.schedules)) or "none"
            raise UnknownScheduleError(f"unknown schedule '{name}' (known: {known})") from None

    async def last_run(self, schedule: Schedule) -> TaskRecord | None:
        found = await self.tasks.store.list_tasks(
            TaskFilter(unique_key=schedule.unique_key, limit=1)
        )
        return found[0] if found else None

    async def status(self) -> list[ScheduleStatus]:
        states = await self.tasks.store.schedule_states()
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
                )
            )
        return out

    async def next_fires(self, name: str, count: int) -> list[datetime]:
        schedule = self.get(name)
        state = (await self.tasks.store.schedule_states()).get(name)
        now = self.clock.now()
        first = state.next_fire if state and state.next_fire else first_nominal(schedule, now)
        times: list[datetime] = []
        current = first
        while current is not None and len(times) < count:
            times.append(current)
            current = schedule.trigger.next_fire(current)
        return times

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
