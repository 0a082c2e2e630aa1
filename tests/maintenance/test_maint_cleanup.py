"""database_cleanup (issue 8, Deliver 4; DESIGN.md §6.6).

Old rows are inserted through the store API with times taken from a FakeClock, so that the
retention boundary is exact: a row one second inside the window stays, one second outside goes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from maint_helpers import (
    LEGACY,
    START,
    AppFactory,
    bulk_history,
    count,
    dump,
    journal_of,
    old_journal,
    old_task,
    run,
)

import ucore.maintenance.database_cleanup as cleanup_mod
from ucore.app import App
from ucore.stores.records import TaskState
from ucore.testing import FakeClock

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
FINISHED = (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT)


async def fake_app(apps: AppFactory) -> tuple[App, FakeClock]:
    clock = FakeClock(START)
    return await apps(clock=clock), clock


async def ids_of(app: App) -> set[int]:
    return {t.id for t in await app.tasks.list_tasks(limit=100_000)}


async def test_finished_tasks_go_pending_and_running_never(apps: AppFactory) -> None:
    app, clock = await fake_app(apps)
    store = app.tasks.store
    now = clock.now()
    ancient = now - 1000 * DAY
    old = {
        state: await old_task(store, state, submitted=ancient, finished=now - 31 * DAY)
        for state in FINISHED
    }
    recent = {
        state: await old_task(store, state, submitted=ancient, finished=now - 29 * DAY)
        for state in FINISHED
    }
    pending = await old_task(store, TaskState.PENDING, submitted=ancient)
    running = await old_task(store, TaskState.RUNNING, submitted=ancient, started=ancient)
    record = await run(app, "database_cleanup", {"task_retention_days": 30})
    assert record.state is TaskState.COMPLETED, record.error
    left = await ids_of(app)
    assert not set(old.values()) & left
    assert set(recent.values()) <= left
    assert {pending, running} <= left
    assert (await app.tasks.get(pending)).state is TaskState.PENDING
    assert (await app.tasks.get(running)).state is TaskState.RUNNING
    assert record.result["tasks_deleted"] == len(FINISHED)
    assert record.result["history_deleted"] == len(FINISHED)
    # the running task's open run-history row is never purged
    assert [r.task_id for r in await store.list_runs(task_id=running)] == [running]


async def test_retention_boundary_one_second(apps: AppFactory) -> None:
    app, clock = await fake_app(apps)
    store = app.tasks.store
    now = clock.now()
    edge = now - 30 * DAY
    inside = await old_task(
        store, TaskState.COMPLETED, submitted=edge - DAY, finished=edge + SECOND
    )
    outside = await old_task(
        store, TaskState.COMPLETED, submitted=edge - DAY, finished=edge - SECOND
    )
    j_edge = now - 90 * DAY
    j_inside = await old_journal(store, j_edge + SECOND, "inside")
    j_outside = await old_journal(store, j_edge - SECOND, "outside")
    before = dump(apps.db_path)
    record = await run(app, "database_cleanup", {})  # the defaults: 30 and 90 days
    assert record.state is TaskState.COMPLETED, record.error
    left = await ids_of(app)
    assert inside in left
    assert outside not in left
    assert [r.task_id for r in await store.list_runs(task_id=inside)] == [inside]
    assert await store.list_runs(task_id=outside) == []
    after = dump(apps.db_path, skip_tasks=[record.id])
    journal_ids = {row[0] for row in after["journal"]}
    assert j_inside in journal_ids
    assert j_outside not in journal_ids
    assert record.result["tasks_deleted"] == 1
    assert record.result["history_deleted"] == 1
    assert record.result["journal_deleted"] == 1
    assert len(before["tasks"]) - len(after["tasks"]) == 1
    assert len(before["journal"]) - len(after["journal"]) == 1


async def test_history_is_summarised_per_day_before_it_goes(apps: AppFactory) -> None:
    app, clock = await fake_app(apps)
    store = app.tasks.store
    day = clock.now() - 40 * DAY  # 2026-01-20, noon UTC
    runs: list[tuple[TaskState, float, Any]] = [
        (TaskState.COMPLETED, 10.0, {"bytes_freed": 100}),
        (TaskState.FAILED, 20.0, None),
        (TaskState.TIMED_OUT, 5.0, None),
        (TaskState.CANCELLED, 1.0, {"bytes_freed": 7}),
        (TaskState.COMPLETED, 2.0, {"other": 1}),
    ]
    for i, (state, seconds, result) in enumerate(runs):
        start = day + timedelta(minutes=i)
        await old_task(
            store,
            state,
            submitted=start,
            started=start,
            finished=start + timedelta(seconds=seconds),
            result=result,
        )
    record = await run(app, "database_cleanup", {})
    assert record.result["history_deleted"] == 5
    assert record.result["summaries_written"] >= 1
    summary = [r for r in await store.history_daily() if r["task"] == LEGACY]
    assert summary == [
        {
            "day": "2026-01-20",
            "task": LEGACY,
            "runs": 5,
            "failures": 2,  # failed + timed out (a cancel is no failure)
            "total_duration": pytest.approx(38.0),
            "max_duration": pytest.approx(20.0),
            "bytes_freed": 107,
        }
    ]
    # a second purge adds to the same day's summary
    for i, (seconds, freed) in enumerate(((30.0, 50), (3.0, 0))):
        start = day + timedelta(hours=3, minutes=i)
        await old_task(
            store,
            TaskState.FAILED if freed == 0 else TaskState.COMPLETED,
            submitted=start,
            finished=start + timedelta(seconds=seconds),
            result={"bytes_freed": freed},
        )
    again = await run(app, "database_cleanup", {})
    assert again.result["history_deleted"] == 2
    summary = [r for r in await store.history_daily() if r["task"] == LEGACY]
    assert summary == [
        {
            "day": "2026-01-20",
            "task": LEGACY,
            "runs": 7,
            "failures": 3,
            "total_duration": pytest.approx(71.0),
            "max_duration": pytest.approx(30.0),
            "bytes_freed": 157,
        }
    ]
    # the maintenance runs themselves are recent: not summarised
    assert {r["task"] for r in await store.history_daily()} == {LEGACY}


async def test_summaries_are_per_day_and_per_task(apps: AppFactory) -> None:
    app, clock = await fake_app(apps)
    store = app.tasks.store
    day1 = clock.now() - 50 * DAY
    for name, when, seconds in (
        ("alpha", day1, 4.0),
        ("alpha", day1 + timedelta(hours=1), 6.0),
        ("beta", day1, 1.0),
        ("alpha", day1 + DAY, 2.0),
    ):
        await old_task(
            store,
            TaskState.COMPLETED,
            name=name,
            submitted=when,
            finished=when + timedelta(seconds=seconds),
        )
    await run(app, "database_cleanup", {})
    rows = {
        (r["day"], r["task"]): (r["runs"], r["total_duration"]) for r in await store.history_daily()
    }
    assert rows == {
        ("2026-01-10", "alpha"): (2, 10.0),
        ("2026-01-10", "beta"): (1, 1.0),
        ("2026-01-11", "alpha"): (1, 2.0),
    }


async def test_retention_zero_means_everything_finished(apps: AppFactory) -> None:
    app, clock = await fake_app(apps)
    store = app.tasks.store
    now = clock.now()
    finished = [
        await old_task(store, state, submitted=now - 2 * SECOND, finished=now - SECOND)
        for state in FINISHED
    ]
    pending = await old_task(store, TaskState.PENDING, submitted=now - DAY)
    running = await old_task(store, TaskState.RUNNING, submitted=now - DAY)
    entry = await old_journal(store, now - SECOND)
    await clock.advance(1)  # a moment later
    record = await run(
        app, "database_cleanup", {"task_retention_days": 0, "journal_retention_days": 0}
    )
    assert record.state is TaskState.COMPLETED, record.error
    assert await ids_of(app) == {pending, running, record.id}
    assert record.result["tasks_deleted"] == len(finished)
    assert record.result["history_deleted"] == len(finished)
    journal = dump(apps.db_path, skip_tasks=[record.id])["journal"]
    assert entry not in {row[0] for row in journal}
    assert journal == []
    assert record.result["journal_deleted"] >= 1


async def test_counts_match_what_was_deleted(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, clock = await fake_app(apps)
    store = app.tasks.store
    monkeypatch.setattr(cleanup_mod, "BATCH", 7)  # many batches, a partial last one
    now = clock.now()
    for i in range(23):
        t = now - (40 + i) * DAY
        await old_task(store, FINISHED[i % 4], submitted=t, finished=t + SECOND)
    for i in range(11):
        await old_journal(store, now - (100 + i) * DAY)
    for _ in range(5):  # kept
        await old_task(store, TaskState.COMPLETED, submitted=now - DAY, finished=now - DAY)
    before = dump(apps.db_path)
    record = await run(app, "database_cleanup", {})
    after = dump(apps.db_path, skip_tasks=[record.id])
    result = record.result
    assert result["tasks_deleted"] == len(before["tasks"]) - len(after["tasks"]) == 23
    assert result["history_deleted"] == len(before["task_runs"]) - len(after["task_runs"]) == 23
    assert result["journal_deleted"] == len(before["journal"]) - len(after["journal"]) == 11
    assert sum(r["runs"] for r in await store.history_daily()) == 23
    entries = await journal_of(app, record.id, "maintenance.database_cleanup")
    assert len(entries) == 1
    assert "23 tasks" in entries[0].message and "11 journal entries" in entries[0].message


# -- a purge under a concurrent writer ----------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from datetime import timedelta
    from pathlib import Path
    from ucore.app import bootstrap
    from ucore.foundation.config import parse_config

    data, ready, stop, out = (Path(a) for a in sys.argv[1:5])

    async def main():
        app = await bootstrap(parse_config({}, data_dir=data, env={}), role="client")
        samples, errors = [], []
        later = app.ctx.clock.now() + timedelta(days=3650)
        try:
            while not stop.exists():
                t0 = time.time()
                try:
                    await app.tasks.submit("sleep", {"seconds": 0}, not_before=later)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                t1 = time.time()
                samples.append((t0, t1 - t0))
                if not ready.exists():
                    ready.write_text("ok")
                await asyncio.sleep(0.002)
        finally:
            await app.shutdown()
        out.write_text(json.dumps({"samples": samples, "errors": errors}))

    asyncio.run(main())
    """
)


async def test_purge_under_a_concurrent_writer(apps: AppFactory, tmp_path: Path) -> None:
    app = await apps()
    store = app.tasks.store
    rows = 50_000
    first = (app.ctx.clock.now() - timedelta(days=200)).timestamp()
    await bulk_history(store, rows, first)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    ready, stop, out = tmp_path / "ready", tmp_path / "stop", tmp_path / "out.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(apps.data_dir),
        str(ready),
        str(stop),
        str(out),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.returncode is None, "the writer died"
            assert time.monotonic() < deadline, "the writer did not start"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        began = time.time()
        record = await run(app, "database_cleanup", {})
        ended = time.time()
        await asyncio.sleep(0.1)
    finally:
        stop.write_text("stop")
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert proc.returncode == 0, stderr.decode(errors="replace")
    report = json.loads(out.read_text())
    assert record.state is TaskState.COMPLETED, record.error
    assert record.result["history_deleted"] == rows
    assert report["errors"] == []
    during = [w for t, w in report["samples"] if began - 0.05 <= t <= ended]
    assert during, "no submit overlapped the purge"
    worst = max(w for _, w in report["samples"])
    # a loose bound: the benchmark measures the real figure
    assert worst < 1.0, f"longest submit wait {worst:.3f} s"
    assert count(apps.db_path, "SELECT count(*) FROM task_runs WHERE task_name = ?", LEGACY) == 0
    assert sum(r["runs"] for r in await store.history_daily() if r["task"] == LEGACY) == rows
    submitted = count(apps.db_path, "SELECT count(*) FROM tasks WHERE name = 'sleep'")
    assert submitted == len(report["samples"])
    # nothing of this test's tasks reported "database is locked"
    for t in await app.tasks.list_tasks(limit=100_000):
        assert "locked" not in (t.error or "")
