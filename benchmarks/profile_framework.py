"""Diagnostic: what ucore's own Python costs per task, with the SQL taken away.

Runs the ``ucore`` side of ``bench_throughput.py`` (N no-op tasks submitted one per call,
two workers, one process) with the quick writes' SQLite connection replaced by a Python
fake that answers the task queue's statements (insert, the claim's pick, its history row and
update, the outcome's updates) from a dict, and with no ``BEGIN``/``COMMIT``. Everything else
is ucore as it runs: the submit path, the claim loop, the executions and their handler tasks,
the quick writes' gathering and delivery, records, events, the event loop. So the time per
task printed here is the framework's share of a task; ``profile_statements.py ucore`` gives
the SQL's share, and ``bench_throughput.py``'s ``rawaio`` side the whole of a queue with
none of ucore's features (docs/performance.md, Round 5).

The fake knows the statements of ``src/ucore/stores/sqlite/store.py`` as they are written
now (it matches them by their first words): when those change, this script must follow.
``--profile`` adds a cProfile of the run (its own overhead doubles the times).

    python benchmarks/profile_framework.py                # 10,000 tasks, 3 runs
    python benchmarks/profile_framework.py --profile --top 30
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))


class _Cursor:
    def __init__(self, rows: list[Any] | None = None, lastrowid: int | None = None) -> None:
        self.rows = rows or []
        self.lastrowid = lastrowid
        self.rowcount = 1

    def fetchall(self) -> list[Any]:
        return self.rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None


class FakeConnection:
    """Answers the task queue's quick writes from memory (see the module's description)."""

    in_transaction = False

    def __init__(self) -> None:
        self.tasks: dict[int, tuple[Any, ...]] = {}
        self.pending: list[int] = []
        self.next_task = 1
        self.next_run = 1

    def execute(self, sql: str, params: Any = ()) -> _Cursor:
        if sql.startswith("INSERT INTO tasks"):
            task_id, self.next_task = self.next_task, self.next_task + 1
            self.tasks[task_id] = tuple(params)
            self.pending.append(task_id)
            return _Cursor(lastrowid=task_id)
        if sql.startswith("SELECT id, name, params"):  # the claim's pick
            rows = []
            while self.pending and len(rows) < params[-1]:
                task_id = self.pending.pop(0)
                # the insert's values: name, params, priority, origin, unique_key,
                # max_attempts, submitted_at, not_before
                name, text, priority, origin, key, most, submitted, not_before = self.tasks[task_id]
                unset = (None,) * 11  # started_at .. lease_expires
                row = (task_id, name, text, priority, origin, "pending", key, 0, 0, 0, most)
                rows.append((*row, submitted, not_before, *unset, 0, None))
            return _Cursor(rows)
        if sql.startswith("INSERT INTO task_runs"):
            run_id, self.next_run = self.next_run, self.next_run + 1
            return _Cursor(lastrowid=run_id)
        if sql.startswith("SELECT min(not_before)"):
            return _Cursor([(None,)])
        return _Cursor()  # the updates, a heartbeat


def run_once(tasks: int) -> tuple[float, float]:
    """(wall, user CPU) seconds per task of one run with the fake connection."""
    import bench_throughput
    from ucore.stores.sqlite import quick

    fake = FakeConnection()

    def begin_and_run(self: Any, fns: list[Any]) -> list[Any]:
        return [(True, fn(fake)) for fn in fns]

    def commit(self: Any, jobs: Any, outcomes: Any) -> None:
        self._deliver(jobs, outcomes)

    quick.QuickWriter._begin_and_run = begin_and_run  # type: ignore[method-assign]
    quick.QuickWriter._commit = commit  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder:
        args = argparse.Namespace(
            tasks=tasks, dir=folder, sync="NORMAL", handler="async", count=False, child="ucore"
        )
        before = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        out = bench_throughput.child_ucore(args)
        user = resource.getrusage(resource.RUSAGE_SELF).ru_utime - before
    return out["t_total"] / tasks, user / tasks


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3, help="runs in this process (medians)")
    p.add_argument("--profile", action="store_true", help="one more run under cProfile")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    runs = [run_once(args.tasks) for _ in range(args.runs)]
    wall = statistics.median(r[0] for r in runs) * 1e6
    user = statistics.median(r[1] for r in runs) * 1e6
    print(f"ucore without SQL, {args.tasks} tasks x {args.runs} runs: {wall:.0f} us/task wall")
    print(f"  (user CPU {user:.0f} us/task, including the fake's own few us)")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run_once(args.tasks)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
