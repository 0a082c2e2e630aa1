"""Helpers of the maintenance tests: old rows through the store API, dumps, running tasks."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ucore.app import App, bootstrap
from ucore.foundation.clock import Clock
from ucore.foundation.config import parse_config
from ucore.stores.base import Store
from ucore.stores.records import (
    JournalEntry,
    JournalFilter,
    NewJournalEntry,
    NewTask,
    Outcome,
    Priority,
    TaskRecord,
    TaskState,
)

#: A Sunday noon (UTC), far from any daylight-saving change.
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: The six maintenance tasks.
TASKS = (
    "background_verification",
    "database_optimization",
    "cache_cleanup",
    "orphaned_cleanup",
    "log_rotation",
    "database_cleanup",
)
#: The keys of each task's own result (DESIGN.md §6, issues 8 and 9).
OWN_KEYS = {
    "cache_cleanup": {"scanned", "deleted", "bytes_freed", "bytes_remaining", "skipped"},
    "orphaned_cleanup": {"checked", "marked", "removed", "restored", "roots_skipped"},
    "log_rotation": {"rotated", "compressed", "deleted", "bytes_freed"},
    "background_verification": {"roots", "drifted", "scans_queued"},
    "database_optimization": {"size_before", "size_after", "actions", "check"},
    "database_cleanup": {
        "tasks_deleted",
        "history_deleted",
        "journal_deleted",
        "summaries_written",
    },
}
SHARED_KEYS = {"dry_run", "partial", "warnings"}
#: A task name no app of these tests registers: its tasks are never claimed by a worker.
LEGACY = "legacy_job"
OLD_NODE = "old-node-0000"

_OUTCOME = {
    TaskState.COMPLETED: Outcome.COMPLETED,
    TaskState.FAILED: Outcome.FAILED,
    TaskState.CANCELLED: Outcome.CANCELLED,
    TaskState.TIMED_OUT: Outcome.TIMED_OUT,
}


async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]], *, within: float = 10.0, what: str = "it"
) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


async def finish(app: App, task_id: int, within: float = 30.0) -> TaskRecord:
    return await asyncio.wait_for(app.tasks.wait(task_id, poll=0.05), within)


async def run(app: App, name: str, params: dict[str, Any] | None = None) -> TaskRecord:
    """Submit ``name`` and wait for its end (this app's workers run it)."""
    return await finish(app, await app.tasks.submit(name, params or {}))


async def run_now(app: App, name: str, params: dict[str, Any] | None = None) -> TaskRecord:
    """Run the schedule ``name`` now (its unique key, so status sees it) and wait."""
    task_id, _ = await app.scheduler.run_now(name, params or {})
    return await finish(app, task_id)


async def old_task(
    store: Store,
    state: TaskState,
    *,
    submitted: datetime,
    started: datetime | None = None,
    finished: datetime | None = None,
    name: str = LEGACY,
    result: Any = None,
    error: str | None = None,
) -> int:
    """A task inserted, claimed (by a node that is not alive) and finished at the given
    (past) times through the store API; returns its id."""
    task_id, created = await store.insert_task(
        NewTask(
            name=name,
            params={},
            priority=Priority.NORMAL,
            origin="api",
            submitted_at=submitted,
        )
    )
    assert created
    if state is TaskState.PENDING:
        return task_id
    started = started or submitted
    record = await store.claim_task(
        node_id=OLD_NODE,
        host="elsewhere.example",
        pid=1,
        now=started,
        lease_until=started + timedelta(days=36500),
        task_id=task_id,
    )
    assert record is not None and record.run_id is not None
    if state is TaskState.RUNNING:
        return task_id
    assert finished is not None
    done = await store.finish_run(
        task_id,
        record.run_id,
        outcome=_OUTCOME[state],
        now=finished,
        next_state=state,
        result=result,
        error=error if error is not None or state is TaskState.COMPLETED else "failed long ago",
    )
    assert done
    return task_id


async def old_journal(store: Store, at: datetime, text: str = "old") -> int:
    return await store.add_journal(NewJournalEntry(at, "test.old", text, {"n": 1}))


async def journal_of(app: App, task_id: int, kind: str | None = None) -> list[JournalEntry]:
    entries = await app.tasks.store.list_journal(JournalFilter(kind=kind, limit=100_000))
    return [e for e in entries if e.task_id == task_id]


def connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


_SKIP_TABLES = {"nodes", "schema_migrations"}


def dump(db: Path, skip_tasks: Iterable[int] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but nodes), apart from the rows of the tasks ``skip_tasks``
    (their task row, run history and journal entries)."""
    skip = set(skip_tasks)
    out: dict[str, list[tuple[Any, ...]]] = {}
    conn = connect(db)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in sorted(set(tables) - _SKIP_TABLES):
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            if table == "tasks":
                key = cols.index("id")
            elif table in ("task_runs", "journal"):
                key = cols.index("task_id")
            else:
                key = None
            out[table] = [r for r in rows if key is None or r[key] not in skip]
    finally:
        conn.close()
    return out


def pages(db: Path) -> tuple[int, int]:
    """(page_count, freelist_count) of the database."""
    conn = connect(db)
    try:
        return (
            int(conn.execute("PRAGMA page_count").fetchone()[0]),
            int(conn.execute("PRAGMA freelist_count").fetchone()[0]),
        )
    finally:
        conn.close()


def count(db: Path, sql: str, *args: Any) -> int:
    conn = connect(db)
    try:
        return int(conn.execute(sql, args).fetchone()[0])
    finally:
        conn.close()


async def bulk_history(
    store: Any, n: int, first_start: float, *, step: float = 60.0, name: str = LEGACY
) -> None:
    """``n`` finished run-history rows (1 s each, completed), started ``step`` s apart from
    the epoch time ``first_start``: test set-up in bulk, straight into the SQLite store."""
    rows = [
        (
            1_000_000 + i,
            name,
            1,
            OLD_NODE,
            "elsewhere.example",
            1,
            first_start + i * step,
            first_start + i * step + 1.0,
            1.0,
            "completed",
            '{"bytes_freed": 1}',
            None,
        )
        for i in range(n)
    ]

    def op(c: sqlite3.Connection) -> None:
        c.executemany(
            "INSERT INTO task_runs (task_id, task_name, attempt, node_id, host, pid, "
            "started_at, finished_at, duration, outcome, result_summary, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    await store.db.write(op)


async def bulk_journal(store: Any, n: int, at: float, size: int = 0) -> None:
    """``n`` journal entries at epoch time ``at`` (with ``size`` bytes of payload each)."""
    data = '{"pad": "' + "x" * size + '"}'
    rows = [(at, "test.bulk", f"entry {i}", data) for i in range(n)]

    def op(c: sqlite3.Connection) -> None:
        c.executemany("INSERT INTO journal (at, kind, message, data) VALUES (?, ?, ?, ?)", rows)

    await store.db.write(op)


# A ucore whose database "fails" quick_check: the console script's main() with the store's
# quick_check patched (the only way to damage a database on purpose, reproducibly).
DAMAGED_UCORE = textwrap.dedent(
    """
    import sys
    from ucore.stores.sqlite.store import SQLiteStore

    async def quick_check(self):
        return ["row 3 missing from index x"]

    SQLiteStore.quick_check = quick_check
    from ucore.cli.main import main
    sys.exit(main())
    """
)


def damaged_ucore(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ucore --data-dir tmp_path/data ARGS`` with a damaged database, HOME in tmp_path."""
    wrapper = tmp_path / "damaged_ucore.py"
    wrapper.write_text(DAMAGED_UCORE)
    home = tmp_path / "cli-home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(wrapper), "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=False,
    )


class AppFactory:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.apps: list[App] = []

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ucore.db"

    async def __call__(
        self,
        *,
        role: str = "client",
        clock: Clock | None = None,
        maintenance: dict[str, Any] | None = None,
        tasks: dict[str, Any] | None = None,
        workers: bool = True,
    ) -> App:
        raw: dict[str, Any] = {}
        if maintenance is not None:
            raw["maintenance"] = maintenance
        if tasks is not None:
            raw["tasks"] = tasks
        config = parse_config(raw, data_dir=self.data_dir, env={})
        app = await bootstrap(config, role=role, clock=clock)
        self.apps.append(app)
        if workers and app.tasks.pool is None:
            await app.tasks.start_workers()
        return app

    async def close_all(self) -> None:
        for app in reversed(self.apps):
            try:
                await app.shutdown()
            except Exception as exc:  # keep closing the others
                logging.getLogger("tests").warning("app shutdown failed: %s", exc)
