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
from datetime import datetime, timedelta
from typing import Any

from ucore.foundation.events import Event
from ucore.foundation.system import Role
from ucore.scheduling.base import UnknownScheduleError, build_schedules
from ucore.scheduling.conditions import RECHECK_SECONDS, failed_condition
from ucore.scheduling.dependencies import chain_ready, waiting_for
from ucore.scheduling.live import LiveChangesMixin, file_signature
from ucore.scheduling.planner import fire_time, next_nominal
from ucore.scheduling.run_now import RunNowMixin, ScheduleBusyError
from ucore.scheduling.schedules import Schedule
from ucore.scheduling.status import ScheduleStatus, StatusMixin
from ucore.scheduling.windows import place
from ucore.stores.records import NewTask, ScheduleState
from ucore.tasks.errors import InvalidParamsError

__all__ = [
    "PeriodicTaskScheduler",
    "ScheduleBusyError",
    "ScheduleStatus",
    "UnknownScheduleError",
    "build_schedules",
]

log = logging.getLogger("ucore.scheduler")

#: The loop retries after a failure in 1, 2, 4 … seconds, at most this long.
MAX_BACKOFF_SECONDS = 60.0


class PeriodicTaskScheduler(LiveChangesMixin, StatusMixin, RunNowMixin):
    # -- lifecycle ----------------------------------------------------------------------
    async def initialize(self) -> None:
        self.started_at = self.clock.now()
        await self._announce()
        if self.ctx.role is not Role.SERVICE:
            return
        log.info("PeriodicTaskScheduler initializing...")
        states = await self.tasks.store.schedule_states()
        for schedule in self.schedules.values():
            await self._ensure_state(schedule, states.get(schedule.name))
            log.info("Scheduled periodic task: %s", schedule.name)
        events = self.ctx.events
        self._unsubscribe = [
            events.subscribe(self._on_change, "task.finished"),
            events.subscribe(self._on_change, "store.changed"),
        ]
        self._loop_task = asyncio.create_task(self._run(), name="ucore-scheduler")
        self._own_write = file_signature(self.ctx.config.locations.config_file)
        self._watch_task = asyncio.create_task(self._watch_config(), name="ucore-config-watch")
        log.info("PeriodicTaskScheduler ready (%d tasks)", len(self.schedules))

    async def shutdown(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for attr in ("_watch_task", "_loop_task"):
            task = getattr(self, attr)
            setattr(self, attr, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _on_change(self, event: Event) -> None:
        if event.kind == "store.changed":
            # another connection wrote: read the states again now, not at the next due time
            self._changed.set()
        # a predecessor may have finished: chains and held-back schedules look again
        if any(s.after for s in self.schedules.values()):
            self._held.clear()
            self._changed.set()

    # -- state --------------------------------------------------------------------------
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
        if not candidates:
            return None
        due = min(candidates)
        held = self._held.get(schedule.name)
        return max(due, held) if held is not None else due

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
        now = self.clock.now()
        store = self.tasks.store
        states = self._states
        if states is None or self._changed.is_set():
            self._changed.clear()
            states = self._states = await store.schedule_states()
            now = self.clock.now()
        wrote = True
        try:
            wake = await self._decide(states, now)
            wrote = wake == now
        finally:
            if wrote:  # written, or failed half-way: read the states again
                self._states = None
        return wake

    async def _decide(self, states: dict[str, ScheduleState], now: datetime) -> datetime | None:
        store = self.tasks.store
        wake: datetime | None = None
        for schedule in self.schedules.values():
            state = states.get(schedule.name)
            if state is None:
                state = states[schedule.name] = await self._ensure_state(schedule, None)
            if (
                schedule.enabled
                and not schedule.has_timer
                and schedule.after
                and state.next_fire is None
                and await chain_ready(schedule, self.tasks, state.last_fire)
            ):
                # its predecessors completed: make it due now (one process wins the CAS)
                await store.advance_schedule(
                    schedule.name, expected_next=None, nominal_next=now, next_fire=now
                )
                return now
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
        self._held.pop(schedule.name, None)
        regular = state.next_fire is not None and state.next_fire <= now
        self._startup_done.add(schedule.name)
        if regular:
            nominal = next_nominal(schedule, state.nominal_next, now)
            nxt = fire_time(schedule, nominal, self.rng)
        else:  # only the startup run is due: keep the stored times
            nominal, nxt = state.nominal_next, state.next_fire
        if schedule.task in self.tasks.handlers:
            held = await waiting_for(schedule, self.tasks) if schedule.has_timer else None
            reason = held or await failed_condition(schedule, self.probe, self.tasks)
            if reason is not None:
                await self._hold(schedule, state, now, reason, recheck=60.0 if held else None)
                return
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
        # the event first: a log line writes to a terminal or file (system calls that hand
        # the GIL over) and would delay everyone who acts on the fire
        if result.fired:
            self.ctx.events.publish(
                Event("schedule.fired", {"name": schedule.name, "task_id": result.task_id})
            )
            if self.tasks.pool is not None:
                self.tasks.pool.wake()
            log.info("schedule %s fired: task %s", schedule.name, result.task_id)
        elif result.reason != "taken":
            self.ctx.events.publish(
                Event("schedule.skipped", {"name": schedule.name, "reason": result.reason})
            )
            log.info("schedule %s skipped: %s", schedule.name, result.reason)

    async def _hold(
        self,
        schedule: Schedule,
        state: ScheduleState,
        now: datetime,
        reason: str,
        *,
        recheck: float | None,
    ) -> None:
        """A condition failed (or a predecessor runs): record the skip, look again later.

        A failed condition is checked again every 15 minutes until the next due time, when
        the run is skipped for good; a predecessor is waited for (woken by its end).
        """
        store = self.tasks.store
        if recheck is not None:
            # a predecessor runs: the due time stays; look again when a task ends (the
            # task.finished event) or, for a run in another process, after ``recheck``
            self._held[schedule.name] = now + timedelta(seconds=recheck)
            if state.last_skip_reason != reason:  # a recheck of the same wait writes nothing
                await store.record_schedule_skip(schedule.name, now, reason)
                log.info("schedule %s held: %s", schedule.name, reason)
                self.ctx.events.publish(
                    Event("schedule.skipped", {"name": schedule.name, "reason": reason})
                )
            return
        self._startup_done.add(schedule.name)
        again = now + timedelta(seconds=RECHECK_SECONDS)
        if schedule.window is not None:
            # a recheck never fires outside the window: it waits for the next one
            again = place(again, schedule.window, self.rng, schedule.timezone)
        following = (
            schedule.trigger.next_fire(state.nominal_next)
            if state.nominal_next is not None
            else None
        )
        if state.next_fire is None:
            await store.record_schedule_skip(schedule.name, now, reason)
        elif following is None or again < following:
            await store.advance_schedule(
                schedule.name,
                expected_next=state.next_fire,
                nominal_next=state.nominal_next,
                next_fire=again,
                skip_at=now,
                skip_reason=reason,
            )
        else:
            nominal = next_nominal(schedule, state.nominal_next, now)
            await store.advance_schedule(
                schedule.name,
                expected_next=state.next_fire,
                nominal_next=nominal,
                next_fire=fire_time(schedule, nominal, self.rng),
                skip_at=now,
                skip_reason=reason,
            )
        log.info("schedule %s held: %s", schedule.name, reason)
        self.ctx.events.publish(
            Event("schedule.skipped", {"name": schedule.name, "reason": reason})
        )
