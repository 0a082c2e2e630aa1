"""database_cleanup: purge old finished tasks, run history and journal entries.

Finished tasks (completed, failed, cancelled, timed out — by the time they finished) and
finished run-history rows older than ``task_retention_days``; journal entries older than
``journal_retention_days``. Never a pending or running task. Deletes go in short batches
(``rowid IN (SELECT … LIMIT n)``, one transaction each) so that no other writer waits long;
before history rows go, they are added to per-day, per-task summaries (runs, failures, total
and max duration, bytes freed) so that trend charts survive the purge. ``PRAGMA optimize``
follows a large purge. Result: ``tasks_deleted``, ``history_deleted``, ``journal_deleted``,
``summaries_written``, ``dry_run``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ucore.foundation.config.params import DatabaseCleanupParams
from ucore.maintenance.run import MaintenanceRun

NAME = "database_cleanup"
#: Rows per delete transaction: a few milliseconds of write lock each.
BATCH = 2000
#: After a purge of at least this many rows the planner statistics are refreshed.
LARGE_PURGE = 10_000

_KEYS = {"tasks": "tasks_deleted", "history": "history_deleted", "journal": "journal_deleted"}


async def body(run: MaintenanceRun) -> None:
    params: DatabaseCleanupParams = run.ctx.params
    now = run.ctx.app.clock.now()
    cutoffs = {
        "tasks": now - timedelta(days=params.task_retention_days),
        "history": now - timedelta(days=params.task_retention_days),
        "journal": now - timedelta(days=params.journal_retention_days),
    }
    store = run.store
    result = run.result
    for key in (*_KEYS.values(), "summaries_written"):
        result[key] = 0
    todo = {kind: await store.count_purgeable(kind, cutoffs[kind]) for kind in cutoffs}
    total = sum(todo.values())
    if run.dry_run:
        for kind, count in todo.items():
            result[_KEYS[kind]] = count
        return
    done = 0
    run.ctx.progress(0, total or 1, "purging")
    for kind in ("history", "tasks", "journal"):
        while True:
            run.step()
            batch = await store.purge_batch(kind, cutoffs[kind], BATCH)
            result[_KEYS[kind]] += batch.deleted
            result["summaries_written"] += batch.summaries
            done += batch.deleted
            run.ctx.progress(done, max(total, done), f"{kind}: {result[_KEYS[kind]]:,} deleted")
            if batch.deleted < BATCH:
                break
    if done >= LARGE_PURGE:
        await store.optimize()


def summary(result: dict[str, Any]) -> str:
    verb = "would delete" if result.get("dry_run") else "deleted"
    parts = [
        f"{result.get('tasks_deleted', 0):,} tasks",
        f"{result.get('history_deleted', 0):,} history rows",
        f"{result.get('journal_deleted', 0):,} journal entries",
    ]
    return f"{verb} " + ", ".join(parts)
