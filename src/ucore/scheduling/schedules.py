"""Schedules as the scheduler uses them, built from the validated config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ucore.foundation.config.schedule import ScheduleConfig, Window
from ucore.scheduling.triggers import CronTrigger, IntervalTrigger, ManualTrigger, Trigger
from ucore.stores.records import Priority


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    trigger: Trigger
    params: dict[str, Any]
    priority: Priority
    enabled: bool
    run_at_startup: bool
    initial_delay: float
    jitter: float
    window: Window | None
    #: the zone of the cron trigger and of the window (None: the machine's local zone)
    timezone: str | None
    not_on_battery: bool
    max_cpu_percent: float | None
    not_while: tuple[str, ...]
    after: tuple[str, ...]
    #: a hash of everything that defines when and what it runs (config drift, reschedule)
    definition_hash: str

    @property
    def unique_key(self) -> str:
        """The unique key of its tasks: at most one pending or running at a time."""
        return f"schedule:{self.name}"

    @property
    def origin(self) -> str:
        return f"schedule:{self.name}"

    @property
    def has_timer(self) -> bool:
        """Whether it fires by time (interval or cron); else only at startup or after others."""
        return not isinstance(self.trigger, ManualTrigger)

    @classmethod
    def from_config(
        cls, cfg: ScheduleConfig, *, enabled: bool = True, window: Window | None = None
    ) -> Schedule:
        f = cfg.fields
        trigger = build_trigger(cfg)
        params = cfg.params.model_dump(mode="json")
        own_window = f.window or window
        definition = {
            "task": cfg.task,
            "trigger": repr(trigger),
            "params": params,
            "priority": f.priority,
            "run_at_startup": f.run_at_startup,
            "initial_delay": f.initial_delay_seconds,
            "jitter": f.jitter_seconds,
            "window": own_window.model_dump() if own_window else None,
            "timezone": f.timezone,
            "conditions": [f.not_on_battery, f.max_cpu_percent, sorted(f.not_while)],
            "after": sorted(f.after),
        }
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
        return cls(
            name=cfg.name,
            task=cfg.task,
            trigger=trigger,
            params=params,
            priority=Priority.parse(f.priority),
            enabled=enabled and f.enabled,
            run_at_startup=f.run_at_startup,
            initial_delay=f.initial_delay_seconds,
            jitter=f.jitter_seconds,
            window=own_window,
            timezone=f.timezone,
            not_on_battery=f.not_on_battery,
            max_cpu_percent=f.max_cpu_percent,
            not_while=tuple(f.not_while),
            after=tuple(f.after),
            definition_hash=digest[:16],
        )


def build_trigger(cfg: ScheduleConfig) -> Trigger:
    f = cfg.fields
    if f.interval is not None:
        return IntervalTrigger(f.interval)
    if f.cron is not None:
        return CronTrigger(f.cron, f.timezone)
    return ManualTrigger()
