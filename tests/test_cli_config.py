"""The ``ucore`` console script (DESIGN.md §7): version, config check/show, errors, exit codes.

Every test runs the real script in a subprocess with HOME in a temporary folder and
``--data-dir`` (or UCORE_DATA_DIR) pointing into tmp_path, so nothing touches the real home.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ucore

#: the ``ucore_cli`` fixture of conftest.py: run ``ucore ARGS...`` in a subprocess
RunUcore = Callable[..., subprocess.CompletedProcess[str]]

REFERENCE = {
    "maintenance": {
        "enabled": True,
        "schedule": {
            "background_verification": {"interval_minutes": 5},
            "database_optimization": {"interval_hours": 24, "initial_delay_seconds": 300},
            "cache_cleanup": {"interval_hours": 6, "max_cache_size_gb": 10, "max_age_days": 30},
            "orphaned_cleanup": {"interval_hours": 12},
            "log_rotation": {"interval_hours": 24, "max_log_files": 10, "max_log_size_mb": 100},
            "database_cleanup": {
                "interval_days": 7,
                "task_retention_days": 30,
                "journal_retention_days": 90,
            },
        },
    }
}


def write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ucore: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_version(ucore_cli: RunUcore) -> None:
    r = ucore_cli("--version")
    assert r.returncode == 0
    assert r.stdout == f"ucore {ucore.__version__}\n"


def test_config_check_valid_file(ucore_cli: RunUcore, tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.json", REFERENCE)
    data = tmp_path / "data"
    for args in (
        ["config", "check", str(cfg), "--data-dir", str(data)],
        ["--config", str(cfg), "--data-dir", str(data), "config", "check"],
        ["config", "check", "--config", str(cfg), "--data-dir", str(data)],
    ):
        r = ucore_cli(*args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", ""), args
    # checking writes nothing: not even the data dir
    assert not data.exists()


def test_config_check_without_a_file_is_ok(ucore_cli: RunUcore, tmp_path: Path) -> None:
    r = ucore_cli("config", "check", "--data-dir", str(tmp_path / "fresh"))
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")


def test_config_check_finds_the_file_in_the_data_dir(ucore_cli: RunUcore, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "config.json", {"tasks": {"workers": "two"}})
    r = ucore_cli("config", "check", "--data-dir", str(data))
    line = assert_one_error_line(r)
    assert line == f"ucore: config: {data / 'config.json'}: tasks.workers: must be an integer"


def test_config_check_invalid_one_line_per_problem(ucore_cli: RunUcore, tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "bad.json",
        {
            "bogus": 1,
            "maintenance": {
                "schedule": {
                    "cache_cleanup": {"interval_hours": 0},
                    "orphaned_cleanup": 7,
                    "tick": {"task": "sleep", "interval_seconds": 1, "cron": "0 * * * *"},
                }
            },
        },
    )
    r = ucore_cli("config", "check", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    prefix = f"ucore: config: {cfg}: "
    assert sorted(r.stderr.splitlines()) == sorted(
        prefix + p
        for p in [
            "bogus: unknown key",
            "maintenance.schedule.cache_cleanup.interval_hours: must be > 0",
            "maintenance.schedule.orphaned_cleanup: must be an object",
            "maintenance.schedule.tick: give either interval_seconds or cron, not both",
        ]
    )


def test_config_show_refuses_an_invalid_file_too(ucore_cli: RunUcore, tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.json", {"logging": {"level": "LOUD"}})
    r = ucore_cli("config", "show", "--json", "--config", str(cfg), "--data-dir", str(tmp_path))
    line = assert_one_error_line(r)
    assert line.endswith("logging.level: must be one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{\n  "tasks": {\n    "workers": 2,\n  }\n}', "not valid JSON"),
        ("[]", "must be a JSON object"),
    ],
    ids=["broken-json", "not-an-object"],
)
def test_config_check_unreadable_json(
    content: str, expected: str, ucore_cli: RunUcore, tmp_path: Path
) -> None:
    cfg = write(tmp_path / "c.json", content)
    line = assert_one_error_line(
        ucore_cli("config", "check", str(cfg), "--data-dir", str(tmp_path))
    )
    assert line.startswith(f"ucore: config: {cfg}: {expected}")
    if expected == "not valid JSON":
        assert "(line 4, column 3)" in line


def test_config_check_missing_file_and_directory(ucore_cli: RunUcore, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    line = assert_one_error_line(ucore_cli("config", "check", str(missing)))
    assert line == f"ucore: config: {missing}: file not found"
    line = assert_one_error_line(
        ucore_cli("--config", str(tmp_path), "--data-dir", str(tmp_path), "config", "show")
    )
    assert line == f"ucore: config: {tmp_path}: is a directory, not a file"


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["config", "frobnicate"],
        ["config", "show", "--frobnicate"],
        ["--frobnicate", "config", "show"],
        ["config", "show", "--data-dir"],
        ["config"],
    ],
    ids=["command", "subcommand", "option", "global-option", "missing-value", "no-subcommand"],
)
def test_bad_command_line_is_one_line_and_exit_2(
    args: list[str], ucore_cli: RunUcore, tmp_path: Path
) -> None:
    r = ucore_cli(*args, env={"UCORE_DATA_DIR": str(tmp_path)})
    line = assert_one_error_line(r)
    assert "frobnicate" in line or "required" in line or "expected" in line, line


def test_no_command_exits_2(ucore_cli: RunUcore, tmp_path: Path) -> None:
    r = ucore_cli(env={"UCORE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert r.stdout == ""
    assert "usage" in r.stderr


def show_json(ucore_cli: RunUcore, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = ucore_cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert isinstance(doc, dict)
    return doc


def test_config_show_json_is_one_document_with_absolute_paths(
    ucore_cli: RunUcore, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    doc = show_json(ucore_cli, "config", "show", "--json", "--data-dir", str(data))
    assert doc["paths"] == {
        "data_dir": str(data),
        "cache_dir": str(data / "cache"),
        "log_dir": str(data / "logs"),
    }
    assert all(Path(p).is_absolute() for p in doc["paths"].values())
    assert doc["database"]["url"] == f"sqlite://{data}/ucore.db"
    schedules = doc["maintenance"]["schedule"]
    assert list(schedules) == [
        "background_verification",
        "database_optimization",
        "cache_cleanup",
        "orphaned_cleanup",
        "log_rotation",
        "database_cleanup",
    ]
    assert schedules["database_optimization"]["initial_delay_seconds"] == 300
    assert schedules["database_optimization"]["not_while"] == ["library_scan"]
    assert schedules["cache_cleanup"]["interval_hours"] == 6


def test_config_show_relative_data_dir_is_made_absolute(
    ucore_cli: RunUcore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    doc = show_json(ucore_cli, "config", "show", "--json", "--data-dir", "rel")
    assert doc["paths"]["data_dir"] == str(tmp_path / "rel")


def test_global_options_before_and_after_the_subcommand(
    ucore_cli: RunUcore, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cfg = write(tmp_path / "cfg" / "my.json", {"tasks": {"workers": 3}})
    variants = [
        ["config", "show", "--json", "--data-dir", str(data), "--config", str(cfg)],
        ["--data-dir", str(data), "--config", str(cfg), "config", "show", "--json"],
        ["--data-dir", str(data), "config", "--config", str(cfg), "show", "--json"],
        ["--config", str(cfg), "config", "show", "--data-dir", str(data), "--json"],
    ]
    docs = [show_json(ucore_cli, *args) for args in variants]
    assert all(d == docs[0] for d in docs)
    assert docs[0]["paths"]["data_dir"] == str(data)
    assert docs[0]["tasks"]["workers"] == 3


def test_plain_config_show_names_the_file(ucore_cli: RunUcore, tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = ucore_cli("--data-dir", str(data), "config", "show")
    assert r.returncode == 0
    first, *rest = r.stdout.splitlines()
    assert first == f"# config file: {data / 'config.json'} (not present: defaults)"
    assert json.loads("\n".join(rest))["paths"]["data_dir"] == str(data)


def test_data_dir_env_and_config_precedence(ucore_cli: RunUcore, tmp_path: Path) -> None:
    data = tmp_path / "envdata"
    write(data / "config.json", {"tasks": {"workers": 4}})
    env_cfg = write(tmp_path / "env.json", {"tasks": {"workers": 5}})
    opt_cfg = write(tmp_path / "opt.json", {"tasks": {"workers": 6}})

    doc = show_json(ucore_cli, "config", "show", "--json", env={"UCORE_DATA_DIR": str(data)})
    assert doc["paths"]["data_dir"] == str(data)
    assert doc["tasks"]["workers"] == 4

    env = {"UCORE_DATA_DIR": str(data), "UCORE_CONFIG": str(env_cfg)}
    assert show_json(ucore_cli, "config", "show", "--json", env=env)["tasks"]["workers"] == 5
    doc = show_json(ucore_cli, "config", "show", "--json", "--config", str(opt_cfg), env=env)
    assert doc["tasks"]["workers"] == 6
    assert doc["paths"]["data_dir"] == str(data)

    # --data-dir beats UCORE_DATA_DIR
    other = tmp_path / "other"
    doc = show_json(ucore_cli, "config", "show", "--json", "--data-dir", str(other), env=env)
    assert doc["paths"]["data_dir"] == str(other)


def test_platform_dirs_under_home(ucore_cli: RunUcore, tmp_path: Path) -> None:
    doc = show_json(ucore_cli, "config", "show", "--json")
    home = tmp_path / "cli-home"  # the HOME the fixture gives the subprocess
    assert doc["paths"]["data_dir"] == str(home / ".local" / "share" / "ucore")
    assert doc["paths"]["cache_dir"] == str(home / ".cache" / "ucore")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:hunter2@db.example:5432/lib",
        "postgresql://db.example/lib?user=app&password=hunter2",
    ],
)
def test_config_show_never_prints_the_password(
    url: str, ucore_cli: RunUcore, tmp_path: Path
) -> None:
    cfg = write(tmp_path / "c.json", {"database": {"url": url}})
    for args in (["config", "show", "--json"], ["config", "show"]):
        r = ucore_cli(*args, "--config", str(cfg), "--data-dir", str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert "hunter2" not in r.stdout + r.stderr
        assert "***" in r.stdout
        assert "db.example" in r.stdout
    # the same through the environment
    r = ucore_cli(
        "config", "show", "--json", "--data-dir", str(tmp_path), env={"UCORE_DATABASE_URL": url}
    )
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    assert json.loads(r.stdout)["database"]["url"].count("***") == 1


def test_config_show_redacts_a_keyword_dsn_from_the_env(
    ucore_cli: RunUcore, tmp_path: Path
) -> None:
    dsn = "host=db.example password=hunter2 dbname=lib"
    r = ucore_cli(
        "config", "show", "--json", "--data-dir", str(tmp_path), env={"UCORE_DATABASE_URL": dsn}
    )
    # refusing it (exit 2) would be fine too; printing the password never is
    assert r.returncode in (0, 2), r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    if r.returncode == 0:
        url = json.loads(r.stdout)["database"]["url"]
        assert url == "host=db.example password=*** dbname=lib"
