"""Notifications of failed maintenance runs: ``maintenance.notify.command`` (issue 8, Deliver 5)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from maint_helpers import AppFactory, damaged_ucore, run, wait_until

from ucore.app import App
from ucore.stores.records import TaskState

RECORDER = textwrap.dedent(
    """
    import sys
    data = sys.stdin.read()
    with open(sys.argv[1], "a", encoding="utf-8") as f:
        f.write(data.replace("\\n", " ") + "\\n")
    """
)

SLEEPER = textwrap.dedent(
    """
    import os, sys, time
    with open(sys.argv[1], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(30)
    """
)


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def damaged(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    async def quick_check() -> list[str]:
        return ["row 3 missing from index x"]

    monkeypatch.setattr(app.tasks.store, "quick_check", quick_check)


def notify_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ucore.maintenance"
        and r.levelno >= logging.ERROR
        and "notify" in r.getMessage()
    ]


async def test_a_failed_run_sends_the_task_json_a_completed_one_nothing(
    apps: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "notified.jsonl"
    recorder = script(tmp_path, "recorder.py", RECORDER)
    app = await apps(maintenance={"notify": {"command": [sys.executable, str(recorder), str(out)]}})
    ok = await run(app, "database_optimization")
    assert ok.state is TaskState.COMPLETED
    ok2 = await run(app, "database_cleanup", {"dry_run": True})
    assert ok2.state is TaskState.COMPLETED
    await damaged(app, monkeypatch)
    failed = await run(app, "database_optimization")
    assert failed.state is TaskState.FAILED

    def lines() -> list[dict[str, Any]]:
        if not out.exists():
            return []
        return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]

    await wait_until(lines, what="the notification")
    await asyncio.sleep(0.3)  # a notification of the completed runs would have come first
    got = lines()
    assert len(got) == 1, got
    task = got[0]
    assert task["id"] == failed.id
    assert task["name"] == "database_optimization"
    assert task["state"] == "failed"
    assert "quick_check" in task["error"]


async def test_a_command_that_hangs_is_killed_and_logged(
    apps: AppFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.maintenance")
    pid_file = tmp_path / "pid"
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    app = await apps(
        maintenance={
            "notify": {
                "command": [sys.executable, str(sleeper), str(pid_file)],
                "timeout_seconds": 0.5,
            }
        }
    )
    await damaged(app, monkeypatch)
    failed = await run(app, "database_optimization")
    assert failed.state is TaskState.FAILED
    errors = await wait_until(lambda: notify_errors(caplog), what="the kill to be logged")
    assert "killed" in errors[0], errors
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


async def test_a_missing_program_is_logged(
    apps: AppFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.maintenance")
    missing = str(tmp_path / "no-such-program")
    app = await apps(maintenance={"notify": {"command": [missing, "--flag"]}})
    await damaged(app, monkeypatch)
    failed = await run(app, "database_optimization")
    assert failed.state is TaskState.FAILED
    errors = await wait_until(lambda: notify_errors(caplog), what="the failure to be logged")
    assert missing in errors[0], errors
    # the app goes on: the next run works
    monkeypatch.undo()
    assert (await run(app, "database_optimization")).state is TaskState.COMPLETED


async def test_a_failing_command_is_logged(
    apps: AppFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.maintenance")
    failing = script(
        tmp_path,
        "failing.py",
        "import sys\nprint('mail server down', file=sys.stderr)\nsys.exit(3)\n",
    )
    app = await apps(maintenance={"notify": {"command": [sys.executable, str(failing)]}})
    await damaged(app, monkeypatch)
    assert (await run(app, "database_optimization")).state is TaskState.FAILED
    errors = await wait_until(lambda: notify_errors(caplog), what="the failure to be logged")
    assert "exit 3" in errors[0] and "mail server down" in errors[0], errors


# -- a failed run in a CLI runner (no service): the CLI exits soon after the failure ---------
SLOW_RECORDER = textwrap.dedent(
    """
    import sys, time
    time.sleep(1.5)
    data = sys.stdin.read()
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write(data)
    """
)


def write_config(tmp_path: Path, notify: dict[str, Any]) -> None:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "config.json").write_text(json.dumps({"maintenance": {"notify": notify}}))


def test_a_cli_runner_delivers_the_notification_before_it_exits(tmp_path: Path) -> None:
    out = tmp_path / "notified.json"
    recorder = script(tmp_path, "slow_recorder.py", SLOW_RECORDER)
    write_config(
        tmp_path, {"command": [sys.executable, str(recorder), str(out)], "timeout_seconds": 10}
    )
    proc = damaged_ucore(tmp_path, "maintenance", "run", "database_optimization", "--wait")
    assert proc.returncode == 1, proc.stderr
    # the notification, slower than a second, was not cut off by the CLI's exit
    assert out.exists(), proc.stderr
    task = json.loads(out.read_text())
    assert task["state"] == "failed" and "quick_check" in task["error"]


def test_a_cli_runner_kills_a_hung_command_at_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    write_config(
        tmp_path, {"command": [sys.executable, str(sleeper), str(pid_file)], "timeout_seconds": 2}
    )
    began = time.monotonic()
    proc = damaged_ucore(tmp_path, "maintenance", "run", "database_optimization", "--wait")
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - began < 20
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        os.kill(pid, 9)
        raise AssertionError("the hung notify command outlived the CLI (never killed)")
    assert "killed" in proc.stderr or "notify" in proc.stderr, proc.stderr
