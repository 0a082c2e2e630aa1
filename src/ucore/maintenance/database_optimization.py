"""database_optimization: keep the database fast and check that it is sound.

SQLite: ``PRAGMA optimize``; ``wal_checkpoint(TRUNCATE)`` (if busy: noted, retried next run);
``quick_check`` (a problem is reported loudly and the run fails, so ``ucore status --check``
shows it); ``incremental_vacuum`` when free pages exceed ``max_free_fraction``; a full
``VACUUM`` only with ``vacuum: true`` and at least twice the database's size free on disk.
It skips itself while a library scan runs (the schedule's ``not_while``, and this check for
runs started by hand). Result: ``size_before``, ``size_after``, ``actions``, ``check``.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from ucore.foundation.config.params import DatabaseOptimizationParams
from ucore.foundation.errors import UCoreError
from ucore.maintenance.run import MaintenanceRun, human_bytes
from ucore.stores.records import TaskState

NAME = "database_optimization"
log = logging.getLogger("ucore.maintenance")


class DatabaseDamaged(UCoreError):
    pass


async def body(run: MaintenanceRun) -> None:
    params: DatabaseOptimizationParams = run.ctx.params
    store = run.store
    from ucore.stores.records import TaskFilter

    scans = await store.list_tasks(
        TaskFilter(states=(TaskState.RUNNING.value,), name="library_scan", limit=1)
    )
    if scans:
        run.skip(f"a library scan is running (task {scans[0].id}); optimization waits for it")
        run.result.update(size_before=None, size_after=None, actions=[], check=None)
        return
    before = await store.db_stats()
    run.result["size_before"] = before.total_bytes
    actions: list[str] = []
    run.result["actions"] = actions
    run.ctx.progress(0, 5, "optimize")
    run.step()
    if run.dry_run:
        actions.append("would refresh the query planner's statistics (PRAGMA optimize)")
    else:
        await store.optimize()
        actions.append("optimize")
    run.ctx.progress(1, 5, "checkpoint")
    run.step()
    if run.dry_run:
        actions.append(f"would checkpoint the write-ahead log ({human_bytes(before.wal_bytes)})")
    elif await store.checkpoint():
        actions.append("checkpoint")
    else:
        run.warn("write-ahead log checkpoint was busy (a reader held it); retried next run")
    run.ctx.progress(2, 5, "quick check")
    run.step()
    problems = await store.quick_check()
    run.result["check"] = "ok" if not problems else problems[:20]
    if problems:
        log.error("DATABASE CHECK FAILED: %s", "; ".join(problems[:5]))
        raise DatabaseDamaged(
            f"database quick_check found {len(problems)} problem(s): {problems[0]}"
        )
    run.ctx.progress(3, 5, "free pages")
    run.step()
    stats = await store.db_stats()
    run.result["free_fraction"] = round(stats.free_fraction, 4)
    if stats.free_fraction > params.max_free_fraction:
        if stats.auto_vacuum != "incremental":
            run.warn(
                "free pages cannot be given back without a full VACUUM "
                "(the database predates incremental auto-vacuum): run with vacuum=true"
            )
        elif run.dry_run:
            actions.append(
                f"would give back {stats.freelist_count} free pages "
                f"({human_bytes(stats.freelist_count * stats.page_size)})"
            )
        else:
            freed = await store.reclaim_free_pages()
            actions.append(f"incremental_vacuum ({freed} pages)")
    run.ctx.progress(4, 5, "vacuum")
    run.step()
    if params.vacuum:
        free_disk = shutil.disk_usage(_folder(run)).free
        needed = 2 * stats.total_bytes
        if free_disk < needed:
            run.skip(
                f"full VACUUM needs {human_bytes(needed)} free on disk, "
                f"only {human_bytes(free_disk)} is"
            )
        elif run.dry_run:
            actions.append("would rebuild the database (VACUUM)")
        else:
            await store.vacuum()
            actions.append("vacuum")
    after = await store.db_stats()
    run.result["size_after"] = after.total_bytes
    run.ctx.progress(5, 5, "done")


def _folder(run: MaintenanceRun) -> str:
    path = getattr(run.store, "path", None)
    return str(path.parent) if path is not None else "."


def summary(result: dict[str, Any]) -> str:
    if result.get("skipped") and not result.get("actions"):
        return "skipped: " + "; ".join(result["skipped"])
    before, after = result.get("size_before"), result.get("size_after")
    size = ""
    if isinstance(before, int) and isinstance(after, int):
        size = f", {human_bytes(before)} → {human_bytes(after)}"
    check = result.get("check")
    return f"check {check if isinstance(check, str) else 'FAILED'}{size}"
