"""background_verification: per library root, do the records still match the disk?

Read-only. Per root, the number of file records (one database snapshot for all roots) is
compared with the number of library files on disk, counted with the one shared filter
(:class:`ucore.fs.filter.LibraryFilter`). A root that is missing, unreadable or replaced is
``unavailable`` — never 0 files. A drift is journaled and, with ``scan_on_drift`` (default
true), a scan of that root is queued. Result: ``roots: [{root, path, status: ok|drift|
unavailable, db_count, disk_count}]``, ``drifted``, ``scans_queued``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ucore.foundation.config.params import BackgroundVerificationParams
from ucore.fs.filter import LibraryFilter
from ucore.fs.roots import check_root
from ucore.fs.system import library_of
from ucore.maintenance.run import MaintenanceRun
from ucore.stores.records import RootRecord

NAME = "background_verification"


def count_on_disk(
    run: MaintenanceRun, root: RootRecord, device: int | None
) -> tuple[int, list[str]]:
    """Library files under the root (in a thread); checks cancel and budget per directory.

    ``device`` is the root's device now (as its check found it): a marker-verified root
    whose device number changed at a reboot is still counted, not "another file system".
    """
    flt = LibraryFilter(root.path, root.ignore, device=root.device if device is None else device)
    files, errors = flt.count_files(run.step)
    return files, [str(e) for e in errors]


async def body(run: MaintenanceRun) -> None:
    params: BackgroundVerificationParams = run.ctx.params
    library = library_of(run.ctx.app)
    roots = await run.store.list_roots()
    counts = await run.store.file_counts()  # one snapshot of every root's record count
    report: list[dict[str, Any]] = []
    run.result.update(roots=report, drifted=0, scans_queued=0)
    for i, root in enumerate(roots):
        run.step()
        run.ctx.progress(i, len(roots), f"root {root.id}: {root.path}")
        db_count = counts.get(root.id, 0)
        entry: dict[str, Any] = {"root": root.id, "path": root.path, "db_count": db_count}
        check = await asyncio.to_thread(check_root, root)
        if not check.online:
            entry.update(status="unavailable", disk_count=None, reason=check.reason)
            report.append(entry)
            continue
        disk_count, errors = await asyncio.to_thread(count_on_disk, run, root, check.device)
        # reported once complete: a root whose count the budget cut short is left out
        report.append(entry)
        entry["disk_count"] = disk_count
        if errors:
            entry["unlisted_dirs"] = errors[:20]
            run.warn(f"root {root.id}: {len(errors)} folder(s) could not be listed")
        if disk_count == db_count:
            entry["status"] = "ok"
            continue
        entry["status"] = "drift"
        run.result["drifted"] += 1
        if run.dry_run or not params.scan_on_drift:
            continue
        task_id = await library.scan(root.id, origin=f"schedule:{NAME}")
        entry["scan_task"] = task_id
        run.result["scans_queued"] += 1
    run.ctx.progress(len(roots), max(len(roots), 1), "done")


def summary(result: dict[str, Any]) -> str:
    roots = result.get("roots") or []
    if not roots:
        return "no library roots"
    counts: dict[str, int] = {}
    for r in roots:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    text = f"{len(roots)} root(s): " + ", ".join(parts)
    if result.get("scans_queued"):
        text += f"; {result['scans_queued']} scan(s) queued"
    return text
