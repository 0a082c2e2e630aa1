"""What the three database maintenance tasks share (issue 8, Deliver 1; DESIGN.md §6).

Result keys, one journal entry per run (also when it fails or is cancelled), dry runs that
change nothing, the time budget (``partial: true``, a warning, a completed run), cancel
within a second, and the service's registration log line.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from maint_helpers import (
    OWN_KEYS,
    SHARED_KEYS,
    TASKS,
    AppFactory,
    bulk_history,
    bulk_journal,
    count,
    dump,
    finish,
    journal_of,
    old_journal,
    old_task,
    pages,
    run,
    wait_until,
)

import ucore.maintenance.database_cleanup as cleanup_mod
from ucore.app import App
from ucore.maintenance.service import TASKS as SERVICE_TASKS
from ucore.stores.records import TaskState


async def library_with_files(app: App, tmp_path: Path, n: int = 3) -> tuple[Path, int]:
    """A real folder with ``n`` files, added as a root and scanned; (folder, root id)."""
    folder = tmp_path / "library"
    folder.mkdir()
    for i in range(n):
        (folder / f"file{i}.txt").write_text(str(i))
    root, created = await app.library.add_root(folder)
    assert created
    scan = await finish(app, await app.library.scan(root.id))
    assert scan.state is TaskState.COMPLETED, scan.error
    return folder, root.id


async def old_rows(app: App) -> dict[str, int]:
    """Finished tasks, run history and journal entries 100 days old; how many of each."""
    store = app.tasks.store
    long_ago = app.ctx.clock.now() - timedelta(days=100)
    for i, state in enumerate(
        (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT)
    ):
        t = long_ago + timedelta(minutes=i)
        await old_task(store, state, submitted=t, finished=t + timedelta(seconds=5))
    for i in range(3):
        await old_journal(store, long_ago + timedelta(minutes=i))
    return {"tasks": 4, "history": 4, "journal": 3}


# -- result keys and the journal ------------------------------------------------------------
@pytest.mark.parametrize("name", TASKS)
async def test_result_has_its_keys_and_one_journal_entry(
    apps: AppFactory, tmp_path: Path, name: str
) -> None:
    app = await apps()
    await library_with_files(app, tmp_path)
    record = await run(app, name)
    assert record.state is TaskState.COMPLETED, record.error
    result = record.result
    assert OWN_KEYS[name] | SHARED_KEYS <= set(result), sorted(result)
    assert result["dry_run"] is False
    assert result["partial"] is False
    assert result["warnings"] == []
    entries = await journal_of(app, record.id)
    assert [e.kind for e in entries] == [f"maintenance.{name}"]
    assert entries[0].data["dry_run"] is False
    # the journal entry carries the same result
    assert {k: entries[0].data[k] for k in OWN_KEYS[name]} == {k: result[k] for k in OWN_KEYS[name]}
    # a second run writes its own single entry
    again = await run(app, name)
    assert [e.kind for e in await journal_of(app, again.id)] == [f"maintenance.{name}"]
    assert len(await journal_of(app, record.id)) == 1


async def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom: the store said no")


async def _damaged() -> list[str]:
    return ["row 3 missing from index x"]


def _boom_sync(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom: the disk said no")


#: per task, what makes the run fail: (object, attribute) -> the fake
FAILURES: dict[str, tuple[str, str, Any]] = {
    "background_verification": ("store", "file_counts", _boom),
    "database_optimization": ("store", "quick_check", _damaged),
    "cache_cleanup": ("store", "list_roots", _boom),
    "orphaned_cleanup": ("store", "list_dirs", _boom),
    "log_rotation": ("ucore.maintenance.log_rotation", "rotate_logs", _boom_sync),
    "database_cleanup": ("store", "count_purgeable", _boom),
}


@pytest.mark.parametrize("name", TASKS)
async def test_a_failed_run_writes_one_journal_entry(
    apps: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    app = await apps()
    await library_with_files(app, tmp_path)
    where, attribute, fake = FAILURES[name]
    target: Any = app.tasks.store if where == "store" else importlib.import_module(where)
    monkeypatch.setattr(target, attribute, fake)
    record = await run(app, name)
    assert record.state is TaskState.FAILED
    entries = await journal_of(app, record.id)
    assert [e.kind for e in entries] == [f"maintenance.{name}"]
    assert entries[0].data["error"], entries[0].data
    assert "stopped" in entries[0].message or "fail" in entries[0].message.lower()


# -- dry runs change nothing --------------------------------------------------------------
async def test_dry_run_of_cleanup_changes_nothing(apps: AppFactory) -> None:
    app = await apps()
    want = await old_rows(app)
    before = dump(apps.db_path)
    record = await run(app, "database_cleanup", {"dry_run": True, "journal_retention_days": 30})
    assert record.state is TaskState.COMPLETED, record.error
    assert dump(apps.db_path, skip_tasks=[record.id]) == before
    result = record.result
    assert result["dry_run"] is True
    # it reports what it would do
    assert result["tasks_deleted"] == want["tasks"]
    assert result["history_deleted"] == want["history"]
    assert result["journal_deleted"] == want["journal"]
    assert result["summaries_written"] == 0
    entries = await journal_of(app, record.id)
    assert len(entries) == 1 and entries[0].message.startswith("dry run")
    # the real run then deletes exactly that
    real = await run(app, "database_cleanup", {"journal_retention_days": 30})
    for kind in ("tasks", "history", "journal"):
        assert real.result[f"{kind}_deleted"] == want[kind]


async def _make_free_pages(app: App, n: int = 2000) -> None:
    """Write and delete ``n`` fat journal rows: many free pages."""
    await bulk_journal(app.tasks.store, n, 1000.0, size=2000)
    await app.tasks.store.db.write(
        lambda c: c.execute("DELETE FROM journal WHERE kind = 'test.bulk'")
    )


async def test_dry_run_of_optimization_changes_nothing(apps: AppFactory) -> None:
    app = await apps()
    # a full VACUUM also switches the database to incremental auto-vacuum
    assert (await run(app, "database_optimization", {"vacuum": True})).state is TaskState.COMPLETED
    await _make_free_pages(app)
    stats = await app.tasks.store.db_stats()
    assert stats.auto_vacuum == "incremental"
    assert stats.free_fraction > 0.5
    before_pages = pages(apps.db_path)
    before = dump(apps.db_path)
    record = await run(app, "database_optimization", {"dry_run": True, "vacuum": True})
    assert record.state is TaskState.COMPLETED, record.error
    assert pages(apps.db_path) == before_pages
    assert dump(apps.db_path, skip_tasks=[record.id]) == before
    actions = record.result["actions"]
    assert actions and all(a.startswith("would ") for a in actions), actions
    assert any("free pages" in a for a in actions), actions
    assert any("VACUUM" in a for a in actions), actions
    assert record.result["check"] == "ok"


async def test_dry_run_of_verification_changes_nothing(apps: AppFactory, tmp_path: Path) -> None:
    app = await apps()
    folder, _ = await library_with_files(app, tmp_path)
    (folder / "new.txt").write_text("new")
    scans = len(await app.tasks.list_tasks(name="library_scan", limit=100))
    before = dump(apps.db_path)
    record = await run(app, "background_verification", {"dry_run": True})
    assert record.state is TaskState.COMPLETED, record.error
    assert record.result["roots"][0]["status"] == "drift"
    assert record.result["scans_queued"] == 0
    assert dump(apps.db_path, skip_tasks=[record.id]) == before
    assert len(await app.tasks.list_tasks(name="library_scan", limit=100)) == scans


# -- the time budget ------------------------------------------------------------------------
def _slow(store: Any, method: str, monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
    real = getattr(store, method)

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(delay)
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, method, slow)


#: per task, a store method called before its first budget check
BEFORE_FIRST_STEP = {
    "background_verification": "list_roots",
    "database_optimization": "db_stats",
    "orphaned_cleanup": "list_roots",
    "database_cleanup": "count_purgeable",
}  # cache_cleanup and log_rotation: their own test files cut them short mid-way


@pytest.mark.parametrize("name", sorted(BEFORE_FIRST_STEP))
async def test_time_budget_stops_cleanly_with_partial(
    apps: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    app = await apps()
    await library_with_files(app, tmp_path)
    await old_rows(app)
    before = dump(apps.db_path)
    _slow(app.tasks.store, BEFORE_FIRST_STEP[name], monkeypatch, 0.02)
    record = await run(app, name, {"time_budget_seconds": 0.001})
    assert record.state is TaskState.COMPLETED, record.error
    assert record.result["partial"] is True
    assert any("time budget" in w for w in record.result["warnings"]), record.result
    assert len(await journal_of(app, record.id)) == 1
    if name == "database_cleanup":
        # it stopped before its first batch: nothing deleted yet
        assert record.result["tasks_deleted"] == 0
        assert dump(apps.db_path, skip_tasks=[record.id])["tasks"] == before["tasks"]


async def test_purge_stops_at_budget_and_the_next_run_continues(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    store = app.tasks.store
    first = (app.ctx.clock.now() - timedelta(days=100)).timestamp()
    await bulk_history(store, 1000, first)
    monkeypatch.setattr(cleanup_mod, "BATCH", 50)
    _slow(store, "purge_batch", monkeypatch, 0.02)
    record = await run(app, "database_cleanup", {"time_budget_seconds": 0.1})
    assert record.state is TaskState.COMPLETED, record.error
    assert record.result["partial"] is True
    done = record.result["history_deleted"]
    assert 0 < done < 1000
    assert done % 50 == 0  # whole batches only
    left = count(apps.db_path, "SELECT count(*) FROM task_runs WHERE task_name = 'legacy_job'")
    assert left == 1000 - done
    monkeypatch.undo()
    rest = await run(app, "database_cleanup")
    assert rest.result["partial"] is False
    assert rest.result["history_deleted"] == 1000 - done
    runs = sum(r["runs"] for r in await store.history_daily() if r["task"] == "legacy_job")
    assert runs == 1000


# -- cancel ---------------------------------------------------------------------------------
async def test_cancel_of_a_running_purge_takes_effect_within_a_second(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    store = app.tasks.store
    first = (app.ctx.clock.now() - timedelta(days=100)).timestamp()
    await bulk_history(store, 2000, first)
    monkeypatch.setattr(cleanup_mod, "BATCH", 10)
    _slow(store, "purge_batch", monkeypatch, 0.05)  # 200 batches: 10 s
    task_id = await app.tasks.submit("database_cleanup", {})
    sql = "SELECT count(*) FROM task_runs WHERE task_name = 'legacy_job'"
    await wait_until(lambda: count(apps.db_path, sql) <= 1970, what="a few batches")
    asked = time.monotonic()
    await app.tasks.cancel(task_id)
    record = await finish(app, task_id)
    took = time.monotonic() - asked
    assert record.state is TaskState.CANCELLED
    assert took < 1.0, took
    left = count(apps.db_path, sql)
    assert 0 < left < 2000
    await asyncio.sleep(0.3)  # nothing goes on deleting after the cancel
    assert count(apps.db_path, sql) == left
    entries = await journal_of(app, task_id)
    assert [e.kind for e in entries] == ["maintenance.database_cleanup"]
    assert entries[0].data["error"]
    # what went was summarised first, whatever batch the cancel hit
    runs = sum(r["runs"] for r in await store.history_daily() if r["task"] == "legacy_job")
    assert runs + left == 2000


# -- the service ----------------------------------------------------------------------------
async def test_service_logs_its_handlers_at_bootstrap(
    apps: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ucore.maintenance")
    app = await apps(workers=False)
    n = len(SERVICE_TASKS)
    assert n >= 3
    assert f"MaintenanceService: Registered {n} task handlers" in caplog.messages
    for name in TASKS:
        assert name in app.tasks.handlers.names()
        assert app.maintenance.summaries[name]
