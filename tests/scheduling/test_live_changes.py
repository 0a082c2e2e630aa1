"""Live changes (DESIGN.md §4, issue 6): ``app.scheduler.change(name, ScheduleChange(...))``
and ``ucore schedule set``.

A change is validated by the config models (an invalid one raises ConfigError and leaves the
file byte for byte as it was), written back atomically keeping every other key and its order
(a missing file is created), and takes effect at once: the next fire is recomputed from the
last fire and the sleeping loop is woken (the fake clock's next deadline moves without the
clock advancing). A hand edit of the file is picked up by the watcher (real time, with
``WATCH_SECONDS`` shortened); an invalid one is logged and the running schedules kept.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sched_helpers import (
    DEFAULT_NAMES,
    DEFAULTS_OFF,
    START,
    AppFactory,
    all_finished,
    at,
    idle,
    schedule_tasks,
    step,
    wait_until,
)

from ucore.app import App
from ucore.foundation import clock as clock_module
from ucore.foundation.config import load_config
from ucore.foundation.errors import ConfigError, UsageError
from ucore.scheduling import live
from ucore.scheduling.base import UnknownScheduleError
from ucore.scheduling.live import ScheduleChange, parse_every, parse_window
from ucore.testing import FakeClock

HOUR = 3600

#: A config file as a user might write it: sections in their own order, a custom schedule
#: with keys in their own order, the six defaults turned off (so the tick schedule alone
#: decides when the loop wakes).
DOCUMENT: dict[str, Any] = {
    "tasks": {"workers": 2, "lease_seconds": 10_000_000},
    "maintenance": {
        "schedule": {
            "other": {
                "task": "sleep",
                "priority": "normal",
                "seconds": 0.0,
                "interval_hours": 6,
                "initial_delay_seconds": 7200,
            },
            "tick": {"task": "sleep", "interval_seconds": HOUR, "seconds": 0},
            **{name: {"enabled": False} for name in DEFAULT_NAMES},
        }
    },
    "logging": {"level": "INFO"},
}


def write_document(path: Path, document: dict[str, Any]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=4) + "\n", encoding="utf-8")
    return path.read_bytes()


async def filed_app(apps: AppFactory, clock: FakeClock, document: dict[str, Any] = DOCUMENT) -> App:
    """A service whose config comes from ``data/config.json`` (written from ``document``)."""
    write_document(apps.data_dir / "config.json", document)
    return await apps(load_config(data_dir=apps.data_dir, env={}), clock)


def config_path(app: App) -> Path:
    path = app.config.locations.config_file
    assert path.parent.resolve() == app.config.locations.data_dir.resolve()
    return path


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


async def tick_state(app: App) -> Any:
    return (await app.tasks.store.schedule_states())["tick"]


async def started(apps: AppFactory, document: dict[str, Any] = DOCUMENT) -> tuple[App, FakeClock]:
    """The filed app, its tick fired at START (next due START + 1 h), the clock at +600 s."""
    clock = FakeClock(START)
    app = await filed_app(apps, clock, document)
    await idle(clock)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [START]
    await step(clock, 600)
    state = await tick_state(app)
    assert state.last_fire == START and state.next_fire == at(HOUR)
    return app, clock


# -- the API ------------------------------------------------------------------------------
def test_parse_every_and_window() -> None:
    assert parse_every("30m") == ("interval_minutes", 30)
    assert parse_every("6h") == ("interval_hours", 6)
    assert parse_every("45s") == ("interval_seconds", 45)
    assert parse_every("7d") == ("interval_days", 7)
    assert parse_every("1.5h") == ("interval_hours", 1.5)
    for bad in ("5x", "0m", "h", "-1h", ""):
        with pytest.raises(UsageError):
            parse_every(bad)
    assert parse_window("1:00-05:00") == {"start": "01:00", "end": "05:00"}
    for bad in ("01:00", "0100-0500", "a-b"):
        with pytest.raises(UsageError):
            parse_window(bad)


async def test_new_interval_written_back_recomputed_and_loop_woken(apps: AppFactory) -> None:
    app, clock = await started(apps)
    path = config_path(app)
    inode = path.stat().st_ino
    assert clock.next_deadline() == pytest.approx(HOUR - 600)

    changed = await app.scheduler.change("tick", ScheduleChange(every=("interval_minutes", 30)))

    # in effect at once: counted from the last fire (START), not from now (START + 600)
    assert changed.trigger.period == 1800
    state = await tick_state(app)
    assert state.next_fire == at(1800) and state.nominal_next == at(1800)
    # the sleeping loop was woken and sleeps until the new time; the clock did not move
    await wait_until(
        lambda: clock.next_deadline() == pytest.approx(1200),
        within=3,
        what="the loop to sleep until the new due time",
    )
    assert clock.now() == at(600)
    await step(clock, 1200)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [START, at(1800)]

    # written back: the tick entry changed, everything else as the user wrote it, in order
    doc = read(path)
    assert list(doc) == list(DOCUMENT)
    assert doc["tasks"] == DOCUMENT["tasks"] and doc["logging"] == DOCUMENT["logging"]
    schedules = doc["maintenance"]["schedule"]
    assert list(schedules) == list(DOCUMENT["maintenance"]["schedule"])
    other = DOCUMENT["maintenance"]["schedule"]["other"]
    assert list(schedules["other"].items()) == list(other.items())
    assert schedules["tick"] == {"task": "sleep", "seconds": 0, "interval_minutes": 30}
    for name in DEFAULT_NAMES:
        assert schedules[name] == {"enabled": False}
    # atomically: a new file renamed over the old one, nothing left behind, private
    assert path.stat().st_ino != inode
    assert leftovers(path.parent) == []
    assert path.stat().st_mode & 0o777 == 0o600
    # the file loads to what the process now runs
    assert load_config(data_dir=apps.data_dir, env={}).schedules["tick"].fields.interval == 1800


async def test_interrupted_write_leaves_the_file_as_it_was(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = await started(apps)
    path = config_path(app)
    before = path.read_bytes()
    calls: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        calls.append(str(src))
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)  # what the writer calls to rename
        with pytest.raises(OSError, match="disk full"):
            await app.scheduler.change("tick", ScheduleChange(every=("interval_minutes", 30)))
    # the temp file was in the same folder, then removed; the original is untouched
    assert len(calls) == 1 and Path(calls[0]).parent == path.parent
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []
    assert app.scheduler.schedules["tick"].trigger.period == HOUR
    assert (await tick_state(app)).next_fire == at(HOUR)


async def test_disable_and_enable(apps: AppFactory) -> None:
    app, clock = await started(apps)
    path = config_path(app)
    await app.scheduler.change("tick", ScheduleChange(enabled=False))
    assert read(path)["maintenance"]["schedule"]["tick"]["enabled"] is False
    status = next(s for s in await app.scheduler.status() if s.name == "tick")
    assert status.enabled is False and status.next_run is None
    await step(clock, HOUR)  # past the old due time
    await all_finished(app)
    assert len(await schedule_tasks(app)) == 1, "a disabled schedule fired"

    await app.scheduler.change("tick", ScheduleChange(enabled=True))
    assert read(path)["maintenance"]["schedule"]["tick"]["enabled"] is True
    # the missed due time fires once, at once (catch-up), without moving the clock
    tasks = await wait_until(
        lambda: _count_at_least(app, 2), within=3, what="the re-enabled schedule to fire"
    )
    assert tasks[1].submitted_at == clock.now() == at(HOUR + 600)
    status = next(s for s in await app.scheduler.status() if s.name == "tick")
    assert status.enabled is True


async def _count_at_least(app: App, n: int) -> list[Any] | None:
    found = await schedule_tasks(app)
    return found if len(found) >= n else None


async def test_new_window(apps: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    clock_module._local_zone.cache_clear()
    app, _ = await started(apps)
    await app.scheduler.change("tick", ScheduleChange(window={"start": "01:00", "end": "05:00"}))
    assert read(config_path(app))["maintenance"]["schedule"]["tick"]["window"] == {
        "start": "01:00",
        "end": "05:00",
    }
    state = await tick_state(app)
    assert state.nominal_next == at(HOUR)  # 13:00, outside: deferred
    assert (
        datetime(2026, 1, 6, 1, tzinfo=UTC) <= state.next_fire < datetime(2026, 1, 6, 5, tzinfo=UTC)
    )
    # and the schedule's own timezone
    await app.scheduler.change("tick", ScheduleChange(timezone="Asia/Tokyo"))
    state = await tick_state(app)  # 01:00–05:00 in Tokyo is 16:00–20:00 UTC
    assert (
        datetime(2026, 1, 5, 16, tzinfo=UTC)
        <= state.next_fire
        < datetime(2026, 1, 5, 20, tzinfo=UTC)
    )
    clock_module._local_zone.cache_clear()


async def test_new_params(apps: AppFactory) -> None:
    app, clock = await started(apps)
    await app.scheduler.change("tick", ScheduleChange(params={"seconds": 0.01}))
    entry = read(config_path(app))["maintenance"]["schedule"]["tick"]
    assert entry == {"task": "sleep", "interval_seconds": HOUR, "seconds": 0.01}
    assert app.scheduler.schedules["tick"].params["seconds"] == 0.01
    assert (await tick_state(app)).next_fire == at(HOUR)  # same trigger: same due time
    await step(clock, HOUR - 600)
    await all_finished(app)
    tasks = await schedule_tasks(app)
    assert [t.params["seconds"] for t in tasks] == [0, 0.01]


ZONED = {
    "task": "sleep",
    "seconds": 0,
    "cron": "0 3 * * *",
    "timezone": "Asia/Tokyo",
    "window": {"start": "01:00", "end": "05:00"},
}


async def test_new_trigger_keeps_the_zone_of_the_window(apps: AppFactory) -> None:
    """A schedule whose window (and cron) is in Tokyo time gets an interval: the interval
    replaces the cron, the window stays in Tokyo time."""
    app, _ = await started(apps, edited(lambda d: d["maintenance"]["schedule"].update(zoned=ZONED)))
    await app.scheduler.change("zoned", ScheduleChange(every=("interval_hours", 6)))
    entry = read(config_path(app))["maintenance"]["schedule"]["zoned"]
    assert entry == {
        "task": "sleep",
        "seconds": 0,
        "timezone": "Asia/Tokyo",
        "window": {"start": "01:00", "end": "05:00"},
        "interval_hours": 6,
    }
    assert app.scheduler.schedules["zoned"].timezone == "Asia/Tokyo"
    # and a new cron keeps it too
    await app.scheduler.change("zoned", ScheduleChange(cron="30 2 * * *"))
    entry = read(config_path(app))["maintenance"]["schedule"]["zoned"]
    assert entry["timezone"] == "Asia/Tokyo" and entry["cron"] == "30 2 * * *"


async def test_removing_the_window_of_an_interval_drops_its_zone(apps: AppFactory) -> None:
    zoned = {**ZONED, "interval_hours": 6}
    del zoned["cron"]
    app, _ = await started(apps, edited(lambda d: d["maintenance"]["schedule"].update(zoned=zoned)))
    await app.scheduler.change("zoned", ScheduleChange(clear_window=True))
    entry = read(config_path(app))["maintenance"]["schedule"]["zoned"]
    assert entry == {"task": "sleep", "seconds": 0, "interval_hours": 6}
    assert app.scheduler.schedules["zoned"].window is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (ScheduleChange(every=("interval_hours", -1)), "maintenance.schedule.tick.interval_hours"),
        (ScheduleChange(params={"bogus": 1}), "maintenance.schedule.tick.bogus"),
        (
            ScheduleChange(window={"start": "25:00", "end": "01:00"}),
            "maintenance.schedule.tick.window.start",
        ),
        (ScheduleChange(cron="not a cron"), "maintenance.schedule.tick.cron"),
        (ScheduleChange(timezone="Mars/Olympus"), "maintenance.schedule.tick"),
    ],
)
async def test_invalid_change_is_refused_and_the_file_unchanged(
    apps: AppFactory, change: ScheduleChange, problem: str
) -> None:
    app, _ = await started(apps)
    path = config_path(app)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    hash_before = app.scheduler.schedules["tick"].definition_hash
    with pytest.raises(ConfigError) as err:
        await app.scheduler.change("tick", change)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert leftovers(path.parent) == []
    assert app.scheduler.schedules["tick"].definition_hash == hash_before
    assert (await tick_state(app)).next_fire == at(HOUR)


async def test_unknown_schedule_and_empty_change(apps: AppFactory) -> None:
    app, _ = await started(apps)
    path = config_path(app)
    before = path.read_bytes()
    with pytest.raises(UnknownScheduleError):
        await app.scheduler.change("nope", ScheduleChange(enabled=False))
    with pytest.raises(UsageError):
        await app.scheduler.change("tick", ScheduleChange())
    assert path.read_bytes() == before


async def test_missing_config_file_is_created(apps: AppFactory) -> None:
    clock = FakeClock(START)
    app = await apps(apps.config(), clock)  # a config that never came from a file
    path = app.config.locations.config_file
    assert not path.exists()
    await app.scheduler.change("cache_cleanup", ScheduleChange(every=("interval_hours", 12)))
    assert read(path) == {"maintenance": {"schedule": {"cache_cleanup": {"interval_hours": 12}}}}
    assert path.stat().st_mode & 0o777 == 0o600
    assert app.scheduler.schedules["cache_cleanup"].trigger.period == 12 * HOUR
    assert leftovers(path.parent) == []


# -- hand edits (the watcher runs in real time: WATCH_SECONDS shortened) -------------------
WATCH = 0.2


@pytest.fixture
def fast_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "WATCH_SECONDS", WATCH)


def edited(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    edit(document)
    return document


async def test_valid_hand_edit_is_picked_up(
    apps: AppFactory, fast_watch: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.scheduler")
    app, clock = await started(apps)
    path = config_path(app)

    def edit(doc: dict[str, Any]) -> None:
        doc["maintenance"]["schedule"]["tick"]["interval_seconds"] = 1800
        doc["tasks"]["workers"] = 3

    write_document(path, edited(edit))

    async def rescheduled() -> bool:
        return bool((await tick_state(app)).next_fire == at(1800))  # from the last fire

    await wait_until(rescheduled, within=WATCH + 2.0, what="the hand edit to be picked up")
    assert app.scheduler.schedules["tick"].trigger.period == 1800
    await wait_until(lambda: "config file changed: schedules reloaded" in caplog.messages, within=1)
    assert any("tasks" in m and "next start" in m for m in caplog.messages), caplog.messages
    await wait_until(lambda: clock.next_deadline() == pytest.approx(1200), within=3)
    await step(clock, 1200)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [START, at(1800)]


async def test_invalid_hand_edit_is_refused_and_schedules_kept(
    apps: AppFactory, fast_watch: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.scheduler")
    app, clock = await started(apps)
    path = config_path(app)
    kept = dict(app.scheduler.schedules)

    def bad(doc: dict[str, Any]) -> None:
        doc["maintenance"]["schedule"]["tick"]["interval_seconds"] = -5
        doc["maintenance"]["schedule"]["other"]["typo_key"] = 1

    write_document(path, edited(bad))

    def refused() -> list[str]:
        return [m for m in caplog.messages if m.startswith("config change refused")]

    lines = await wait_until(refused, within=WATCH + 2.0, what="the refusal to be logged")
    await wait_until(lambda: len(refused()) >= 2, within=1, what="one line per problem")
    text = "\n".join(refused())
    assert "maintenance.schedule.tick.interval_seconds" in text
    assert "maintenance.schedule.other.typo_key" in text
    assert lines and all(
        r.levelno == logging.ERROR for r in caplog.records if "refused" in r.message
    )
    assert app.scheduler.schedules == kept

    # not JSON at all: refused too
    path.write_text("{ this is not json", encoding="utf-8")
    await wait_until(lambda: any("not valid JSON" in m for m in refused()), within=WATCH + 2.0)
    assert app.scheduler.schedules == kept
    # the running schedules still fire as before
    await step(clock, HOUR - 600)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [START, at(HOUR)]
    # and a later valid edit is still picked up
    write_document(
        path, edited(lambda d: d["maintenance"]["schedule"]["tick"].update(seconds=0.02))
    )
    await wait_until(
        lambda: app.scheduler.schedules["tick"].params["seconds"] == 0.02, within=WATCH + 2.0
    )


async def test_own_write_is_not_reloaded_twice(
    apps: AppFactory, fast_watch: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.scheduler")
    app, _ = await started(apps)
    await app.scheduler.change("tick", ScheduleChange(every=("interval_minutes", 30)))
    await asyncio.sleep(WATCH * 3)
    assert "config file changed: schedules reloaded" not in caplog.messages


# -- the CLI -------------------------------------------------------------------------------
RunUcore = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(ucore_cli: RunUcore, tmp_path: Path) -> tuple[RunUcore, Path]:
    data = tmp_path / "cli-data"
    write_document(
        data / "config.json",
        {
            "maintenance": {
                "schedule": {
                    "tick": {"task": "sleep", "interval_seconds": 60, "seconds": 0},
                    **DEFAULTS_OFF,
                }
            }
        },
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return ucore_cli("--data-dir", str(data), *args, timeout=30)

    return run, data / "config.json"


def test_cli_set_every(cli: tuple[RunUcore, Path]) -> None:
    run, path = cli
    result = run("schedule", "set", "tick", "--every", "30m")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert read(path)["maintenance"]["schedule"]["tick"] == {
        "task": "sleep",
        "seconds": 0,
        "interval_minutes": 30,
    }
    assert "every 30 minutes" in result.stdout or "30" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("tick", "--every", "5x"),
        ("tick", "--window", "25:00-01:00"),
        ("tick", "--param", "bogus=1"),
        ("nope", "--every", "1h"),
    ],
    ids=["bad-every", "bad-window", "unknown-param", "unknown-schedule"],
)
def test_cli_set_invalid_exit_2_file_unchanged(
    cli: tuple[RunUcore, Path], args: tuple[str, ...]
) -> None:
    run, path = cli
    before = path.read_bytes()
    result = run("schedule", "set", *args)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.strip(), "no message"
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


def test_cli_chain_and_unchain(cli: tuple[RunUcore, Path]) -> None:
    run, path = cli
    result = run(
        "schedule", "set", "tick", "--after", "database_cleanup", "--after", "database_optimization"
    )
    assert result.returncode == 0, result.stderr
    entry = read(path)["maintenance"]["schedule"]["tick"]
    assert entry["after"] == ["database_cleanup", "database_optimization"]
    assert entry["interval_seconds"] == 60  # the rest of the entry kept

    before = path.read_bytes()
    for args in (("tick", "--after", "nope"), ("database_cleanup", "--after", "tick")):
        bad = run("schedule", "set", *args)  # unknown name; a cycle
        assert bad.returncode == 2, (bad.stdout, bad.stderr)
        assert "maintenance.schedule." in bad.stderr and "Traceback" not in bad.stderr
        assert path.read_bytes() == before

    result = run("schedule", "set", "tick", "--no-after")
    assert result.returncode == 0, result.stderr
    assert "after" not in read(path)["maintenance"]["schedule"]["tick"]


def test_cli_show_json(cli: tuple[RunUcore, Path]) -> None:
    run, _ = cli
    result = run("schedule", "show", "tick", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {"definition", "next_fires", "last_run", "last_skip"} <= set(doc)
    assert doc["definition"]["task"] == "sleep"
    assert doc["definition"]["interval_seconds"] == 60
    assert doc["definition"]["seconds"] == 0
    fires = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in doc["next_fires"]]
    assert len(fires) == 5
    assert all((b - a).total_seconds() == 60 for a, b in itertools.pairwise(fires))
    assert doc["last_run"] is None and doc["last_skip"] is None


def test_cli_disable_shows_in_status(cli: tuple[RunUcore, Path]) -> None:
    run, path = cli
    result = run("schedule", "set", "tick", "--disable")
    assert result.returncode == 0, result.stderr
    assert read(path)["maintenance"]["schedule"]["tick"]["enabled"] is False
    status = run("status", "--json")
    assert status.returncode == 0, status.stderr
    tick = next(s for s in json.loads(status.stdout)["schedules"] if s["name"] == "tick")
    assert tick["enabled"] is False
    assert os.path.exists(path)


def test_cli_change_reaches_a_running_service(cli: tuple[RunUcore, Path], tmp_path: Path) -> None:
    """``ucore run`` runs; ``ucore schedule set tick --every 30m`` from another process: the
    service picks the file up (its watcher, WATCH_SECONDS of real time) and ``ucore status``
    shows the new trigger, the next run 30 minutes after the last fire, and no drift."""
    run, path = cli
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UCORE_", "XDG_"))}
    env["HOME"] = str(tmp_path / "cli-home")
    service = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ucore"),
            "--data-dir",
            str(path.parent),
            "run",
            "--no-live",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def tick_status() -> dict[str, Any] | None:
            result = run("status", "--json")
            if result.returncode != 0:
                return None
            doc = json.loads(result.stdout)
            tick = {s["name"]: s for s in doc["schedules"]}["tick"]
            return {**tick, "nodes": doc["nodes"]}

        tick = poll(
            tick_status,
            lambda t: bool(t and t["last_run"] and t["last_run"]["state"] == "completed"),
            within=15,
        )
        fired = datetime.fromisoformat(tick["last_run"]["submitted_at"].replace("Z", "+00:00"))

        result = run("schedule", "set", "tick", "--every", "30m")
        assert result.returncode == 0, result.stderr
        tick = poll(
            tick_status,
            lambda t: bool(t and t["trigger"] == "every 30 minutes" and t["drift"] == []),
            within=live.WATCH_SECONDS + 5,
        )
        next_run = datetime.fromisoformat(tick["next_run"].replace("Z", "+00:00"))
        assert (next_run - fired).total_seconds() == pytest.approx(1800, abs=1)
        assert [n["pid"] for n in tick["nodes"] if n["role"] == "service"] == [service.pid]
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    assert "config file changed: schedules reloaded" in err


def poll(read_value: Callable[[], Any], ready: Callable[[Any], bool], *, within: float) -> Any:
    deadline = time.monotonic() + within
    value = None
    while time.monotonic() < deadline:
        value = read_value()
        if ready(value):
            return value
        time.sleep(0.1)
    pytest.fail(f"not ready after {within} s: {value}")
