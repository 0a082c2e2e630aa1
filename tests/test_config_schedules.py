"""Config (DESIGN.md §5): the reference block, the six defaults and the key-by-key merge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from ucore.foundation.config import (
    DEFAULT_SCHEDULES,
    LoadedConfig,
    ScheduleConfig,
    TaskParams,
    load_config,
    params_model,
    parse_config,
    register_task_params,
)
from ucore.foundation.config import params as params_module
from ucore.foundation.config.params import (
    BackgroundVerificationParams,
    CacheCleanupParams,
    DatabaseCleanupParams,
    DatabaseOptimizationParams,
    LogRotationParams,
    OrphanedCleanupParams,
    SleepParams,
)
from ucore.foundation.errors import ConfigError

# The block of the reference note, exactly as written there.
REFERENCE_BLOCK = """
{
  "maintenance": {"enabled": true, "schedule": {
      "background_verification": {"interval_minutes": 5},
      "database_optimization": {"interval_hours": 24, "initial_delay_seconds": 300},
      "cache_cleanup": {"interval_hours": 6, "max_cache_size_gb": 10, "max_age_days": 30},
      "orphaned_cleanup": {"interval_hours": 12},
      "log_rotation": {"interval_hours": 24, "max_log_files": 10, "max_log_size_mb": 100},
      "database_cleanup": {"interval_days": 7, "task_retention_days": 30,
                           "journal_retention_days": 90}}}
}
"""

SIX = [
    "background_verification",
    "database_optimization",
    "cache_cleanup",
    "orphaned_cleanup",
    "log_rotation",
    "database_cleanup",
]

#: name -> (interval in seconds, initial delay, not_while, the task's parameters)
EXPECTED_DEFAULTS: dict[str, tuple[float, float, list[str], dict[str, Any]]] = {
    "background_verification": (300.0, 0.0, [], {"scan_on_drift": True}),
    "database_optimization": (
        86400.0,
        300.0,
        ["library_scan"],
        {"max_free_fraction": 0.2, "vacuum": False},
    ),
    "cache_cleanup": (21600.0, 0.0, [], {"max_cache_size_gb": 10.0, "max_age_days": 30.0}),
    "orphaned_cleanup": (
        43200.0,
        0.0,
        [],
        {"grace_hours": 24.0, "max_missing_fraction": 0.5, "force": False},
    ),
    "log_rotation": (86400.0, 0.0, [], {"max_log_files": 10, "max_log_size_mb": 100.0}),
    "database_cleanup": (
        604800.0,
        0.0,
        [],
        {"task_retention_days": 30.0, "journal_retention_days": 90.0},
    ),
}

PARAM_MODELS = {
    "background_verification": BackgroundVerificationParams,
    "database_optimization": DatabaseOptimizationParams,
    "cache_cleanup": CacheCleanupParams,
    "orphaned_cleanup": OrphanedCleanupParams,
    "log_rotation": LogRotationParams,
    "database_cleanup": DatabaseCleanupParams,
}


def parse(raw: dict[str, Any], tmp_path: Path) -> LoadedConfig:
    return parse_config(raw, data_dir=tmp_path, env={})


def schedule(raw_schedule: dict[str, Any], tmp_path: Path) -> dict[str, ScheduleConfig]:
    return parse({"maintenance": {"schedule": raw_schedule}}, tmp_path).schedules


def assert_defaults(schedules: dict[str, ScheduleConfig]) -> None:
    assert list(schedules) == SIX
    for name, (interval, delay, not_while, params) in EXPECTED_DEFAULTS.items():
        s = schedules[name]
        assert s.name == name
        assert s.task == name
        assert s.fields.enabled is True
        assert s.fields.interval == pytest.approx(interval), name
        assert s.fields.cron is None
        assert s.fields.initial_delay_seconds == delay, name
        assert s.fields.not_while == not_while, name
        assert s.fields.after == []
        assert type(s.params) is PARAM_MODELS[name]
        dumped = s.params.model_dump()
        assert dumped.pop("time_budget_seconds") is None
        assert dumped.pop("dry_run") is False  # every maintenance task takes it
        assert dumped == params, name


# -- the reference block and the defaults -------------------------------------------------


def test_reference_block_loads_exactly_as_written(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(REFERENCE_BLOCK, encoding="utf-8")
    loaded = load_config(path, env={})
    assert loaded.source == path
    assert loaded.config.maintenance.enabled is True
    assert_defaults(loaded.schedules)
    # the interval keys are the ones written, in their own unit
    s = loaded.schedules
    assert s["background_verification"].fields.interval_minutes == 5
    assert s["database_optimization"].fields.interval_hours == 24
    assert s["cache_cleanup"].fields.interval_hours == 6
    assert s["orphaned_cleanup"].fields.interval_hours == 12
    assert s["log_rotation"].fields.interval_hours == 24
    assert s["database_cleanup"].fields.interval_days == 7
    assert s["database_cleanup"].fields.interval_hours is None


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"maintenance": {}},
        {"maintenance": {"enabled": True}},
        {"maintenance": {"schedule": {}}},
    ],
    ids=["no-maintenance", "empty-maintenance", "enabled-only", "empty-schedule"],
)
def test_missing_maintenance_gives_the_six_defaults(raw: dict[str, Any], tmp_path: Path) -> None:
    assert_defaults(parse(raw, tmp_path).schedules)


def test_no_file_at_all_gives_the_defaults(tmp_path: Path) -> None:
    loaded = load_config(data_dir=tmp_path, env={})
    assert loaded.source is None
    assert loaded.locations.config_file == tmp_path / "config.json"
    assert_defaults(loaded.schedules)


def test_maintenance_disabled_keeps_the_schedules(tmp_path: Path) -> None:
    loaded = parse({"maintenance": {"enabled": False}}, tmp_path)
    assert loaded.config.maintenance.enabled is False
    assert list(loaded.schedules) == SIX


def test_defaults_table_matches_the_design() -> None:
    assert list(DEFAULT_SCHEDULES) == SIX


def test_effective_config_round_trips(tmp_path: Path) -> None:
    """What ``config show`` prints is itself a valid config giving the same schedules."""
    first = parse(json.loads(REFERENCE_BLOCK), tmp_path)
    doc = first.effective(redact=False)
    second = parse(doc, tmp_path)
    assert {n: s.to_json() for n, s in second.schedules.items()} == doc["maintenance"]["schedule"]
    assert {n: s.task for n, s in second.schedules.items()} == {n: n for n in SIX}
    assert second.locations == first.locations


# -- key-by-key merge -------------------------------------------------------------------


def test_omitted_schedules_keep_their_defaults(tmp_path: Path) -> None:
    s = schedule({"cache_cleanup": {"max_age_days": 7}}, tmp_path)
    assert list(s) == SIX
    assert s["cache_cleanup"].params.max_age_days == 7
    # the rest of cache_cleanup kept
    assert s["cache_cleanup"].fields.interval == 6 * 3600
    assert s["cache_cleanup"].params.max_cache_size_gb == 10
    # other schedules untouched
    assert s["orphaned_cleanup"].fields.interval == 12 * 3600
    assert s["orphaned_cleanup"].params.grace_hours == 24


def test_trigger_key_replaces_the_default_trigger(tmp_path: Path) -> None:
    s = schedule({"cache_cleanup": {"cron": "0 3 * * *"}}, tmp_path)["cache_cleanup"]
    assert s.fields.cron == "0 3 * * *"
    assert s.fields.interval is None
    assert s.fields.interval_hours is None
    # the parameters were not part of the trigger
    assert s.params.max_cache_size_gb == 10
    assert s.params.max_age_days == 30


def test_cron_with_timezone(tmp_path: Path) -> None:
    s = schedule(
        {"background_verification": {"cron": "*/10 * * * *", "timezone": "Europe/Berlin"}},
        tmp_path,
    )["background_verification"]
    assert (s.fields.cron, s.fields.timezone, s.fields.interval) == (
        "*/10 * * * *",
        "Europe/Berlin",
        None,
    )


def test_interval_in_another_unit_replaces_the_default_interval(tmp_path: Path) -> None:
    # default is interval_hours 6; giving minutes must not leave two intervals
    s = schedule({"cache_cleanup": {"interval_minutes": 90}}, tmp_path)["cache_cleanup"]
    assert s.fields.interval == 90 * 60
    assert s.fields.interval_hours is None


def test_database_optimization_keeps_delay_and_not_while(tmp_path: Path) -> None:
    s = schedule({"database_optimization": {"interval_hours": 12}}, tmp_path)
    db = s["database_optimization"]
    assert db.fields.interval == 12 * 3600
    assert db.fields.initial_delay_seconds == 300
    assert db.fields.not_while == ["library_scan"]
    assert db.params.max_free_fraction == 0.2


def test_other_keys_override_one_by_one(tmp_path: Path) -> None:
    s = schedule(
        {
            "orphaned_cleanup": {"force": True},
            "database_optimization": {"vacuum": True, "priority": "normal"},
            "log_rotation": {"enabled": False, "max_log_files": 3},
        },
        tmp_path,
    )
    o = s["orphaned_cleanup"]
    assert (o.params.force, o.params.grace_hours, o.params.max_missing_fraction) == (
        True,
        24,
        0.5,
    )
    assert o.fields.interval == 12 * 3600
    d = s["database_optimization"]
    assert (d.params.vacuum, d.fields.priority, d.fields.initial_delay_seconds) == (
        True,
        "normal",
        300,
    )
    assert d.fields.not_while == ["library_scan"]
    lr = s["log_rotation"]
    assert (lr.fields.enabled, lr.params.max_log_files, lr.params.max_log_size_mb) == (
        False,
        3,
        100,
    )
    assert lr.fields.interval == 24 * 3600


def test_not_while_given_replaces_the_list(tmp_path: Path) -> None:
    s = schedule({"database_optimization": {"not_while": []}}, tmp_path)
    assert s["database_optimization"].fields.not_while == []


@settings(max_examples=40, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "max_cache_size_gb": st.floats(0.001, 1e6),
            "max_age_days": st.floats(0, 1e4),
            "priority": st.sampled_from(["high", "normal", "low"]),
            "jitter_seconds": st.floats(0, 1e4),
            "enabled": st.booleans(),
        },
    )
)
def test_merge_property_non_trigger_keys(override: dict[str, Any]) -> None:
    """Any set of non-trigger keys overrides exactly those keys and keeps the rest."""
    s = parse_config(
        {"maintenance": {"schedule": {"cache_cleanup": override}}},
        data_dir=Path("/nonexistent-ucore-test"),
        env={},
    ).schedules["cache_cleanup"]
    flat = s.to_json()
    expected = {"interval_hours": 6.0, "max_cache_size_gb": 10.0, "max_age_days": 30.0}
    expected |= {"priority": "low", "jitter_seconds": 0.0, "enabled": True}
    expected |= override
    for key, value in expected.items():
        assert flat[key] == value, key
    assert s.fields.interval == 6 * 3600


# -- custom schedules and registered task parameters ------------------------------------


def test_custom_schedule_validated_by_the_sleep_task(tmp_path: Path) -> None:
    s = schedule({"tick": {"task": "sleep", "interval_seconds": 2, "seconds": 0.2}}, tmp_path)
    assert list(s) == [*SIX, "tick"]
    tick = s["tick"]
    assert tick.task == "sleep"
    assert tick.fields.interval == 2.0
    assert isinstance(tick.params, SleepParams)
    assert tick.params.seconds == 0.2
    assert tick.params.fail is False


def test_custom_schedule_with_a_key_of_another_task_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        schedule({"tick": {"task": "sleep", "interval_seconds": 2, "max_age_days": 3}}, tmp_path)
    assert info.value.problems == ["maintenance.schedule.tick.max_age_days: unknown key"]


def test_custom_schedule_without_a_trigger_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        schedule({"tick": {"task": "sleep", "seconds": 1}}, tmp_path)
    (line,) = info.value.problems
    assert line.startswith("maintenance.schedule.tick: no trigger")


def test_a_schedule_after_another_needs_no_trigger_of_its_own(tmp_path: Path) -> None:
    s = schedule({"tock": {"task": "sleep", "after": ["cache_cleanup"]}}, tmp_path)
    assert s["tock"].fields.after == ["cache_cleanup"]
    assert s["tock"].fields.interval is None


def test_a_time_budget_is_accepted_for_every_task(tmp_path: Path) -> None:
    s = schedule({n: {"time_budget_seconds": 60} for n in SIX}, tmp_path)
    assert all(s[n].params.time_budget_seconds == 60 for n in SIX)


class _CustomParams(TaskParams):
    level: int = Field(default=1, gt=0)
    label: str = "x"


class _OtherParams(TaskParams):
    pass


@pytest.fixture
def private_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by the test vanish after it."""
    monkeypatch.setattr(params_module, "_REGISTRY", dict(params_module._REGISTRY))


@pytest.mark.usefixtures("private_registry")
def test_registered_task_params_validate_a_schedule(tmp_path: Path) -> None:
    assert params_model("foundation_test_task") is None
    with pytest.raises(ConfigError) as info:
        schedule({"mine": {"task": "foundation_test_task", "interval_hours": 1}}, tmp_path)
    assert (
        "maintenance.schedule.mine.task: unknown task 'foundation_test_task'"
        in (info.value.problems[0])
    )

    register_task_params("foundation_test_task", _CustomParams)
    register_task_params("foundation_test_task", _CustomParams)  # same model again: harmless
    assert params_model("foundation_test_task") is _CustomParams

    s = schedule(
        {
            "mine": {"task": "foundation_test_task", "interval_hours": 1, "level": 3},
            # named like the task: "task" may be left out
            "foundation_test_task": {"cron": "0 * * * *"},
        },
        tmp_path,
    )
    assert isinstance(s["mine"].params, _CustomParams)
    assert s["mine"].params.level == 3
    assert s["mine"].fields.interval == 3600
    assert s["foundation_test_task"].task == "foundation_test_task"
    assert s["foundation_test_task"].params.level == 1

    with pytest.raises(ConfigError) as info:
        schedule(
            {
                "mine": {
                    "task": "foundation_test_task",
                    "interval_hours": 1,
                    "level": 0,
                    "seconds": 1,
                }
            },
            tmp_path,
        )
    assert sorted(info.value.problems) == [
        "maintenance.schedule.mine.level: must be > 0",
        "maintenance.schedule.mine.seconds: unknown key",
    ]


@pytest.mark.usefixtures("private_registry")
def test_register_task_params_refuses_replacing_or_non_models() -> None:
    register_task_params("foundation_test_task2", _CustomParams)
    with pytest.raises(ValueError, match="already"):
        register_task_params("foundation_test_task2", _OtherParams)
    with pytest.raises(ValueError, match="already"):
        register_task_params("sleep", _OtherParams)
    with pytest.raises(TypeError):
        register_task_params("foundation_test_task3", dict)  # type: ignore[arg-type]
    assert params_model("sleep") is SleepParams
