"""database_optimization (issue 8, Deliver 3; DESIGN.md §6.2)."""

from __future__ import annotations

import logging
import shutil
from collections import namedtuple
from datetime import timedelta
from typing import Any

import pytest
from maint_helpers import AppFactory, bulk_journal, journal_of, pages, run, run_now

from ucore.app import App
from ucore.cli.status_cmd import problems
from ucore.stores.records import NewTask, Outcome, Priority, TaskState

DiskUsage = namedtuple("DiskUsage", "total used free")


async def make_free_pages(app: App, n: int = 2000) -> None:
    """Write and delete ``n`` fat journal rows: most of the database is free pages."""
    await bulk_journal(app.tasks.store, n, 1000.0, size=2000)
    await app.tasks.store.db.write(
        lambda c: c.execute("DELETE FROM journal WHERE kind = 'test.bulk'")
    )


async def incremental(app: App) -> None:
    """Switch the database to incremental auto-vacuum (a full VACUUM run does that)."""
    record = await run(app, "database_optimization", {"vacuum": True})
    assert record.state is TaskState.COMPLETED, record.error
    assert (await app.tasks.store.db_stats()).auto_vacuum == "incremental"


async def test_result_sizes_actions_and_check(apps: AppFactory) -> None:
    app = await apps()
    await bulk_journal(app.tasks.store, 500, 1000.0, size=500)  # a write-ahead log to fold
    record = await run(app, "database_optimization")
    assert record.state is TaskState.COMPLETED, record.error
    result = record.result
    assert isinstance(result["size_before"], int) and result["size_before"] > 0
    assert isinstance(result["size_after"], int) and result["size_after"] > 0
    # the checkpoint(TRUNCATE) folded the log into the file
    assert result["size_after"] < result["size_before"]
    assert result["check"] == "ok"
    assert result["actions"][:2] == ["optimize", "checkpoint"]
    assert "vacuum" not in result["actions"]
    assert app.maintenance.summarize(record).startswith("check ok")


async def test_incremental_vacuum_when_free_pages_are_many(apps: AppFactory) -> None:
    app = await apps()
    await incremental(app)
    await make_free_pages(app)
    count_before, free_before = pages(apps.db_path)
    assert free_before / count_before > 0.5
    record = await run(app, "database_optimization")  # max_free_fraction 0.2
    assert record.state is TaskState.COMPLETED, record.error
    count_after, free_after = pages(apps.db_path)
    assert free_after < free_before // 10
    assert count_after < count_before - free_before // 2
    assert any(a.startswith("incremental_vacuum") for a in record.result["actions"])
    assert record.result["size_after"] < record.result["size_before"]


async def test_no_incremental_vacuum_under_the_fraction(apps: AppFactory) -> None:
    app = await apps()
    await incremental(app)
    await make_free_pages(app)
    _, free_before = pages(apps.db_path)
    record = await run(app, "database_optimization", {"max_free_fraction": 1.0})
    assert record.state is TaskState.COMPLETED, record.error
    _, free_after = pages(apps.db_path)
    assert free_after >= free_before - 5  # the run's own rows may take a page or two
    assert not any("vacuum" in a for a in record.result["actions"]), record.result


async def test_a_new_database_gives_free_pages_back_without_a_full_vacuum(
    apps: AppFactory,
) -> None:
    app = await apps()
    assert (await app.tasks.store.db_stats()).auto_vacuum == "incremental"
    await make_free_pages(app)
    _, free_before = pages(apps.db_path)
    record = await run(app, "database_optimization")
    _, free_after = pages(apps.db_path)
    assert free_after < free_before // 10
    assert record.result["warnings"] == []


async def test_a_database_without_incremental_auto_vacuum_is_told_to_vacuum(
    apps: AppFactory,
) -> None:
    app = await apps()

    def legacy(c: Any) -> None:
        c.execute("PRAGMA auto_vacuum = NONE")
        c.execute("VACUUM")

    await app.tasks.store.db.write_raw(legacy)
    await make_free_pages(app)
    assert (await app.tasks.store.db_stats()).auto_vacuum == "none"
    record = await run(app, "database_optimization")
    assert record.state is TaskState.COMPLETED, record.error
    assert any("vacuum=true" in w for w in record.result["warnings"]), record.result


async def test_full_vacuum_only_when_asked(apps: AppFactory) -> None:
    app = await apps()
    await make_free_pages(app)
    count_before, free_before = pages(apps.db_path)
    plain = await run(app, "database_optimization", {"max_free_fraction": 1.0})
    assert "vacuum" not in plain.result["actions"]
    assert pages(apps.db_path)[1] >= free_before - 5
    full = await run(app, "database_optimization", {"vacuum": True, "max_free_fraction": 1.0})
    assert full.state is TaskState.COMPLETED, full.error
    assert "vacuum" in full.result["actions"]
    count_after, free_after = pages(apps.db_path)
    assert free_after <= 5
    assert count_after < count_before - free_before // 2


async def test_full_vacuum_skipped_when_the_disk_is_too_full(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    await make_free_pages(app)
    count_before, free_before = pages(apps.db_path)
    asked: list[str] = []

    def tiny(path: Any) -> DiskUsage:
        asked.append(str(path))
        return DiskUsage(10**12, 10**12 - 1000, 1000)

    monkeypatch.setattr(shutil, "disk_usage", tiny)
    record = await run(app, "database_optimization", {"vacuum": True, "max_free_fraction": 1.0})
    assert record.state is TaskState.COMPLETED, record.error
    assert "vacuum" not in record.result["actions"]
    skipped = " ".join(record.result.get("skipped", []))
    assert "VACUUM" in skipped and "free" in skipped, record.result
    assert asked == [str(apps.data_dir)]
    assert pages(apps.db_path)[0] >= count_before - 5
    # enough room: it runs
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**13, 0, 10**13))
    again = await run(app, "database_optimization", {"vacuum": True, "max_free_fraction": 1.0})
    assert "vacuum" in again.result["actions"]
    assert pages(apps.db_path)[1] < free_before // 10


async def test_quick_check_failure_fails_the_run_and_status_check_reports_it(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = await apps()

    async def damaged() -> list[str]:
        return ["row 3 missing from index x"]

    monkeypatch.setattr(app.tasks.store, "quick_check", damaged)
    caplog.set_level(logging.ERROR, logger="ucore.maintenance")
    record = await run_now(app, "database_optimization")
    assert record.state is TaskState.FAILED
    assert "quick_check" in (record.error or "")
    assert "row 3 missing from index x" in (record.error or "")
    assert any("row 3 missing" in m for m in caplog.messages)  # reported loudly
    entries = await journal_of(app, record.id, "maintenance.database_optimization")
    assert len(entries) == 1 and entries[0].data["check"] == ["row 3 missing from index x"]
    found = problems(await app.scheduler.status(), True, app.ctx.clock.now())
    mine = [p for p in found if "database_optimization" in p]
    assert len(mine) == 1 and "quick_check" in mine[0], found
    assert f"task {record.id}" in mine[0]


async def test_busy_checkpoint_is_a_warning_retried_next_run(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()

    async def busy() -> bool:
        return False

    monkeypatch.setattr(app.tasks.store, "checkpoint", busy)
    record = await run(app, "database_optimization")
    assert record.state is TaskState.COMPLETED, record.error
    assert "checkpoint" not in record.result["actions"]
    assert any("retried next run" in w for w in record.result["warnings"]), record.result
    assert record.result["check"] == "ok"


async def running_scan(app: App) -> tuple[int, int]:
    """A library_scan running on another (fake) node: (task id, run id). Its not_before is
    a day away, so this app's workers never take it."""
    store = app.tasks.store
    later = app.ctx.clock.now() + timedelta(days=1)
    task_id, created = await store.insert_task(
        NewTask(
            name="library_scan",
            params={},
            priority=Priority.NORMAL,
            origin="api",
            submitted_at=app.ctx.clock.now(),
            unique_key="library_scan:all",
            not_before=later,
        )
    )
    assert created
    record = await store.claim_task(
        node_id="scanner-node",
        host="elsewhere.example",
        pid=4242,
        now=later,
        lease_until=later + timedelta(days=1),
        task_id=task_id,
    )
    assert record is not None and record.state is TaskState.RUNNING
    return task_id, record.run_id or 0


async def test_skips_itself_while_a_scan_runs(apps: AppFactory) -> None:
    app = await apps()
    scan_id, run_id = await running_scan(app)
    size_before = (await app.tasks.store.db_stats()).total_bytes
    record = await run(app, "database_optimization", {"vacuum": True})
    assert record.state is TaskState.COMPLETED, record.error
    skipped = record.result.get("skipped") or []
    assert len(skipped) == 1 and f"task {scan_id}" in skipped[0], record.result
    assert record.result["actions"] == []
    assert record.result["check"] is None
    assert app.maintenance.summarize(record).startswith("skipped")
    assert (await app.tasks.store.db_stats()).total_bytes >= size_before  # no checkpoint
    # the scan ends: the next run does the work
    assert await app.tasks.store.finish_run(
        scan_id,
        run_id,
        outcome=Outcome.COMPLETED,
        now=app.ctx.clock.now() + timedelta(days=1, seconds=1),
        next_state=TaskState.COMPLETED,
    )
    again = await run(app, "database_optimization")
    assert "skipped" not in again.result
    assert again.result["check"] == "ok"
