"""background_verification (issue 8, Deliver 2; DESIGN.md §6.1) on real folders."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from maint_helpers import AppFactory, dump, finish, journal_of, run

import ucore.maintenance.background_verification as verification
from ucore.app import App
from ucore.stores.records import TaskState


def make_folder(folder: Path, files: int) -> None:
    """``files`` documents, one more in a subfolder, and a hidden file (not counted)."""
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"doc{i}.txt").write_text(f"document {i}")
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("notes")
    (folder / ".hidden").write_text("never a library file")


async def scanned_root(app: App, folder: Path, files: int = 4) -> int:
    make_folder(folder, files)
    root, created = await app.library.add_root(folder)
    assert created
    scan = await finish(app, await app.library.scan(root.id))
    assert scan.state is TaskState.COMPLETED, scan.error
    return root.id


async def scans_of(app: App) -> list[int]:
    return sorted(t.id for t in await app.tasks.list_tasks(name="library_scan", limit=1000))


async def test_status_ok_with_equal_counts(apps: AppFactory, tmp_path: Path) -> None:
    app = await apps()
    root_id = await scanned_root(app, tmp_path / "lib")
    before = dump(apps.db_path)
    record = await run(app, "background_verification")
    assert record.state is TaskState.COMPLETED, record.error
    assert record.result["roots"] == [
        {
            "root": root_id,
            "path": str((tmp_path / "lib").resolve()),
            "status": "ok",
            "db_count": 5,
            "disk_count": 5,
        }
    ]
    assert record.result["drifted"] == 0
    assert record.result["scans_queued"] == 0
    assert dump(apps.db_path, skip_tasks=[record.id]) == before  # read-only


async def test_drift_is_journaled_and_queues_a_scan(apps: AppFactory, tmp_path: Path) -> None:
    app = await apps()
    folder = tmp_path / "lib"
    root_id = await scanned_root(app, folder)
    (folder / "new1.txt").write_text("1")
    (folder / "sub" / "new2.txt").write_text("2")
    (folder / ".also-hidden").write_text("not counted")
    known = await scans_of(app)
    record = await run(app, "background_verification")  # scan_on_drift: true by default
    assert record.state is TaskState.COMPLETED, record.error
    entry = record.result["roots"][0]
    assert (entry["status"], entry["db_count"], entry["disk_count"]) == ("drift", 5, 7)
    assert record.result["drifted"] == 1
    assert record.result["scans_queued"] == 1
    new = [i for i in await scans_of(app) if i not in known]
    assert len(new) == 1 and entry["scan_task"] == new[0]
    scan = await app.tasks.get(new[0])
    assert scan.unique_key == f"library_scan:{root_id}"
    assert scan.params.get("root") == root_id
    # journaled: the run's entry says drift and holds the counts
    entries = await journal_of(app, record.id, "maintenance.background_verification")
    assert len(entries) == 1
    assert "drift" in entries[0].message
    assert entries[0].data["roots"][0]["disk_count"] == 7
    # the queued scan brings the records up to date: the next check is ok
    assert (await finish(app, new[0])).state is TaskState.COMPLETED
    again = await run(app, "background_verification")
    assert again.result["roots"][0]["status"] == "ok"
    assert again.result["roots"][0]["db_count"] == 7


async def test_no_scan_without_scan_on_drift_and_read_only(
    apps: AppFactory, tmp_path: Path
) -> None:
    app = await apps()
    folder = tmp_path / "lib"
    await scanned_root(app, folder)
    (folder / "doc0.txt").unlink()
    known = await scans_of(app)
    before = dump(apps.db_path)
    record = await run(app, "background_verification", {"scan_on_drift": False})
    assert record.state is TaskState.COMPLETED, record.error
    entry = record.result["roots"][0]
    assert (entry["status"], entry["db_count"], entry["disk_count"]) == ("drift", 5, 4)
    assert record.result["scans_queued"] == 0
    assert "scan_task" not in entry
    assert await scans_of(app) == known
    assert dump(apps.db_path, skip_tasks=[record.id]) == before


async def test_no_scan_in_a_dry_run(apps: AppFactory, tmp_path: Path) -> None:
    app = await apps()
    folder = tmp_path / "lib"
    await scanned_root(app, folder)
    (folder / "extra.txt").write_text("x")
    known = await scans_of(app)
    record = await run(app, "background_verification", {"dry_run": True, "scan_on_drift": True})
    assert record.result["roots"][0]["status"] == "drift"
    assert record.result["scans_queued"] == 0
    assert await scans_of(app) == known


async def test_a_root_renamed_away_is_unavailable_never_zero(
    apps: AppFactory, tmp_path: Path
) -> None:
    app = await apps()
    folder = tmp_path / "lib"
    root_id = await scanned_root(app, folder)
    other = await scanned_root(app, tmp_path / "other", files=1)
    folder.rename(tmp_path / "lib-moved")
    known = await scans_of(app)
    before = dump(apps.db_path)
    record = await run(app, "background_verification")
    assert record.state is TaskState.COMPLETED, record.error
    by_root = {r["root"]: r for r in record.result["roots"]}
    gone = by_root[root_id]
    assert gone["status"] == "unavailable"
    assert gone["db_count"] == 5
    assert gone["disk_count"] is None
    assert by_root[other]["status"] == "ok"
    assert record.result["drifted"] == 0
    assert record.result["scans_queued"] == 0
    assert await scans_of(app) == known
    assert dump(apps.db_path, skip_tasks=[record.id]) == before
    assert "unavailable" in app.maintenance.summarize(record)


async def test_a_replaced_root_is_unavailable(apps: AppFactory, tmp_path: Path) -> None:
    app = await apps()
    folder = tmp_path / "lib"
    root_id = await scanned_root(app, folder)
    folder.rename(tmp_path / "lib-old")
    folder.mkdir()  # an empty folder in its place (an unmounted drive's mount point)
    record = await run(app, "background_verification")
    entry = record.result["roots"][0]
    assert entry["root"] == root_id
    assert (entry["status"], entry["db_count"], entry["disk_count"]) == ("unavailable", 5, None)
    assert record.result["scans_queued"] == 0


async def test_budget_used_up_mid_root_leaves_no_half_entry(
    apps: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    await scanned_root(app, tmp_path / "one")
    await scanned_root(app, tmp_path / "two")
    real = verification.check_root

    def slow_check(root: Any) -> Any:
        time.sleep(0.05)
        return real(root)

    monkeypatch.setattr(verification, "check_root", slow_check)
    record = await run(app, "background_verification", {"time_budget_seconds": 0.03})
    assert record.state is TaskState.COMPLETED, record.error
    assert record.result["partial"] is True
    # the roots it reached are reported whole; none without a status or a disk count
    for entry in record.result["roots"]:
        assert entry["status"] in ("ok", "drift", "unavailable"), entry
        assert "disk_count" in entry, entry
    assert "?" not in app.maintenance.summarize(record)
