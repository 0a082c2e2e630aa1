"""Diagnostic: what one task's transaction costs on ucore's schema, without any framework.

Each variant runs N tasks in a bare loop, one transaction per task with the statements ucore's
grouped quick writes commit together (insert a task, claim it with its run row, finish the
task claimed before), and prints the time per task and per COMMIT (median of alternating
runs). Variants: the schema as migrated now; as it was before migration 7 (separate
indexes for pending and running tasks, two on finished_at) and before migration 6; and the
checkpoint interval (SQLite's 1,000 pages, which ucore keeps; 4,000; none).

    python benchmarks/profile_commit.py                 # 4,000 tasks, 3 runs, NORMAL
    python benchmarks/profile_commit.py --sync FULL --tasks 2000
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ucore.stores.migrations import SQLITE

#: what migration 7 replaced: two partial indexes for pending and for running tasks instead
#: of one for both, and two indexes on finished_at
_BEFORE_7 = (
    "DROP INDEX tasks_active;"
    "CREATE INDEX tasks_claim ON tasks (priority DESC, id) WHERE state = 'pending';"
    "CREATE INDEX tasks_running ON tasks (lease_expires) WHERE state = 'running';"
    "CREATE INDEX tasks_purge ON tasks (finished_at) "
    "WHERE state IN ('completed', 'failed', 'cancelled', 'timed_out');"
    "CREATE INDEX task_runs_finished ON task_runs (finished_at) WHERE finished_at IS NOT NULL;"
)
#: name -> (extra SQL after the migrations, wal_autocheckpoint)
VARIANTS: dict[str, tuple[str, int]] = {
    "now (checkpoint 1,000)": ("", 1000),
    "now (checkpoint 4,000)": ("", 4000),
    "now (no checkpoint)": ("", 0),
    "before migration 7 (checkpoint 1,000)": (_BEFORE_7, 1000),
    "before migration 6 (checkpoint 1,000)": (
        _BEFORE_7 + "CREATE INDEX tasks_finished ON tasks (finished_at) "
        "WHERE finished_at IS NOT NULL;"
        "DROP INDEX task_runs_finished;"
        "CREATE INDEX task_runs_finished ON task_runs (finished_at);",
        1000,
    ),
}


def setup(folder: Path, extra: str, checkpoint: int, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(folder / "t.db"), isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    for migration in SQLITE:
        conn.executescript(migration.sql)
    if extra:
        conn.executescript(extra)
    conn.execute(f"PRAGMA wal_autocheckpoint = {checkpoint}")
    return conn


def run(conn: sqlite3.Connection, n: int) -> tuple[float, float]:
    """Seconds per task and per COMMIT."""
    now = time.time()
    previous: int | None = None
    commit = 0.0
    t0 = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        tid = conn.execute(
            "INSERT INTO tasks (name, params, priority, origin, state, max_attempts, "
            "submitted_at) VALUES ('noop', '{}', 20, 'api', 'pending', 1, ?)",
            (now,),
        ).lastrowid
        conn.execute(
            "INSERT INTO task_runs (task_id, task_name, attempt, node_id, host, pid, "
            "started_at) VALUES (?, 'noop', 1, 'n', 'h', 1, ?)",
            (tid, now),
        )
        conn.execute(
            "UPDATE tasks SET state = 'running', attempts = 1, started_at = ?, "
            "lease_expires = ? WHERE id = ?",
            (now, now + 30, tid),
        )
        if previous is not None:
            conn.execute(
                "UPDATE tasks SET state = 'completed', finished_at = ?, result = '{}', "
                "lease_expires = NULL WHERE id = ?",
                (now, previous),
            )
            conn.execute(
                "UPDATE task_runs SET finished_at = ?, duration = 0, outcome = 'completed' "
                "WHERE task_id = ?",
                (now, previous),
            )
        previous = tid
        t1 = time.perf_counter()
        conn.execute("COMMIT")
        commit += time.perf_counter() - t1
    return (time.perf_counter() - t0) / n, commit / n


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=4000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sync", default="NORMAL", choices=("NORMAL", "FULL"))
    args = p.parse_args(argv)
    print(f"{args.tasks} tasks per run, {args.runs} runs per variant (alternating), {args.sync}")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(args.runs):
        for name, (extra, checkpoint) in VARIANTS.items():
            with tempfile.TemporaryDirectory() as folder:
                conn = setup(Path(folder), extra, checkpoint, args.sync)
                results[name].append(run(conn, args.tasks))
                conn.close()
    for name, rs in results.items():
        task = statistics.median(r[0] for r in rs) * 1e6
        commit = statistics.median(r[1] for r in rs) * 1e6
        print(f"  {name:40s} {task:7.1f} us per task, {commit:7.1f} us per COMMIT")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
