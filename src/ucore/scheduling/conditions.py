"""Conditions checked when a schedule is due: battery, CPU load, other tasks running.

A failed condition skips the run (the skip and its reason are recorded and shown by
``ucore status``) and the schedule is checked again every 15 minutes until its next due time.
Battery and CPU readings come from a :class:`Probe`, which tests replace.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import psutil

from ucore.scheduling.schedules import Schedule
from ucore.tasks.system import TaskSystem

#: A failed condition is checked again after this long (until the next due time).
RECHECK_SECONDS = 15 * 60
#: The CPU load is averaged over this many seconds.
CPU_SAMPLE_SECONDS = 1.0


class Probe(Protocol):
    def on_battery(self) -> bool: ...

    def cpu_percent(self) -> float: ...


class SystemProbe:
    """The machine's battery and CPU load, through psutil."""

    def on_battery(self) -> bool:
        battery = psutil.sensors_battery() if hasattr(psutil, "sensors_battery") else None
        return battery is not None and not battery.power_plugged

    def cpu_percent(self) -> float:
        return float(psutil.cpu_percent(interval=CPU_SAMPLE_SECONDS))


async def failed_condition(schedule: Schedule, probe: Probe, tasks: TaskSystem) -> str | None:
    """Why the schedule must not run now, or None when every condition holds."""
    for name in schedule.not_while:
        running = await tasks.list_tasks(states=("running",), name=name, limit=1)
        if running:
            return f"not while {name} runs (task {running[0].id})"
    if schedule.not_on_battery and probe.on_battery():
        return "on battery"
    if schedule.max_cpu_percent is not None:
        load = await asyncio.to_thread(probe.cpu_percent)
        if load > schedule.max_cpu_percent:
            return f"CPU load {load:.0f}% above {schedule.max_cpu_percent:g}%"
    return None
