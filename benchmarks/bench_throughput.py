"""End-to-end throughput: ucore's TaskSystem vs Huey's SqliteHuey vs a raw sqlite3 loop.

Each side submits N no-op tasks **one per call** (each submit awaited / returned before the
next) while its 2 workers run them, and the clock stops when the last one is recorded
complete with its result stored. Both queues use SQLite in WAL mode with the same
``PRAGMA synchronous`` (FULL, then NORMAL):

* **ucore**: one process, ``bootstrap(role="client")``, ``app.tasks.register("noop", ...)``,
  ``await app.tasks.start_workers()`` (``tasks.workers = 2``), then
  ``await app.tasks.submit("noop", {})`` N times from the same event loop. Done = N
  ``task.finished`` events (published after the outcome is committed). Durability comes
  from the config: ``{"database": {"synchronous": "FULL"|"NORMAL"}}``.
* **huey**: one process, ``SqliteHuey`` whose storage subclass runs
  ``PRAGMA synchronous = FULL|NORMAL`` on its connection (Huey's own ``fsync=`` option only
  knows FULL and OFF; ``journal_mode`` is WAL by default), consumer
  ``huey.create_consumer(workers=2, worker_type="thread")`` started in-process, N calls of
  the task from the main thread. Done = N ``SIGNAL_COMPLETE`` signals (sent after the result
  is written to the ``kv`` table).
* **raw**: the physical reference: one thread, one connection, ucore's schema and pragmas,
  per task three transactions: insert; claim (``UPDATE … RETURNING`` + the run row);
  complete (task + run row).
* **raw1**: the same statements in **one** transaction per task (insert, claim, and the
  finish of the task claimed before), as ucore's grouped quick writes commit them: the floor
  of a queue whose submit is durable when it returns and that keeps states and run history.

The "submit phase" figure is N / the time of the submit loop (the workers run meanwhile).

Commits are counted with ``sqlite3.Connection.set_trace_callback`` on the connection that
writes (ucore: the quick writes' connection on the event loop and the writer thread's; huey:
its single shared connection ``huey.storage.conn``): every ``COMMIT`` statement, and separately
those whose transaction changed rows (``total_changes`` moved since its ``BEGIN``).

    python benchmarks/bench_throughput.py              # N=10,000, 5 runs, FULL and NORMAL
    python benchmarks/bench_throughput.py --quick      # smoke run (< 30 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    cleanup,
    load_line,
    make_tmp,
    median,
    print_header,
    ratio,
    run_child,
    snapshot_src,
)

SIDES = ("ucore", "huey", "raw", "raw1", "rawaio")
#: Huey: seconds without a completion signal, with all results stored, before giving up
STALL_SECONDS = 10.0
TARGET_RATIO = 2.0
#: the sides that are floors of ucore's design, and what each is the floor of
FLOORS = {"raw1": "one commit per submit", "rawaio": "an asyncio queue on this schema"}


class CommitCounter:
    """A trace callback counting COMMITs (all, and those whose transaction wrote rows)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.commits = 0
        self.writing_commits = 0
        self.statements = 0
        self._at_begin = 0

    def __call__(self, sql: str) -> None:
        self.statements += 1
        head = sql.lstrip()[:6].upper()
        if head.startswith("BEGIN"):
            self._at_begin = self.conn.total_changes
        elif head.startswith("COMMIT"):
            self.commits += 1
            if self.conn.total_changes != self._at_begin:
                self.writing_commits += 1

    def reset(self) -> None:
        self.commits = self.writing_commits = self.statements = 0

    @staticmethod
    def total(counters: list[CommitCounter], n: int) -> dict[str, Any]:
        """The counts of several connections of one side, added up."""
        sums = CommitCounter(counters[0].conn)
        for c in counters:
            sums.commits += c.commits
            sums.writing_commits += c.writing_commits
            sums.statements += c.statements
        return sums.as_dict(n)

    def as_dict(self, n: int) -> dict[str, Any]:
        return {
            "commits": self.commits,
            "writing_commits": self.writing_commits,
            "statements": self.statements,
            "commits_per_task": self.commits / n,
            "writing_commits_per_task": self.writing_commits / n,
            "statements_per_task": self.statements / n,
        }


# -- ucore ----------------------------------------------------------------------------------
def child_ucore(args: argparse.Namespace) -> dict[str, Any]:
    from ucore.app import bootstrap
    from ucore.foundation.config.loader import parse_config

    n = args.tasks
    data = Path(args.dir)

    async def main() -> dict[str, Any]:
        raw_cfg = {"database": {"synchronous": args.sync}, "tasks": {"workers": 2}}
        cfg = parse_config(raw_cfg, data_dir=data, config_file=data / "config.json", env={})
        app = await bootstrap(cfg, role="client")
        if args.handler == "async":

            async def noop(ctx: Any) -> dict[str, bool]:
                return {"ok": True}

            app.tasks.register("noop", noop)
        else:

            def noop_sync(ctx: Any) -> dict[str, bool]:
                return {"ok": True}

            app.tasks.register("noop", noop_sync)
        store: Any = app.tasks.store
        # the writing connections: the quick writes' (the loop's) and the writer thread's
        writing = [store.db.quick_connection(), store.db._writer.conn]
        counters = [CommitCounter(conn) for conn in writing]
        if args.count:
            for conn, counter in zip(writing, counters, strict=True):
                conn.set_trace_callback(counter)
        finished = 0
        all_done = asyncio.Event()

        def on_finished(event: Any) -> None:
            nonlocal finished
            finished += 1
            if finished >= n:
                all_done.set()

        app.ctx.events.subscribe(on_finished, "task.finished")
        await app.tasks.start_workers()
        await asyncio.sleep(0.2)  # let the idle pool settle
        for counter in counters:
            counter.reset()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(n):
            await app.tasks.submit("noop", {})
        t_sub = time.perf_counter()
        await all_done.wait()
        t_end = time.perf_counter()
        cpu = time.process_time() - cpu0
        counts = CommitCounter.total(counters, n)
        for conn in writing:
            conn.set_trace_callback(None)
        done = await store.db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM tasks WHERE name = 'noop' AND state = 'completed' "
                "AND result IS NOT NULL"
            ).fetchone()[0]
        )
        await app.shutdown()
        return {
            "t_submit": t_sub - t0,
            "t_total": t_end - t0,
            "cpu": cpu,
            "verified": done,
            **counts,
        }

    return asyncio.run(main())


# -- huey -----------------------------------------------------------------------------------
def child_huey(args: argparse.Namespace) -> dict[str, Any]:
    from huey import SqliteHuey
    from huey import signals as hsig
    from huey.storage import SqliteStorage

    n = args.tasks
    sync = args.sync

    class Storage(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> sqlite3.Connection:
            conn = super()._create_connection()  # WAL (Huey's default), cache_size
            conn.execute(f"PRAGMA synchronous = {sync}")
            return conn

    class Huey(SqliteHuey):  # type: ignore[misc]
        storage_class = Storage

    huey = Huey("bench", filename=str(Path(args.dir) / "huey.db"))

    @huey.task()  # type: ignore[misc]
    def noop() -> dict[str, bool]:
        return {"ok": True}

    conn = huey.storage.conn
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    counter = CommitCounter(conn)
    if args.count:
        conn.set_trace_callback(counter)
    finished = 0
    last_signal = [0.0]
    signals: dict[str, int] = {}
    lock = threading.Lock()
    all_done = threading.Event()

    @huey.signal(hsig.SIGNAL_COMPLETE)  # type: ignore[misc]
    def on_complete(signal: Any, task: Any, *rest: Any) -> None:
        nonlocal finished
        with lock:
            finished += 1
            last_signal[0] = time.perf_counter()
            if finished >= n:
                all_done.set()

    @huey.signal()  # type: ignore[misc]
    def on_any(signal: Any, task: Any, *rest: Any) -> None:
        with lock:
            signals[signal] = signals.get(signal, 0) + 1

    consumer = huey.create_consumer(workers=2, worker_type="thread")
    consumer.start()  # threads; returns at once (signal handlers on this, the main, thread)
    time.sleep(0.2)
    counter.reset()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(n):
        noop()
    t_sub = time.perf_counter()
    # Once in ~20 runs (on a loaded VM) fewer than N SIGNAL_COMPLETE arrived although all N
    # results were stored: after STALL_SECONDS without a signal and with N results, stop
    # waiting, take the last signal as the end and report the run as flagged.
    stalled = False
    while not all_done.wait(1.0):
        quiet = time.perf_counter() - max(last_signal[0], t_sub)
        if quiet > STALL_SECONDS and huey.storage.result_store_size() >= n:
            stalled = True
            break
    t_end = last_signal[0] if stalled else time.perf_counter()
    cpu = time.process_time() - cpu0
    counts = counter.as_dict(n)
    conn.set_trace_callback(None)
    consumer.stop(graceful=True)
    done = huey.storage.result_store_size()
    return {
        "t_submit": t_sub - t0,
        "t_total": t_end - t0,
        "cpu": cpu,
        "verified": done,
        "flag": f"only {finished} SIGNAL_COMPLETE (signals {signals})" if stalled else "",
        "pragmas": f"journal_mode={mode} synchronous={level}",
        **counts,
    }


# -- raw sqlite3 ----------------------------------------------------------------------------
#: who claims, in the raw sides' run rows
_RAW_NODE = ("raw-node", socket.gethostname(), os.getpid())


def _raw_insert(conn: sqlite3.Connection, now: float) -> int:
    return int(
        conn.execute(
            "INSERT INTO tasks (name, params, priority, origin, state, max_attempts, "
            "submitted_at) VALUES ('noop', '{}', 20, 'api', 'pending', 1, ?)",
            (now,),
        ).lastrowid
        or 0
    )


def _raw_claim(conn: sqlite3.Connection, now: float) -> tuple[int, int] | None:
    """Claim the next due task and open its run row: (task id, run id), or None."""
    node, host, pid = _RAW_NODE
    row = conn.execute(
        "UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = ?, "
        "node_id = ?, host = ?, pid = ?, lease_expires = ? "
        "WHERE id = (SELECT id FROM tasks WHERE state = 'pending' AND "
        "(not_before IS NULL OR not_before <= ?) ORDER BY priority DESC, id LIMIT 1) "
        "RETURNING id, attempts",
        (now, node, host, pid, now + 30, now),
    ).fetchone()
    if row is None:
        return None
    run_id = conn.execute(
        "INSERT INTO task_runs (task_id, task_name, attempt, node_id, host, pid, "
        "started_at) VALUES (?, 'noop', ?, ?, ?, ?, ?)",
        (row[0], row[1], node, host, pid, now),
    ).lastrowid
    return int(row[0]), int(run_id or 0)


def _raw_finish(conn: sqlite3.Connection, tid: int, run_id: int, started: float) -> None:
    result = json.dumps({"ok": True})
    end = time.time()
    conn.execute(
        "UPDATE tasks SET state = 'completed', finished_at = ?, result = ?, "
        "lease_expires = NULL WHERE id = ? AND state = 'running'",
        (end, result, tid),
    )
    conn.execute(
        "UPDATE task_runs SET finished_at = ?, duration = ?, outcome = 'completed', "
        "result_summary = ? WHERE id = ?",
        (end, end - started, result, run_id),
    )


def _raw_connection(args: argparse.Namespace) -> sqlite3.Connection:
    """A connection with ucore's schema and pragmas (WAL, the mode's synchronous)."""
    from ucore.stores.migrations import SQLITE

    conn = sqlite3.connect(str(Path(args.dir) / "raw.db"), isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {args.sync}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    for migration in SQLITE:
        for statement in migration.sql.split(";"):
            if statement.strip():
                conn.execute(statement)
    return conn


def child_raw(args: argparse.Namespace) -> dict[str, Any]:
    n = args.tasks
    conn = _raw_connection(args)
    counter = CommitCounter(conn)
    if args.count:
        conn.set_trace_callback(counter)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    one_tx = args.child == "raw1"
    previous: tuple[int, int, float] | None = None
    for _ in range(n):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        _raw_insert(conn, now)
        if not one_tx:
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
        claimed = _raw_claim(conn, now)
        assert claimed is not None
        tid, run_id = claimed
        if one_tx:
            # finish the task claimed in the previous transaction (as ucore's groups do)
            if previous is not None:
                _raw_finish(conn, *previous)
            previous = (tid, run_id, now)
            conn.execute("COMMIT")
            continue
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        _raw_finish(conn, tid, run_id, now)
        conn.execute("COMMIT")
    if previous is not None:
        conn.execute("BEGIN IMMEDIATE")
        _raw_finish(conn, *previous)
        conn.execute("COMMIT")
    t_end = time.perf_counter()
    cpu = time.process_time() - cpu0
    counts = counter.as_dict(n)
    conn.set_trace_callback(None)
    done = conn.execute(
        "SELECT count(*) FROM tasks WHERE state = 'completed' AND result IS NOT NULL"
    ).fetchone()[0]
    conn.close()
    return {
        "t_submit": t_end - t0,
        "t_total": t_end - t0,
        "cpu": cpu,
        "verified": done,
        **counts,
    }


def child_rawaio(args: argparse.Namespace) -> dict[str, Any]:
    """The floor of an asyncio task queue on ucore's schema, with none of ucore's features.

    Each submit awaits its commit; the writes waiting at a moment (inserts, claims, finishes)
    run in one transaction on the loop thread when the loop has run what was ready (as
    ucore's quick writes do); two slot coroutines claim, run the no-op coroutine as a task
    of its own (what any executor needs to cancel it) and record the outcome. No events,
    records, leases renewal, progress, timeouts, logging or wake-ups of other processes.
    """
    n = args.tasks
    conn = _raw_connection(args)
    counter = CommitCounter(conn)
    if args.count:
        conn.set_trace_callback(counter)

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        writes: list[tuple[Any, asyncio.Future[Any]]] = []
        flush_at: list[asyncio.Handle | None] = [None]
        rounds = [0]

        def flush() -> None:
            if getattr(loop, "_ready", None) and rounds[0] < 2:
                rounds[0] += 1
                flush_at[0] = loop.call_soon(flush)
                return
            flush_at[0], rounds[0] = None, 0
            group = writes[:]
            writes.clear()
            conn.execute("BEGIN IMMEDIATE")
            results = [fn() for fn, _ in group]
            conn.execute("COMMIT")
            for (_, fut), value in zip(group, results, strict=True):
                fut.set_result(value)

        def write(fn: Any) -> asyncio.Future[Any]:
            fut = loop.create_future()
            writes.append((fn, fut))
            if flush_at[0] is None:
                flush_at[0] = loop.call_soon(flush)
            return fut

        def insert() -> int:
            return _raw_insert(conn, time.time())

        def claim() -> tuple[int, int] | None:
            return _raw_claim(conn, time.time())

        async def noop() -> dict[str, bool]:
            return {"ok": True}

        done = [0]
        all_done = asyncio.Event()
        wake = asyncio.Event()

        async def slot() -> None:
            while done[0] < n:
                got = await write(claim)
                if got is None:
                    wake.clear()
                    await wake.wait()
                    continue
                result = await asyncio.create_task(noop())
                text = json.dumps(result)
                await write(lambda got=got, text=text: _raw_finish(conn, got[0], got[1], 0.0))
                done[0] += 1
                if done[0] >= n:
                    all_done.set()

        slots = [asyncio.create_task(slot()) for _ in range(2)]
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(n):
            await write(insert)
            wake.set()
        t_sub = time.perf_counter()
        await all_done.wait()
        t_end = time.perf_counter()
        cpu = time.process_time() - cpu0
        for task in slots:
            task.cancel()
        return {"t_submit": t_sub - t0, "t_total": t_end - t0, "cpu": cpu}

    out = asyncio.run(main())
    counts = counter.as_dict(n)
    conn.set_trace_callback(None)
    out["verified"] = conn.execute(
        "SELECT count(*) FROM tasks WHERE state = 'completed' AND result IS NOT NULL"
    ).fetchone()[0]
    conn.close()
    return {**out, **counts}


CHILDREN = {
    "ucore": child_ucore,
    "huey": child_huey,
    "raw": child_raw,
    "raw1": child_raw,
    "rawaio": child_rawaio,
}


# -- parent ---------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=None, help="tasks per run (default 10000)")
    p.add_argument("--runs", type=int, default=None, help="runs per side and mode (default 5)")
    p.add_argument(
        "--sync", default="FULL,NORMAL", help="synchronous modes, comma-separated (FULL,NORMAL)"
    )
    p.add_argument("--sides", default=",".join(SIDES), help="ucore,huey,raw (any subset)")
    p.add_argument(
        "--handler", choices=("async", "sync"), default="async", help="ucore's no-op handler"
    )
    p.add_argument("--no-count", dest="count", action="store_false", help="no COMMIT counting")
    p.add_argument("--dir", type=Path, default=None, help="where the databases go (default: TMP)")
    p.add_argument("--keep", action="store_true", help="keep the databases")
    p.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import the live src tree instead of a copy taken at the start",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 300 tasks, 3 runs")
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tasks is None:
        args.tasks = 300 if args.quick else 10_000
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    if args.child is None:
        args.sync = args.sync.upper()
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        out = CHILDREN[args.child](args)
        out["tasks_per_s"] = args.tasks / out["t_total"]
        out["cpu_us_per_task"] = 1e6 * out["cpu"] / args.tasks
        out["cpu_cores"] = out["cpu"] / out["t_total"]
        print(json.dumps(out))
        return 0

    modes = [m.strip() for m in args.sync.split(",") if m.strip()]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    base = make_tmp(args.dir, "ucore-bench-throughput-")
    if args.snapshot:
        snapshot_src(base)
    print_header("end-to-end throughput (tasks/s, higher is better)", sys.argv, base)
    print(
        f"tasks per run: {args.tasks}, runs: {args.runs}, ucore handler: {args.handler}, "
        f"workers: 2 on both queues, commit counting: {'on' if args.count else 'off'}"
    )
    print("order: for each run, for each mode: " + ", ".join(sides) + " (alternating)\n")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    script = Path(__file__).resolve()
    try:
        for run in range(1, args.runs + 1):
            for mode in modes:
                for side in sides:
                    d = base / f"{side}-{mode}-{run}"
                    d.mkdir()
                    child_args = [
                        "--child",
                        side,
                        "--sync",
                        mode,
                        "--tasks",
                        str(args.tasks),
                        "--dir",
                        str(d),
                        "--handler",
                        args.handler,
                    ]
                    if not args.count:
                        child_args.append("--no-count")
                    # a run takes seconds; a side that hangs is stopped rather than waited for
                    r = run_child(script, child_args, timeout=max(600.0, args.tasks / 20))
                    cleanup(d, args.keep)
                    results.setdefault((side, mode), []).append(r)
                    ok = "ok" if r["verified"] == args.tasks else f"ONLY {r['verified']} DONE"
                    if r.get("flag"):
                        ok += f"  FLAGGED: {r['flag']}"
                    print(
                        f"run {run} {mode:6s} {side:6s}: {r['tasks_per_s']:8.0f} tasks/s  "
                        f"total {r['t_total']:6.2f} s (submit loop {r['t_submit']:6.2f} s)  "
                        f"commits/task {r['commits_per_task']:.2f} "
                        f"(writing {r['writing_commits_per_task']:.2f})  "
                        f"statements/task {r['statements_per_task']:.1f}  "
                        f"CPU {r['cpu_us_per_task']:.0f} us/task "
                        f"({r['cpu_cores']:.2f} cores)  {ok}",
                        flush=True,
                    )
    finally:
        cleanup(base, args.keep)

    print("\n== medians over", args.runs, "runs")
    for mode in modes:
        med = {
            side: median(r["tasks_per_s"] for r in results[(side, mode)])
            for side in sides
            if (side, mode) in results
        }
        print(f"synchronous={mode}")
        for side in sides:
            rs = results.get((side, mode), [])
            if not rs:
                continue
            lo = min(r["tasks_per_s"] for r in rs)
            hi = max(r["tasks_per_s"] for r in rs)
            cpt = median(r["commits_per_task"] for r in rs)
            wcpt = median(r["writing_commits_per_task"] for r in rs)
            sub = median(args.tasks / r["t_submit"] for r in rs)
            cpu_us = median(r["cpu_us_per_task"] for r in rs)
            cores = median(r["cpu_cores"] for r in rs)
            extra = f"  [{rs[0]['pragmas']}]" if "pragmas" in rs[0] else ""
            print(
                f"  {side:6s}: {med[side]:8.0f} tasks/s (min {lo:.0f}, max {hi:.0f})  "
                f"submit phase {sub:6.0f} submits/s  commits/task {cpt:.2f} "
                f"(writing {wcpt:.2f})  CPU {cpu_us:.0f} us/task ({cores:.2f} cores){extra}"
            )
        if "ucore" in med and "huey" in med:
            r = ratio(med["ucore"], med["huey"])
            verdict = (
                f"met ({r:.2f}x)"
                if r >= TARGET_RATIO
                else f"MISSED: {r:.2f}x, needs {TARGET_RATIO / r:.2f}x more ucore throughput"
            )
            per_run = [
                ratio(a["tasks_per_s"], b["tasks_per_s"])
                for a, b in zip(results[("ucore", mode)], results[("huey", mode)], strict=False)
            ]
            print(
                f"  ratio ucore/huey: {r:.2f}x (per run pair: "
                + ", ".join(f"{x:.2f}" for x in per_run)
                + f")  target >= {TARGET_RATIO:g}x: {verdict}"
            )
        if "ucore" in med and "raw" in med:
            print(f"  ratio ucore/raw : {ratio(med['ucore'], med['raw']):.2f}x")
        if "huey" in med and "raw" in med:
            print(f"  ratio huey/raw  : {ratio(med['huey'], med['raw']):.2f}x")
        for floor, what in FLOORS.items():
            if "huey" in med and floor in med:
                rf = ratio(med[floor], med["huey"])
                side = "above" if rf >= TARGET_RATIO else "BELOW"
                print(
                    f"  ratio {floor}/huey: {rf:.2f}x (the floor of {what}: "
                    f"{side} the {TARGET_RATIO:g}x target)"
                )
            if "ucore" in med and floor in med:
                print(f"  ratio ucore/{floor}: {ratio(med['ucore'], med[floor]):.2f}x")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
