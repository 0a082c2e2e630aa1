"""``ucore maintenance list|run`` through the real console script (issue 8, Deliver 6).

Each command is a subprocess with ``--data-dir`` and HOME in the test's tmp_path; no service
runs, so ``--wait`` runs the task in the CLI process itself (runner mode).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from maint_helpers import damaged_ucore

RunUcore = Any


@pytest.fixture
def cli(ucore_cli: RunUcore, tmp_path: Path) -> RunUcore:
    data = tmp_path / "data"

    def go(*args: str) -> subprocess.CompletedProcess[str]:
        return ucore_cli("--data-dir", str(data), *args)

    return go


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    no_traceback(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_run_dry_run_wait_json(cli: RunUcore) -> None:
    proc = cli("maintenance", "run", "database_cleanup", "--dry-run", "--wait", "--json")
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    task = json.loads(proc.stdout)  # exactly one JSON document
    assert task["name"] == "database_cleanup"
    assert task["state"] == "completed"
    assert task["origin"] == "manual"
    assert task["params"]["dry_run"] is True
    assert task["result"]["dry_run"] is True
    assert task["result"]["partial"] is False
    for key in ("tasks_deleted", "history_deleted", "journal_deleted", "summaries_written"):
        assert task["result"][key] == 0


def test_run_wait_plain_and_list(cli: RunUcore) -> None:
    proc = cli("maintenance", "run", "database_optimization", "--wait")
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert "completed" in proc.stdout
    assert cli("maintenance", "run", "database_cleanup", "--wait").returncode == 0
    listed = cli("maintenance", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert isinstance(rows, list)
    by_name = {r["name"]: r for r in rows}
    assert {"background_verification", "database_optimization", "database_cleanup"} <= set(by_name)
    for row in rows:
        assert {"name", "schedule", "enabled", "last_run", "last_result", "next_run"} <= set(row)
    assert by_name["background_verification"]["schedule"] == "every 5 minutes"
    assert by_name["database_cleanup"]["schedule"] == "every 7 days"
    assert by_name["database_optimization"]["enabled"] is True
    assert by_name["background_verification"]["last_run"] is None
    assert by_name["background_verification"]["last_result"] is None
    assert by_name["background_verification"]["next_run"].endswith("Z")
    opt = by_name["database_optimization"]
    assert opt["last_run"]["state"] == "completed"
    assert opt["last_result"].startswith("check ok")
    cleanup = by_name["database_cleanup"]
    assert cleanup["last_result"] == "deleted 0 tasks, 0 history rows, 0 journal entries"
    # plain: one row per schedule, the result in words
    plain = cli("maintenance", "list")
    assert plain.returncode == 0, plain.stderr
    assert "deleted 0 tasks, 0 history rows, 0 journal entries" in plain.stdout
    assert "every 5 minutes" in plain.stdout


def test_unknown_task_is_a_usage_error(cli: RunUcore) -> None:
    proc = cli("maintenance", "run", "nope")
    assert proc.returncode == 2
    assert "nope" in one_line_error(proc)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("param", "word"),
    [("task_retention_days=-1", "task_retention_days"), ("no_such_key=1", "no_such_key")],
)
def test_bad_parameter_is_a_usage_error(cli: RunUcore, param: str, word: str) -> None:
    proc = cli("maintenance", "run", "database_cleanup", "--param", param, "--wait")
    assert proc.returncode == 2
    assert word in one_line_error(proc)
    assert proc.stdout == ""


def test_run_now_merges_identical_and_refuses_different(cli: RunUcore) -> None:
    first = cli("maintenance", "run", "background_verification")
    assert first.returncode == 0, first.stderr
    task_id = int(first.stdout.split()[0])
    second = cli("maintenance", "run", "background_verification", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["id"] == task_id  # merged
    third = cli("maintenance", "run", "background_verification")
    assert third.returncode == 0
    assert third.stdout.split()[0] == str(task_id)
    other = cli("maintenance", "run", "background_verification", "--param", "scan_on_drift=false")
    assert other.returncode == 1
    assert "already running" in one_line_error(other)


def test_the_three_tasks_on_the_demo_library(cli: RunUcore, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert cli("demo", "create", str(demo), "--files", "30").returncode == 0
    assert cli("library", "add", str(demo)).returncode == 0
    assert cli("library", "scan", "--wait").returncode == 0
    proc = cli("maintenance", "run", "background_verification", "--wait", "--json")
    assert proc.returncode == 0, proc.stderr
    roots = json.loads(proc.stdout)["result"]["roots"]
    assert [(r["status"], r["db_count"], r["disk_count"]) for r in roots] == [("ok", 30, 30)]
    for name in ("database_optimization", "database_cleanup"):
        proc = cli("maintenance", "run", name, "--wait", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["state"] == "completed"


def test_a_failed_run_exits_1_and_status_check_reports_it(cli: RunUcore, tmp_path: Path) -> None:
    proc = damaged_ucore(
        tmp_path, "maintenance", "run", "database_optimization", "--wait", "--json"
    )
    assert proc.returncode == 1, proc.stderr
    no_traceback(proc)
    task = json.loads(proc.stdout)  # the final task object, on failure too
    assert task["state"] == "failed"
    assert "quick_check" in task["error"]
    check = cli("status", "--check")
    assert check.returncode == 1
    assert any(
        "database_optimization" in line and "quick_check" in line
        for line in check.stdout.splitlines()
    ), check.stdout
    listed = json.loads(cli("maintenance", "list", "--json").stdout)
    opt = next(r for r in listed if r["name"] == "database_optimization")
    assert opt["last_result"].startswith("failed")
