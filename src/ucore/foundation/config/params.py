"""Parameter models of tasks, and the registry that lets a task module add its own.

Every task's parameters are a :class:`TaskParams` model: unknown keys are errors and every
task takes ``time_budget_seconds``. The models of the built-in tasks are declared here because
they are part of the config file's schema (a schedule carries its task's parameters inline);
the task handlers in the layers above import them from here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class TaskParams(BaseModel):
    """Base of every task's parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    time_budget_seconds: PositiveFloat | None = None


class SleepParams(TaskParams):
    """The diagnostic ``sleep`` task."""

    seconds: NonNegativeFloat = 1.0
    fail: bool = False


class MaintenanceParams(TaskParams):
    """Parameters every maintenance task takes besides its own."""

    #: report what it would do, change nothing
    dry_run: bool = False


class BackgroundVerificationParams(MaintenanceParams):
    scan_on_drift: bool = True


class DatabaseOptimizationParams(MaintenanceParams):
    max_free_fraction: Fraction = 0.2
    vacuum: bool = False


class CacheCleanupParams(MaintenanceParams):
    # null turns a limit off; either can be off on its own.
    max_cache_size_gb: PositiveFloat | None = 10.0
    max_age_days: NonNegativeFloat | None = 30.0


class OrphanedCleanupParams(MaintenanceParams):
    grace_hours: NonNegativeFloat = 24.0
    max_missing_fraction: Fraction = 0.5
    force: bool = False


class LogRotationParams(MaintenanceParams):
    max_log_files: Annotated[int, Field(gt=0)] = 10
    max_log_size_mb: PositiveFloat = 100.0


class DatabaseCleanupParams(MaintenanceParams):
    task_retention_days: NonNegativeFloat = 30.0
    journal_retention_days: NonNegativeFloat = 90.0


class LibraryScanParams(TaskParams):
    root: Annotated[int, Field(gt=0)] | None = None


class ThumbnailsGenerateParams(TaskParams):
    root: Annotated[int, Field(gt=0)] | None = None


_REGISTRY: dict[str, type[TaskParams]] = {
    "sleep": SleepParams,
    "background_verification": BackgroundVerificationParams,
    "database_optimization": DatabaseOptimizationParams,
    "cache_cleanup": CacheCleanupParams,
    "orphaned_cleanup": OrphanedCleanupParams,
    "log_rotation": LogRotationParams,
    "database_cleanup": DatabaseCleanupParams,
    "library_scan": LibraryScanParams,
    "thumbnails_generate": ThumbnailsGenerateParams,
}


def register_task_params(task: str, model: type[TaskParams]) -> None:
    """Declare the parameter model of a task so that config and submit validate it.

    Register before loading the config that schedules the task. Registering the same model
    twice is harmless; replacing a task's model with another is an error.
    """
    if not issubclass(model, TaskParams):
        raise TypeError(f"the parameter model of '{task}' must subclass TaskParams")
    current = _REGISTRY.get(task)
    if current is not None and current is not model:
        raise ValueError(f"task '{task}' already has the parameter model {current.__name__}")
    _REGISTRY[task] = model


def params_model(task: str) -> type[TaskParams] | None:
    """The registered parameter model of ``task``, or None."""
    return _REGISTRY.get(task)


def known_tasks() -> list[str]:
    return sorted(_REGISTRY)
