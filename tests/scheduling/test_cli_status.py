"""``ucore status`` and ``ucore schedule next`` through the real console script (DESIGN.md §7).

Each command runs as a subprocess with ``--data-dir`` in the test's temporary folder and HOME
there too (the ``ucore_cli`` fixture of tests/conftest.py). One test also starts a real
``ucore run --no-live`` so that status shows a fired schedule and a live service.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

RunUcore = Callable[..., subprocess.CompletedProcess[str]]
UCORE = Path(sys.executable).parent / "ucore"  # the console script of this venv

SCHEDULE_KEYS = {"name", "task", "enabled", "trigger", "next_run", "last_run", "last_skip"}
DEFAULTS = {
    "background_verification",
    "database_optimization",
    "cache_cleanup",
    "orphaned_cleanup",
    "log_rotation",
    "database_cleanup",
}


def parse_iso(text: str) -> datetime:
    assert text.endswith("Z"), text
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None
    return value


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    config = {
        "maintenance": {
            "schedule": {"tick": {"task": "sleep", "interval_seconds": 60, "seconds": 0}}
        }
    }
    (d / "config.json").write_text(json.dumps(config))
    return d


@pytest.fixture
def ucore(ucore_cli: RunUcore, data_dir: Path) -> RunUcore:
    """``ucore --data-dir DATA ARGS...`` (HOME in the test's folder; see tests/conftest.py)."""
    assert UCORE.is_file(), f"console script missing: {UCORE}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return ucore_cli("--data-dir", str(data_dir), *args, timeout=30)

    return run


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_status_json_shape(ucore: RunUcore) -> None:
    before = datetime.now(UTC)
    result = ucore("status", "--json")
    after = datetime.now(UTC)
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    doc = json.loads(result.stdout)  # exactly one JSON document
    assert set(doc) == {"schedules", "running", "nodes", "service_alive"}
    assert doc["running"] == [] and doc["nodes"] == []
    assert doc["service_alive"] is False
    schedules = {s["name"]: s for s in doc["schedules"]}
    assert set(schedules) == {*DEFAULTS, "tick"}
    for s in doc["schedules"]:
        assert set(s) >= SCHEDULE_KEYS, s
        assert isinstance(s["enabled"], bool) and isinstance(s["trigger"], str)
        assert s["last_run"] is None and s["last_skip"] is None
    tick = schedules["tick"]
    assert tick["task"] == "sleep" and tick["enabled"] is True
    assert tick["trigger"] == "every minute"
    assert schedules["cache_cleanup"]["trigger"] == "every 6 hours"
    assert schedules["background_verification"]["trigger"] == "every 5 minutes"
    # no service has ever run: never fired = now + the initial delay
    assert before <= parse_iso(tick["next_run"]) <= after
    delayed = parse_iso(schedules["database_optimization"]["next_run"])
    assert before + timedelta(seconds=300) <= delayed <= after + timedelta(seconds=300)


def test_status_check_without_service(
    ucore: RunUcore,
) -> None:
    result = ucore("status", "--check")
    assert result.returncode == 1
    assert "no service is running" in result.stdout
    no_traceback(result)
    as_json = ucore("status", "--check", "--json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False
    assert any("no service is running" in p for p in doc["problems"])


def test_status_text_says_no_service(
    ucore: RunUcore,
) -> None:
    result = ucore("status")
    assert result.returncode == 0
    assert "no service is running" in result.stderr
    assert "tick" in result.stdout and "every minute" in result.stdout


def test_schedule_next(ucore: RunUcore) -> None:
    result = ucore("schedule", "next", "tick", "--count", "3", "--json")
    assert result.returncode == 0, result.stderr
    times = json.loads(result.stdout)
    assert isinstance(times, list) and len(times) == 3
    utc_times = [parse_iso(t["utc"]) for t in times]
    assert [b - a for a, b in itertools.pairwise(utc_times)] == [timedelta(seconds=60)] * 2
    assert [datetime.fromisoformat(t["local"]) for t in times] == utc_times

    weekly = json.loads(
        ucore("schedule", "next", "database_cleanup", "--count", "2", "--json").stdout
    )
    first, second = (parse_iso(t["utc"]) for t in weekly)
    assert second - first == timedelta(days=7)


@pytest.mark.parametrize(
    "args",
    [
        ("schedule", "next", "nope"),
        ("schedule", "next", "nope", "--json"),
        ("schedule", "next", "tick", "--count", "0"),
        ("schedule", "next", "tick", "--count", "x"),
    ],
)
def test_schedule_next_usage_errors(ucore: RunUcore, args: tuple[str, ...]) -> None:
    result = ucore(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    no_traceback(result)
    if "nope" in args:
        assert result.stderr.strip().splitlines()[0].startswith("ucore: unknown schedule 'nope'")


def test_status_with_a_running_service(ucore: RunUcore, data_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UCORE_", "XDG_"))}
    env["HOME"] = str(tmp_path / "cli-home")
    service = subprocess.Popen(
        [str(UCORE), "--data-dir", str(data_dir), "run", "--no-live"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            result = ucore("status", "--json")
            doc = json.loads(result.stdout) if result.returncode == 0 else {}
            tick = {s["name"]: s for s in doc.get("schedules", [])}.get("tick")
            if (
                tick
                and tick["last_run"]
                and tick["last_run"]["state"] == "completed"
                and doc["nodes"]
            ):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the service did not fire tick: {doc}")
        tick = {s["name"]: s for s in doc["schedules"]}["tick"]
        assert tick["last_run"]["origin"] == "schedule:tick"
        assert tick["last_run"]["name"] == "sleep"
        fired = parse_iso(tick["last_run"]["submitted_at"])
        assert parse_iso(tick["next_run"]) - fired == pytest.approx(
            timedelta(seconds=60), abs=timedelta(seconds=1)
        )
        assert [n["role"] for n in doc["nodes"]] == ["service"]
        assert doc["nodes"][0]["pid"] == service.pid
        # the six maintenance tasks are registered: their schedules wait for their due times
        for name in DEFAULTS:
            entry = {s["name"]: s for s in doc["schedules"]}[name]
            assert entry["last_skip"] is None, entry
            assert parse_iso(entry["next_run"]) > fired, entry

        check = ucore("status", "--check")
        assert check.returncode == 0, check.stdout
        assert check.stdout.strip() == "ok"
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    assert "Traceback" not in err
    assert "PeriodicTaskScheduler ready (7 tasks)" in err
