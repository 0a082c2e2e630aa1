"""The schema of one schedule under ``maintenance.schedule`` and the six defaults.

A schedule's entry is flat: the schedule's own keys (trigger, window, conditions, …) and its
task's parameters side by side, exactly as in the reference block. :func:`validate_schedule`
checks both at once with a model made of the schedule fields plus the task's parameter model.
"""

from __future__ import annotations

import re
from datetime import time
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from ucore.foundation.config.params import TaskParams, params_model

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

INTERVAL_KEYS = ("interval_seconds", "interval_minutes", "interval_hours", "interval_days")
#: Keys that make up a schedule's trigger: giving any of them replaces the default trigger.
TRIGGER_KEYS = (*INTERVAL_KEYS, "cron", "timezone")
_INTERVAL_UNIT = {
    "interval_seconds": 1,
    "interval_minutes": 60,
    "interval_hours": 3600,
    "interval_days": 86400,
}

Priority = Literal["high", "normal", "low"]


class Window(BaseModel):
    """A daily time window in local time; ``end`` before ``start`` crosses midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be a time as HH:MM (00:00 to 23:59)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def end_time(self) -> time:
        return time.fromisoformat(self.end)


PositiveNumber = Annotated[float, Field(gt=0)]


class ScheduleFields(BaseModel):
    """The keys a schedule has whatever its task is."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    task: str | None = None
    enabled: bool = True
    interval_seconds: PositiveNumber | None = None
    interval_minutes: PositiveNumber | None = None
    interval_hours: PositiveNumber | None = None
    interval_days: PositiveNumber | None = None
    cron: str | None = None
    timezone: str | None = None
    run_at_startup: bool = False
    initial_delay_seconds: Annotated[float, Field(ge=0)] = 0.0
    jitter_seconds: Annotated[float, Field(ge=0)] = 0.0
    priority: Priority = "low"
    window: Window | None = None
    not_on_battery: bool = False
    max_cpu_percent: Annotated[float, Field(gt=0, le=100)] | None = None
    not_while: list[str] = Field(default_factory=list)
    after: list[str] = Field(default_factory=list)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from cronsim import CronSim, CronSimError

        from ucore.foundation.clock import SystemClock

        try:
            CronSim(value, SystemClock().now())
        except CronSimError as exc:
            raise ValueError(f"not a valid cron expression: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleFields:
        given = [k for k in INTERVAL_KEYS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one interval, not {', '.join(given)}")
        if given and self.cron is not None:
            raise ValueError(f"give either {given[0]} or cron, not both")
        if self.timezone is not None and self.cron is None and self.window is None:
            raise ValueError("timezone applies to a cron trigger or a window only")
        if not given and self.cron is None and not self.run_at_startup and not self.after:
            raise ValueError(
                "no trigger: give interval_seconds|minutes|hours|days, cron, "
                "run_at_startup or after"
            )
        return self

    @property
    def interval(self) -> float | None:
        """The interval in seconds, or None for a schedule without one."""
        for key in INTERVAL_KEYS:
            value = getattr(self, key)
            if value is not None:
                return float(value) * _INTERVAL_UNIT[key]
        return None


class ScheduleConfig(BaseModel):
    """A validated schedule: its name, its fields and its task's parameters."""

    model_config = ConfigDict(frozen=True)

    name: str
    fields: ScheduleFields
    params: TaskParams

    @property
    def task(self) -> str:
        return self.fields.task or self.name

    def to_json(self) -> dict[str, Any]:
        """The flat form the config file uses (keys left at None are omitted)."""
        out: dict[str, Any] = {"task": self.task}
        out.update(self.fields.model_dump(exclude_none=True, exclude={"task"}))
        # parameters keep their nulls: null means "off" (e.g. max_cache_size_gb)
        out.update(self.params.model_dump())
        return out


#: The six maintenance schedules and their defaults (DESIGN.md §5).
DEFAULT_SCHEDULES: dict[str, dict[str, Any]] = {
    "background_verification": {"interval_minutes": 5, "scan_on_drift": True},
    "database_optimization": {
        "interval_hours": 24,
        "initial_delay_seconds": 300,
        "max_free_fraction": 0.2,
        "vacuum": False,
        "not_while": ["library_scan"],
    },
    "cache_cleanup": {"interval_hours": 6, "max_cache_size_gb": 10, "max_age_days": 30},
    "orphaned_cleanup": {
        "interval_hours": 12,
        "grace_hours": 24,
        "max_missing_fraction": 0.5,
        "force": False,
    },
    "log_rotation": {"interval_hours": 24, "max_log_files": 10, "max_log_size_mb": 100},
    "database_cleanup": {
        "interval_days": 7,
        "task_retention_days": 30,
        "journal_retention_days": 90,
    },
}


def merge_schedule(default: dict[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """Merge a user's schedule entry key by key over its default.

    A trigger key in ``given`` replaces the default's whole trigger; other keys override one
    by one; an omitted key keeps its default.
    """
    if not default:
        return dict(given)
    merged = dict(default)
    if any(k in given for k in TRIGGER_KEYS):
        for key in TRIGGER_KEYS:
            merged.pop(key, None)
    merged.update(given)
    return merged


@cache
def _combined_model(task: str, params: type[TaskParams]) -> type[BaseModel]:
    # One model holding the schedule's fields and the task's parameters, so that a single
    # validation reports every problem with its key path and rejects keys of neither.
    return create_model(
        f"Schedule_{task}",
        __base__=(ScheduleFields, params),
        __config__=None,
    )


class UnknownTaskError(ValueError):
    pass


def validate_schedule(name: str, raw: dict[str, Any]) -> ScheduleConfig:
    """Validate one merged schedule entry; raises pydantic's ValidationError or UnknownTaskError."""
    task = raw.get("task", name)
    if not isinstance(task, str) or not task:
        raise UnknownTaskError("task: must be a task name")
    model = params_model(task)
    if model is None:
        raise UnknownTaskError(f"task: unknown task '{task}' (no registered parameters)")
    combined = _combined_model(task, model).model_validate(raw)
    values = combined.model_dump()
    field_names = set(ScheduleFields.model_fields)
    fields = ScheduleFields.model_validate({k: values[k] for k in field_names})
    params = model.model_validate({k: values[k] for k in model.model_fields})
    return ScheduleConfig(name=name, fields=fields, params=params)
