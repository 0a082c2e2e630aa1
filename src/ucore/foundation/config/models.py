"""The typed models of ``config.json`` (all sections but the schedules' inner schema).

Every model forbids unknown keys so that a typo is an error, never silently ignored. The
defaults here are the documented defaults (docs/config.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ucore.foundation.config.schedule import Window


class StrictModel(BaseModel):
    # strict: "yes" is not a bool and "4" not a number; a typo of type must not pass silently
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class PathsConfig(StrictModel):
    data_dir: str | None = None
    cache_dir: str | None = None
    log_dir: str | None = None


class DatabaseConfig(StrictModel):
    #: ``sqlite:///path`` or ``postgresql://…``; default: ucore.db in the data dir.
    url: str | None = None
    #: SQLite durability: FULL (a finished task survives power loss) or NORMAL.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    busy_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class TasksConfig(StrictModel):
    workers: Annotated[int, Field(gt=0)] = 2
    low_priority_slots: Annotated[int, Field(gt=0)] = 1
    shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 10.0
    lease_seconds: Annotated[float, Field(gt=0)] = 30.0
    max_interruptions: Annotated[int, Field(gt=0)] = 5
    progress_interval_seconds: Annotated[float, Field(gt=0)] = 1.0


class NotifyConfig(StrictModel):
    #: argv of a command run when a maintenance run fails; the task's JSON on its stdin.
    command: list[str] | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name a program (a non-empty list)")
        return value


class MaintenanceConfig(StrictModel):
    enabled: bool = True
    window: Window | None = None
    notify: NotifyConfig = NotifyConfig()
    #: As written in the file; the loader merges it over the defaults and validates each.
    schedule: dict[str, Any] = Field(default_factory=dict)


class Config(StrictModel):
    paths: PathsConfig = PathsConfig()
    database: DatabaseConfig = DatabaseConfig()
    logging: LoggingConfig = LoggingConfig()
    tasks: TasksConfig = TasksConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
