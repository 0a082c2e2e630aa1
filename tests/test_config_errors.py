"""Config (DESIGN.md §5): a bad file is refused whole, one line per problem naming its key path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from ucore.foundation.config import load_config, parse_config
from ucore.foundation.errors import ConfigError


def problems_of(raw: Any, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, data_dir=tmp_path, env={})
    assert info.value.exit_code == 2
    # without a source, lines() are the problems themselves
    assert info.value.lines() == info.value.problems
    return info.value.problems


def sched(entry: dict[str, Any]) -> dict[str, Any]:
    return {"maintenance": {"schedule": entry}}


CC = "maintenance.schedule.cache_cleanup"

# (id, config, the exact list of problem lines)
BAD_CONFIGS: list[tuple[str, Any, list[str]]] = [
    # wrong types
    (
        "interval-string",
        sched({"cache_cleanup": {"interval_hours": "six"}}),
        [f"{CC}.interval_hours: must be a number"],
    ),
    (
        "interval-list",
        sched({"cache_cleanup": {"interval_hours": [6]}}),
        [f"{CC}.interval_hours: must be a number"],
    ),
    (
        "bool-number",
        sched({"orphaned_cleanup": {"force": 3}}),
        ["maintenance.schedule.orphaned_cleanup.force: must be true or false"],
    ),
    (
        "int-fraction",
        sched({"log_rotation": {"max_log_files": 2.5}}),
        ["maintenance.schedule.log_rotation.max_log_files: must be an integer"],
    ),
    (
        "not-while-string",
        sched({"database_optimization": {"not_while": 5}}),
        ["maintenance.schedule.database_optimization.not_while: must be a list"],
    ),
    (
        "enabled-object",
        {"maintenance": {"enabled": {}}},
        ["maintenance.enabled: must be true or false"],
    ),
    ("section-not-object", {"tasks": 3}, ["tasks: must be an object"]),
    ("maintenance-list", {"maintenance": []}, ["maintenance: must be an object"]),
    (
        "schedule-list",
        {"maintenance": {"schedule": []}},
        ["maintenance.schedule: must be an object"],
    ),
    ("schedule-entry-number", sched({"cache_cleanup": 3}), [f"{CC}: must be an object"]),
    ("workers-zero", {"tasks": {"workers": 0}}, ["tasks.workers: must be > 0"]),
    (
        "bad-level",
        {"logging": {"level": "LOUD"}},
        ["logging.level: must be one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"],
    ),
    (
        "bad-db-scheme",
        {"database": {"url": "mysql://u@h/db"}},
        ["database.url: must start with sqlite:/// or postgresql://"],
    ),
    (
        "bad-priority",
        sched({"cache_cleanup": {"priority": "urgent"}}),
        [f"{CC}.priority: must be one of 'high', 'normal' or 'low'"],
    ),
    # ranges
    (
        "interval-zero",
        sched({"cache_cleanup": {"interval_hours": 0}}),
        [f"{CC}.interval_hours: must be > 0"],
    ),
    (
        "interval-negative",
        sched({"cache_cleanup": {"interval_hours": -1}}),
        [f"{CC}.interval_hours: must be > 0"],
    ),
    (
        "interval-seconds-zero",
        sched({"tick": {"task": "sleep", "interval_seconds": 0}}),
        ["maintenance.schedule.tick.interval_seconds: must be > 0"],
    ),
    (
        "size-zero",
        sched({"cache_cleanup": {"max_cache_size_gb": 0}}),
        [f"{CC}.max_cache_size_gb: must be > 0"],
    ),
    (
        "log-size-negative",
        sched({"log_rotation": {"max_log_size_mb": -5}}),
        ["maintenance.schedule.log_rotation.max_log_size_mb: must be > 0"],
    ),
    (
        "fraction-zero",
        sched({"orphaned_cleanup": {"max_missing_fraction": 0}}),
        ["maintenance.schedule.orphaned_cleanup.max_missing_fraction: must be > 0"],
    ),
    (
        "fraction-above-one",
        sched({"database_optimization": {"max_free_fraction": 1.01}}),
        ["maintenance.schedule.database_optimization.max_free_fraction: must be ≤ 1"],
    ),
    (
        "retention-negative",
        sched({"database_cleanup": {"task_retention_days": -1}}),
        ["maintenance.schedule.database_cleanup.task_retention_days: must be ≥ 0"],
    ),
    (
        "journal-retention-negative",
        sched({"database_cleanup": {"journal_retention_days": -0.5}}),
        ["maintenance.schedule.database_cleanup.journal_retention_days: must be ≥ 0"],
    ),
    (
        "grace-negative",
        sched({"orphaned_cleanup": {"grace_hours": -1}}),
        ["maintenance.schedule.orphaned_cleanup.grace_hours: must be ≥ 0"],
    ),
    (
        "time-budget-zero",
        sched({"cache_cleanup": {"time_budget_seconds": 0}}),
        [f"{CC}.time_budget_seconds: must be > 0"],
    ),
    (
        "sleep-negative",
        sched({"tick": {"task": "sleep", "interval_seconds": 2, "seconds": -0.1}}),
        ["maintenance.schedule.tick.seconds: must be ≥ 0"],
    ),
    # unknown keys at every level
    ("unknown-top", {"maintenence": {}}, ["maintenence: unknown key"]),
    ("unknown-nested", {"paths": {"data_dri": "/x"}}, ["paths.data_dri: unknown key"]),
    ("unknown-maintenance", {"maintenance": {"enable": True}}, ["maintenance.enable: unknown key"]),
    (
        "unknown-in-schedule",
        sched({"cache_cleanup": {"max_cache_size": 5}}),
        [f"{CC}.max_cache_size: unknown key"],
    ),
    (
        "unknown-in-window",
        {"maintenance": {"window": {"start": "01:00", "end": "05:00", "days": 1}}},
        ["maintenance.window.days: unknown key"],
    ),
    # tasks and `after`
    (
        "unknown-task",
        sched({"mine": {"task": "defrag", "interval_hours": 1}}),
        ["maintenance.schedule.mine.task: unknown task 'defrag' (no registered parameters)"],
    ),
    (
        "unknown-task-by-name",
        sched({"defrag": {"interval_hours": 1}}),
        ["maintenance.schedule.defrag.task: unknown task 'defrag' (no registered parameters)"],
    ),
    (
        "unknown-after",
        sched({"cache_cleanup": {"after": ["log_rotaton"]}}),
        [f"{CC}.after.0: unknown schedule 'log_rotaton'"],
    ),
    (
        "after-self",
        sched({"cache_cleanup": {"after": ["cache_cleanup"]}}),
        [f"{CC}.after.0: a schedule cannot follow itself"],
    ),
    (
        "after-cycle-2",
        sched(
            {
                "cache_cleanup": {"after": ["log_rotation"]},
                "log_rotation": {"after": ["cache_cleanup"]},
            }
        ),
        [f"{CC}.after: dependency cycle cache_cleanup -> log_rotation -> cache_cleanup"],
    ),
    (
        "after-cycle-3",
        sched(
            {
                "a": {"task": "sleep", "after": ["b"]},
                "b": {"task": "sleep", "after": ["c"]},
                "c": {"task": "sleep", "after": ["a"]},
            }
        ),
        ["maintenance.schedule.a.after: dependency cycle a -> b -> c -> a"],
    ),
    # triggers
    (
        "two-intervals",
        sched({"cache_cleanup": {"interval_hours": 1, "interval_minutes": 30}}),
        [f"{CC}: give one interval, not interval_minutes, interval_hours"],
    ),
    (
        "cron-and-interval",
        sched({"cache_cleanup": {"interval_hours": 1, "cron": "0 * * * *"}}),
        [f"{CC}: give either interval_hours or cron, not both"],
    ),
    (
        "bad-cron",
        sched({"cache_cleanup": {"cron": "61 * * * *"}}),
        [f"{CC}.cron: not a valid cron expression: Bad minute"],
    ),
    ("bad-cron-fields", sched({"cache_cleanup": {"cron": "every day"}}), None),
    (
        "bad-timezone",
        sched({"cache_cleanup": {"cron": "0 3 * * *", "timezone": "Mars/Olympus"}}),
        [f"{CC}.timezone: unknown time zone 'Mars/Olympus'"],
    ),
    (
        "timezone-without-cron",
        sched({"cache_cleanup": {"interval_hours": 1, "timezone": "UTC"}}),
        [f"{CC}: timezone applies to a cron trigger or a window only"],
    ),
    # windows
    (
        "window-25h",
        {"maintenance": {"window": {"start": "25:00", "end": "03:00"}}},
        ["maintenance.window.start: must be a time as HH:MM (00:00 to 23:59)"],
    ),
    (
        "window-in-schedule",
        sched({"cache_cleanup": {"window": {"start": "01:00", "end": "24:00"}}}),
        [f"{CC}.window.end: must be a time as HH:MM (00:00 to 23:59)"],
    ),
    (
        "window-minutes",
        {"maintenance": {"window": {"start": "01:60", "end": "03:00"}}},
        ["maintenance.window.start: must be a time as HH:MM (00:00 to 23:59)"],
    ),
    (
        "window-empty",
        {"maintenance": {"window": {"start": "03:00", "end": "03:00"}}},
        ["maintenance.window: start and end must differ"],
    ),
    (
        "window-missing-end",
        {"maintenance": {"window": {"start": "03:00"}}},
        ["maintenance.window.end: required"],
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [pytest.param(raw, expected, id=name) for name, raw, expected in BAD_CONFIGS],
)
def test_bad_config_is_refused_naming_the_key_path(
    raw: Any, expected: list[str] | None, tmp_path: Path
) -> None:
    problems = problems_of(raw, tmp_path)
    if expected is None:  # only the path is fixed; the detail comes from cronsim
        assert len(problems) == 1
        assert problems[0].startswith(f"{CC}.cron: not a valid cron expression")
    else:
        assert problems == expected


@pytest.mark.parametrize(
    "entry",
    [
        {"task_retention_days": 0},
        {"journal_retention_days": 0},
        {"task_retention_days": 0, "journal_retention_days": 0},
    ],
)
def test_zero_retention_days_are_accepted(entry: dict[str, Any], tmp_path: Path) -> None:
    s = parse_config(sched({"database_cleanup": entry}), data_dir=tmp_path, env={})
    params = s.schedules["database_cleanup"].params
    for key, value in entry.items():
        assert getattr(params, key) == value


def test_other_boundaries_are_accepted(tmp_path: Path) -> None:
    s = parse_config(
        sched(
            {
                "orphaned_cleanup": {"grace_hours": 0, "max_missing_fraction": 1},
                "database_optimization": {"max_free_fraction": 1},
                "cache_cleanup": {"max_age_days": 0, "max_cache_size_gb": None},
            }
        ),
        data_dir=tmp_path,
        env={},
    ).schedules
    assert s["orphaned_cleanup"].params.grace_hours == 0
    assert s["orphaned_cleanup"].params.max_missing_fraction == 1
    assert s["database_optimization"].params.max_free_fraction == 1
    assert s["cache_cleanup"].params.max_age_days == 0
    assert s["cache_cleanup"].params.max_cache_size_gb is None


def test_window_across_midnight_is_valid(tmp_path: Path) -> None:
    loaded = parse_config(
        {"maintenance": {"window": {"start": "23:00", "end": "05:00"}}}, data_dir=tmp_path, env={}
    )
    window = loaded.config.maintenance.window
    assert window is not None
    assert (window.start_time.hour, window.end_time.hour) == (23, 5)


def test_invalid_after_target_reports_only_its_own_problem(tmp_path: Path) -> None:
    """A schedule that follows an invalid (but present) schedule is not called unknown."""
    problems = problems_of(
        sched(
            {
                "a": {"task": "sleep", "after": ["b"]},
                "b": {"task": "sleep", "interval_hours": -1},
            }
        ),
        tmp_path,
    )
    assert problems == ["maintenance.schedule.b.interval_hours: must be > 0"]


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        """{
  "bogus": 1,
  "paths": {"data_dri": "x"},
  "tasks": {"workers": 0},
  "database": {"url": "postgresql://u:pw@h/db"},
  "maintenance": {"window": {"start": "25:00", "end": "03:00"}, "schedule": {
      "cache_cleanup": {"interval_hours": 0, "max_age_days": "old"},
      "log_rotation": {"max_log_files": 10},
      "database_cleanup": {"task_retention_days": -1},
      "tick": {"task": "nope", "interval_seconds": 1},
      "orphaned_cleanup": 7
  }}
}""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    err = info.value
    assert err.source == str(path)
    assert sorted(err.problems) == sorted(
        [
            "bogus: unknown key",
            "paths.data_dri: unknown key",
            "tasks.workers: must be > 0",
            "maintenance.window.start: must be a time as HH:MM (00:00 to 23:59)",
            "maintenance.schedule.orphaned_cleanup: must be an object",
            f"{CC}.interval_hours: must be > 0",
            f"{CC}.max_age_days: must be a number",
            "maintenance.schedule.database_cleanup.task_retention_days: must be ≥ 0",
            "maintenance.schedule.tick.task: unknown task 'nope' (no registered parameters)",
        ]
    )
    # each line names the file, then the key path
    assert err.lines() == [f"{path}: {p}" for p in err.problems]
    assert len(set(err.lines())) == len(err.lines())


def test_a_valid_section_of_an_invalid_file_is_not_applied(tmp_path: Path) -> None:
    """Refused whole: nothing is returned, and a later good load sees only its own file."""
    path = tmp_path / "config.json"
    path.write_text('{"tasks": {"workers": 7}, "logging": {"level": "NOPE"}}', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [
        "logging.level: must be one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"
    ]
    path.write_text('{"logging": {"level": "DEBUG"}}', encoding="utf-8")
    loaded = load_config(path, env={})
    assert loaded.config.tasks.workers == 2
    assert loaded.config.logging.level == "DEBUG"


def test_config_error_never_shows_the_database_password(tmp_path: Path) -> None:
    problems = problems_of({"database": {"url": "mysql://u:hunter2@h/db"}}, tmp_path)
    assert all("hunter2" not in p for p in problems)


# -- reading the file ---------------------------------------------------------------------


def load_error(path: Path, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, **kwargs)
    return info.value


def test_broken_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "tasks": {"workers": 2},\n  "logging": }\n', encoding="utf-8")
    err = load_error(path)
    (line,) = err.lines()
    assert line.startswith(f"{path}: not valid JSON")
    m = re.search(r"line (\d+), column (\d+)", line)
    assert m is not None, line
    assert (int(m.group(1)), int(m.group(2))) == (3, 14)


@pytest.mark.parametrize("text", ["[1, 2]", '"maintenance"', "null", "42"])
def test_non_object_json_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    assert load_error(path).lines() == [f"{path}: must be a JSON object"]


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("", encoding="utf-8")
    assert "not valid JSON" in load_error(path).problems[0]


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"logging": {"level": "\xff"}}')
    assert load_error(path).problems == ["is not UTF-8 text"]


def test_missing_file_given_explicitly_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert load_error(path).lines() == [f"{path}: file not found"]


def test_missing_file_named_by_env_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_config(env={"UCORE_CONFIG": str(path)})
    assert info.value.problems == ["file not found"]


def test_missing_file_in_the_data_dir_means_defaults(tmp_path: Path) -> None:
    loaded = load_config(data_dir=tmp_path / "fresh", env={})
    assert loaded.source is None
    assert len(loaded.schedules) == 6


def test_directory_as_config_path_is_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path)
    assert err.problems == ["is a directory, not a file"]
    assert err.source == str(tmp_path)


def test_config_json_that_is_a_directory_in_the_data_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(data_dir=tmp_path, env={})
    assert info.value.problems == ["is a directory, not a file"]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode"
)
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}", encoding="utf-8")
    path.chmod(0)
    try:
        assert load_error(path).problems == ["cannot be read: permission denied"]
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"enabled": "yes"}, f"{CC}.enabled: must be true or false"),
        ({"enabled": "true"}, f"{CC}.enabled: must be true or false"),
        ({"interval_hours": True}, f"{CC}.interval_hours: must be a number"),
        ({"max_age_days": "30"}, f"{CC}.max_age_days: must be a number"),
    ],
    ids=["string-for-bool", "string-true-for-bool", "bool-for-number", "string-for-number"],
)
def test_no_lax_type_coercion(entry: dict[str, Any], expected: str, tmp_path: Path) -> None:
    """JSON of the wrong type is refused, not coerced ("yes" is not true, "30" not 30)."""
    assert problems_of(sched({"cache_cleanup": entry}), tmp_path) == [expected]


def test_strict_types_still_accept_integers_for_numbers(tmp_path: Path) -> None:
    s = parse_config(
        sched({"cache_cleanup": {"interval_hours": 2, "max_age_days": 3}}),
        data_dir=tmp_path,
        env={},
    ).schedules["cache_cleanup"]
    assert (s.fields.interval, s.params.max_age_days) == (7200.0, 3.0)
