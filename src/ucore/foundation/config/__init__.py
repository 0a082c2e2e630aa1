"""Typed, validated configuration (DESIGN.md §5).

``load_config`` finds, reads and validates ``config.json``; an invalid file raises
:class:`~ucore.foundation.errors.ConfigError` with one problem per key path and nothing is
applied.
"""

from ucore.foundation.config.loader import LoadedConfig, find_config_file, load_config, parse_config
from ucore.foundation.config.models import (
    Config,
    DatabaseConfig,
    LoggingConfig,
    MaintenanceConfig,
    PathsConfig,
    TasksConfig,
)
from ucore.foundation.config.params import TaskParams, params_model, register_task_params
from ucore.foundation.config.schedule import DEFAULT_SCHEDULES, ScheduleConfig, Window

__all__ = [
    "DEFAULT_SCHEDULES",
    "Config",
    "DatabaseConfig",
    "LoadedConfig",
    "LoggingConfig",
    "MaintenanceConfig",
    "PathsConfig",
    "ScheduleConfig",
    "TaskParams",
    "TasksConfig",
    "Window",
    "find_config_file",
    "load_config",
    "params_model",
    "parse_config",
    "register_task_params",
]
