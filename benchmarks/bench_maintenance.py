"""Maintenance: purge of old run history, and verification of a big library root.

    python benchmarks/bench_maintenance.py [--rows 1000000] [--files 1000000] [--runs 5]
        [--only purge|verify] [--interval-ms 5] [--ours-workers runner|all] [--tree PATH]
        [--profile] [--anatomy] [--quick] [--dir BASE] [--keep] [--no-snapshot]
        experiments: [--batch-rows N] [--batch-pause-ms MS] [--waiter-poll-ms MS]
                     [--autocheckpoint PAGES]

**1. Purge** of ``--rows`` old finished tasks and as many run-history rows (one run per
task, finished 31 to 396 days ago; plus 1,000 recent finished tasks with their runs and 100
pending tasks that must survive), while **another process submits tasks**: a client app,
``await app.tasks.submit("sleep", {"seconds": 0})`` every ``--interval-ms`` (5 ms), each
submit's wall time recorded. The rows go into a fresh ucore database (schema from
bootstrapping a client once) with ``executemany`` in one transaction; that template is
copied before every run, so every run starts from an identical file. Alternating, each in a
fresh child process:

* **ours**: ``database_cleanup`` (``task_retention_days`` 30) through the TaskSystem: a
  client submits it and runs it here as the CLI's ``maintenance run --wait`` does without a
  service (``become_runner`` + ``wait``; ``--ours-workers all``: ``start_workers()`` instead,
  so this process also runs the submitted ``sleep`` tasks, as a service would, and their
  time is included). Timed from
  submit to the finished record (batches of 2,000 rows, daily summaries, ``PRAGMA
  optimize``).
* **one DELETE**: ``sqlite3``, ucore's pragmas, ``BEGIN IMMEDIATE; DELETE FROM task_runs
  WHERE finished_at < ?; DELETE FROM tasks WHERE <finished> AND finished_at < ?; COMMIT``.

Printed: total time of each side, their ratio (target: ours within 3x of the one DELETE),
and the longest submit wait of the other process during each (target: < 200 ms for ours).
The submitter's busy timeout is raised to 120 s so that a submit stuck behind the one DELETE
shows how long it waited instead of failing (with the default 5 s and 3 tries of
``BEGIN IMMEDIATE`` it would fail after about 15 s). Each run checks that 2 x ``--rows`` rows
went and that the recent and pending rows the template holds are all still there.

**2. Verification** of ``--files`` empty files (1,000 per folder, 100 folders per group),
made once with ``os.open``/``os.close``, added as a library root and scanned once
(``library_scan`` through the TaskSystem). Then, page cache warm (each side runs once
untimed), alternating: **ours** = ``background_verification`` (``scan_on_drift`` false)
through the TaskSystem, submit -> finished; **find** = ``sh -c 'find ROOT -type f | wc -l'``.
Target: ours within 3x of find.

Peak memory: the peak resident set of the process doing the work, read as ``VmHWM`` from
``/proc/self/status`` at its end (ours: the ucore child; the one DELETE: its ``sqlite3``
child); for ``find`` and ``wc`` ``/usr/bin/time -f %M`` on each, in the untimed warm-up run.
Not ``ru_maxrss``: on Linux an exec'd child's ``ru_maxrss`` starts at its parent's peak (a
child of a 210 MiB Python reports 210 MiB), so it would show the benchmark's own size.

Diagnostics of the purge: ours' store calls are timed (``count_purgeable``, each
``purge_batch``, ``optimize``) to say which one the longest submit wait overlapped, how long
batches hold the write lock and how long the gaps between them are. ``--anatomy`` replays
ucore's own purge statements (imported from the store) with ``sqlite3`` on a copy, without
the other process, and times each kind (summaries, deletes, commits). Experiments, labelled
in the output and never ucore's behaviour: ``--batch-rows N`` (``database_cleanup.BATCH``),
``--batch-pause-ms MS`` (a pause after each batch), ``--waiter-poll-ms MS`` (the submitting
process tries the write lock every MS ms instead of SQLite's busy handler, whose sleeps grow
to 100 ms), ``--autocheckpoint PAGES`` (``PRAGMA wal_autocheckpoint`` in the anatomy).

Verification diagnostics: the time of ``file_counts`` and of the walk (``count_on_disk``) in
ours, the peak RSS after bootstrap and before the walk, and two bare Python walks for
reference (``os.scandir`` by entry type only, and with an ``lstat`` of every entry).

``--profile``: one more run of ours per measurement under cProfile (every thread, idle waits
left out) and the functions with the most own time. ``--quick``: 20,000 rows, 100,000 files,
3 runs (20-40 s). ``--tree PATH`` keeps the file tree there for later invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ThreadProfiles,
    add_work_args,
    bench_main,
    clean_env,
    cleanup,
    config,
    fmt_ratio,
    maxrss_mib,
    median,
    percentile,
    ratio,
    run_child,
)

SCRIPT = Path(__file__).resolve()
DAY = 86400.0
RETENTION_DAYS = 30.0
#: finished tasks (with one run each) inside the retention window: must survive
RECENT = 1000
#: pending tasks: must survive
PENDING = 100
NAMES = ("library_scan", "thumbnails_generate", "cache_cleanup", "sleep", "log_rotation")
FINISHED = "('completed', 'failed', 'cancelled', 'timed_out')"
PER_DIR = 1000
DIRS_PER_GROUP = 100
TARGET_RATIO = 3.0
TARGET_WAIT_MS = 200.0
#: the submitter runs this long before the measured operation starts (its baseline)
BASELINE_S = 0.5


# -- 1. purge: the template database ---------------------------------------------------------
def child_fill(data: str, rows: str) -> dict[str, Any]:
    """Bootstrap a client once (schema), then fill tasks and task_runs with direct SQL."""
    from ucore.app import bootstrap

    d = Path(data)

    async def schema() -> str:
        app = await bootstrap(config(d), role="client")
        path = str(app.tasks.store.db.path)  # type: ignore[attr-defined]
        await app.shutdown()
        return path

    path = asyncio.run(schema())
    n = int(rows)
    now = time.time()
    old_start = now - (RETENTION_DAYS + 366) * DAY  # the newest old row: a day past the cutoff
    step = 365 * DAY / max(n, 1)
    host, pid = "bench-host", 4242

    def row(i: int, at: float) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        name = NAMES[i % len(NAMES)]
        failed = i % 50 == 0
        outcome = "failed" if failed else "completed"
        duration = 0.01 + (i % 500) / 100
        finished = at + duration
        summary = json.dumps({"bytes_freed": i % 100_000} if name == "cache_cleanup" else {"n": i})
        task = (
            i,
            name,
            "{}",
            1,
            "schedule:bench",
            outcome,
            1,
            1 if failed else 0,
            at - 0.01,
            at,
            finished,
            1.0,
            None if failed else summary,
            "boom" if failed else None,
            "bench-node",
            host,
            pid,
            i,
        )
        run = (i, i, name, 1, "bench-node", host, pid, at, finished, duration, outcome, summary)
        return task, run

    def all_rows() -> Any:
        for i in range(1, n + 1):
            yield row(i, old_start + (i - 1) * step)
        for k in range(RECENT):
            yield row(n + 1 + k, now - (RETENTION_DAYS - 20) * DAY + k)

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    pairs = list(all_rows()) if n <= 50_000 else None
    task_sql = (
        "INSERT INTO tasks (id, name, params, priority, origin, state, attempts, failures, "
        "submitted_at, started_at, finished_at, progress, result, error, node_id, host, pid, "
        "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    run_sql = (
        "INSERT INTO task_runs (id, task_id, task_name, attempt, node_id, host, pid, "
        "started_at, finished_at, duration, outcome, result_summary) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    conn.executemany(task_sql, (t for t, _ in (pairs or all_rows())))
    conn.executemany(run_sql, (r for _, r in (pairs or all_rows())))
    conn.executemany(
        "INSERT INTO tasks (id, name, params, priority, origin, state, submitted_at) "
        "VALUES (?, 'sleep', '{}', 1, 'bench-pending', 'pending', ?)",
        ((n + RECENT + 1 + k, now) for k in range(PENDING)),
    )
    conn.execute("COMMIT")
    fill = time.perf_counter() - start
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    from ucore.stores.sqlite.maintenance import _PURGE, purge_pick

    plans = {
        _PURGE[kind][0]: " | ".join(
            r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {purge_pick(kind)}", (now, 2000))
        )
        for kind in ("history", "tasks")
    }
    conn.close()
    return {
        "db": path,
        "seconds": fill,
        "bytes": os.path.getsize(path),
        "plans": plans,
    }


def counts(path: str) -> dict[str, int]:
    """What is left of the rows the template was filled with."""
    conn = sqlite3.connect(path)
    try:
        return {
            "task_runs": conn.execute(
                "SELECT count(*) FROM task_runs WHERE host = 'bench-host'"
            ).fetchone()[0],
            "finished_tasks": conn.execute(
                f"SELECT count(*) FROM tasks WHERE state IN {FINISHED} AND host = 'bench-host'"
            ).fetchone()[0],
            "old_pending": conn.execute(
                "SELECT count(*) FROM tasks WHERE state = 'pending' AND origin = 'bench-pending'"
            ).fetchone()[0],
        }
    finally:
        conn.close()


# -- 1. purge: the other process ------------------------------------------------------------
def child_submitter(data: str, out: str, interval_ms: str, poll_ms: str = "0") -> dict[str, Any]:
    """Submit ``sleep`` every interval until SIGTERM; each submit's (wall start, seconds).

    ``poll_ms`` (experiment): the writer's ``BEGIN IMMEDIATE`` tries the lock every
    ``poll_ms`` instead of SQLite's busy handler backing off to 100 ms between tries.
    """
    from ucore.app import bootstrap

    interval = float(interval_ms) / 1000
    samples: list[tuple[float, float, str | None]] = []
    poll = int(float(poll_ms))
    if poll:
        import ucore.stores.sqlite.db as db_module

        def begin(self: Any, conn: sqlite3.Connection) -> None:
            deadline = time.monotonic() + 120
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                        raise

        db_module._Writer._begin = begin  # type: ignore[method-assign]

    async def main() -> None:
        cfg = config(Path(data), {"database": {"busy_timeout_seconds": 120}})
        app = await bootstrap(cfg, role="client")
        if poll:
            await app.tasks.store.db.write_raw(  # type: ignore[attr-defined]
                lambda c: c.execute(f"PRAGMA busy_timeout = {poll}")
            )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        due = time.perf_counter()
        parent = os.getppid()
        while not stop.is_set() and os.getppid() == parent:
            wall, t = time.time(), time.perf_counter()
            error = None
            try:
                await app.tasks.submit("sleep", {"seconds": 0})
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            samples.append((wall, time.perf_counter() - t, error))
            due += interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                due = time.perf_counter()
                await asyncio.sleep(0)
        await app.shutdown()

    asyncio.run(main())
    Path(out).write_text(json.dumps({"samples": samples, "maxrss_mib": maxrss_mib()}))
    return {"submits": len(samples)}


def start_submitter(
    data: Path, interval_ms: float, poll_ms: float = 0
) -> tuple[subprocess.Popen[str], Path]:
    out = data.parent / f"{data.name}-submits.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--child",
            "submitter",
            str(data),
            str(out),
            f"{interval_ms}",
            f"{poll_ms}",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise SystemExit(f"the submitter did not start: {line!r}")
    return proc, out


def stop_submitter(proc: subprocess.Popen[str], out: Path) -> dict[str, Any]:
    time.sleep(0.2)  # a few submits after the end
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=180)
    data: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return data


@contextlib.contextmanager
def submitting(data: Path, interval_ms: float, poll_ms: float) -> Iterator[dict[str, Any]]:
    """The other process, for the duration of the block; ``box["submits"]`` after it."""
    proc, out = start_submitter(data, interval_ms, poll_ms)
    box: dict[str, Any] = {}
    try:
        yield box
        box["submits"] = stop_submitter(proc, out)
    finally:
        if proc.poll() is None:  # the measurement failed: never leave it running
            proc.kill()
            proc.wait()


def waits(submits: dict[str, Any], t0: float, t1: float) -> dict[str, Any]:
    """The submits that overlapped [t0, t1], and those before t0 (the baseline)."""
    samples = submits["samples"]
    inside = [s for s in samples if s[0] < t1 and s[0] + s[1] > t0]
    before = [s[1] for s in samples if s[0] + s[1] <= t0]
    during = [s[1] for s in inside]
    longest = max(inside, key=lambda s: s[1], default=None)
    return {
        "longest": list(longest[:2]) if longest else None,
        "submits": len(during),
        "max_wait": max(during, default=float("nan")),
        "p99_wait": percentile(during, 99),
        "p50_wait": percentile(during, 50),
        "baseline_max": max(before, default=float("nan")),
        "baseline_n": len(before),
        "errors": sum(1 for s in inside if s[2]),
        "first_error": next((s[2] for s in inside if s[2]), None),
        "submitter_rss_mib": submits["maxrss_mib"],
    }


# -- 1. purge: the two sides ----------------------------------------------------------------
def time_store_calls(
    store: Any,
    calls: list[tuple[str, float, float]],
    pause: float = 0.0,
    names: tuple[str, ...] = ("count_purgeable", "purge_batch", "optimize"),
) -> None:
    """Record (name, wall start, wall end) of store calls (patched on the instance)."""
    for name in names:
        original = getattr(store, name)

        def timed(original: Any = original, name: str = name) -> Any:
            async def call(*args: Any, **kwargs: Any) -> Any:
                start = time.time()
                try:
                    return await original(*args, **kwargs)
                finally:
                    calls.append((name, start, time.time()))
                    if pause and name == "purge_batch":
                        await asyncio.sleep(pause)

            return call

        setattr(store, name, timed())


def phases(calls: list[tuple[str, float, float]], longest: list[float] | None) -> dict[str, Any]:
    """Batch durations, gaps between batches, and what the longest submit wait overlapped."""
    batches = [(a, b) for name, a, b in calls if name == "purge_batch"]
    held = [b - a for a, b in batches]
    gaps = [batches[i + 1][0] - batches[i][1] for i in range(len(batches) - 1)]
    span = batches[-1][1] - batches[0][0] if batches else 0.0
    other = {
        name: sum(b - a for n, a, b in calls if n == name)
        for name in ("count_purgeable", "optimize")
    }
    blame = "n/a"
    if longest:
        s0, s1 = longest[0], longest[0] + longest[1]
        hit = [(n, a, b) for n, a, b in calls if a < s1 and b > s0]
        names: dict[str, int] = {}
        for n, _, _ in hit:
            names[n] = names.get(n, 0) + 1
        blame = ", ".join(f"{k} x{v}" for k, v in names.items()) or "no store call"
        if hit:
            blame += f" (longest of them {max(b - a for _, a, b in hit) * 1000:.0f} ms)"
    return {
        "batches": len(batches),
        "batch_p50": percentile(held, 50),
        "batch_max": max(held, default=float("nan")),
        "gap_p50": percentile(gaps, 50),
        "busy": sum(held) / span if span else float("nan"),
        "count_s": other["count_purgeable"],
        "optimize_s": other["optimize"],
        "blame": blame,
    }


def child_purge_ours(data: str, options: str) -> dict[str, Any]:
    """``options``: JSON with interval_ms, workers, profile, batch_rows, pause_ms."""
    import ucore.maintenance.database_cleanup as cleanup_task
    from ucore.app import bootstrap

    opts = json.loads(options)
    if opts["batch_rows"]:
        cleanup_task.BATCH = opts["batch_rows"]  # read by the task at each batch
    d = Path(data)
    profile = opts["profile"]
    prof = ThreadProfiles() if profile else None
    calls: list[tuple[str, float, float]] = []

    async def main() -> dict[str, Any]:
        if prof:  # before bootstrap: the database threads start there
            prof.start()
        app = await bootstrap(config(d), role="client")
        try:
            time_store_calls(app.tasks.store, calls, opts["pause_ms"] / 1000)
            await asyncio.sleep(BASELINE_S)
            t0 = time.time()
            params = {"task_retention_days": RETENTION_DAYS}
            task_id = await app.tasks.submit("database_cleanup", params, origin="bench")
            if opts["workers"] == "all":
                await app.tasks.start_workers()
            else:
                await app.tasks.become_runner(task_id)
            record = await app.tasks.wait(task_id)
            t1 = time.time()
            assert record.state.value == "completed", (record.state, record.error)
            db = str(app.tasks.store.db.path)  # type: ignore[attr-defined]
            return {"t0": t0, "t1": t1, "result": record.result, "db": db}
        finally:
            await app.shutdown()

    with submitting(d, opts["interval_ms"], opts["poll_ms"]) as other:
        res = asyncio.run(main())
    rss = maxrss_mib()
    profile_text = prof.report(Path(profile)) if prof else None
    w = waits(other["submits"], res["t0"], res["t1"])
    result = res["result"]
    return {
        "seconds": res["t1"] - res["t0"],
        "task_seconds": result["duration"],
        "deleted": result["history_deleted"] + result["tasks_deleted"],
        "history_deleted": result["history_deleted"],
        "tasks_deleted": result["tasks_deleted"],
        "summaries": result["summaries_written"],
        "left": counts(res["db"]),
        "maxrss_mib": rss,
        "profile": profile_text,
        **phases(calls, w["longest"]),
        **w,
    }


def child_purge_delete(data: str, interval_ms: str, poll_ms: str) -> dict[str, Any]:
    d = Path(data)
    db = str(d / "ucore.db")
    with submitting(d, float(interval_ms), float(poll_ms)) as other:
        conn = sqlite3.connect(db, isolation_level=None, timeout=5.0)
        for pragma in (
            "busy_timeout = 5000",
            "journal_mode = WAL",
            "synchronous = FULL",
            "foreign_keys = ON",
            "temp_store = MEMORY",
        ):
            conn.execute(f"PRAGMA {pragma}")
        time.sleep(BASELINE_S)
        cutoff = time.time() - RETENTION_DAYS * DAY
        t0 = time.time()
        conn.execute("BEGIN IMMEDIATE")
        runs = conn.execute("DELETE FROM task_runs WHERE finished_at < ?", (cutoff,)).rowcount
        tasks = conn.execute(
            f"DELETE FROM tasks WHERE state IN {FINISHED} AND finished_at < ?", (cutoff,)
        ).rowcount
        conn.execute("COMMIT")
        t1 = time.time()
        conn.close()
    rss = maxrss_mib()
    w = waits(other["submits"], t0, t1)
    return {
        "seconds": t1 - t0,
        "deleted": runs + tasks,
        "history_deleted": runs,
        "tasks_deleted": tasks,
        "left": counts(db),
        "maxrss_mib": rss,
        **w,
    }


def child_anatomy(data: str, batch_rows: str, autocheckpoint: str = "") -> dict[str, Any]:
    """ucore's purge SQL (its own statements, imported) replayed with plain sqlite3 on a copy,
    each statement kind timed: where the time of a batch goes. No submitter."""
    import ucore.maintenance.database_cleanup as cleanup_task
    from ucore.stores.sqlite.maintenance import _PURGE, _SUMMARISE, purge_pick

    limit = int(batch_rows) or cleanup_task.BATCH
    conn = sqlite3.connect(str(Path(data) / "ucore.db"), isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "temp_store = MEMORY"):
        conn.execute(f"PRAGMA {pragma}")
    if autocheckpoint:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")
    longest: dict[str, float] = {}
    cutoff = time.time() - RETENTION_DAYS * DAY
    spent = {"begin": 0.0, "summarise": 0.0, "delete history": 0.0, "delete tasks": 0.0}
    spent["commit"] = 0.0
    batches = {"history": 0, "tasks": 0}
    start = time.perf_counter()
    for kind in ("history", "tasks"):
        table, _ = _PURGE[kind]
        pick = purge_pick(kind)
        while True:
            t = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            t1 = time.perf_counter()
            spent["begin"] += t1 - t
            if kind == "history":
                conn.execute(_SUMMARISE.format(ids=pick), (cutoff, limit))
                t2 = time.perf_counter()
                spent["summarise"] += t2 - t1
                t1 = t2
            deleted = conn.execute(
                f"DELETE FROM {table} WHERE rowid IN ({pick})", (cutoff, limit)
            ).rowcount
            t2 = time.perf_counter()
            spent[f"delete {kind}"] += t2 - t1
            conn.execute("COMMIT")
            t3 = time.perf_counter()
            spent["commit"] += t3 - t2
            longest["commit"] = max(longest.get("commit", 0.0), t3 - t2)
            longest["batch"] = max(longest.get("batch", 0.0), t3 - t)
            batches[kind] += 1
            if deleted < limit:
                break
    total = time.perf_counter() - start
    rows = {
        "history": conn.execute("SELECT count(*) FROM task_runs").fetchone()[0],
        "tasks": conn.execute("SELECT count(*) FROM tasks").fetchone()[0],
    }
    conn.close()
    return {
        "batch": limit,
        "batches": batches,
        "total": total,
        "rows": rows,
        "spent": spent,
        "longest": longest,
        "autocheckpoint": autocheckpoint or "default (1000 pages)",
    }


# -- 2. verification ------------------------------------------------------------------------
def make_tree(root: Path, files: int) -> float:
    """``files`` empty files, PER_DIR per folder, DIRS_PER_GROUP folders per group."""
    start = time.perf_counter()
    made = folder = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    while made < files:
        path = root / f"g{folder // DIRS_PER_GROUP:03d}" / f"d{folder:05d}"
        path.mkdir(parents=True, exist_ok=True)
        base = str(path) + "/f"
        for k in range(min(PER_DIR, files - made)):
            os.close(os.open(f"{base}{k:04d}", flags, 0o644))
        made += min(PER_DIR, files - made)
        folder += 1
    return time.perf_counter() - start


def child_scan(tree: str, data: str) -> dict[str, Any]:
    from ucore.app import bootstrap

    async def main() -> dict[str, Any]:
        app = await bootstrap(config(Path(data)), role="client")
        try:
            root, _ = await app.library.add_root(tree)
            start = time.perf_counter()
            task_id = await app.library.scan(root.id)
            await app.tasks.become_runner(task_id)
            record = await app.tasks.wait(task_id)
            assert record.state.value == "completed", record.error
            return {"seconds": time.perf_counter() - start, "new": record.result["new"]}
        finally:
            await app.shutdown()

    return asyncio.run(main())


def child_verify_ours(data: str, profile: str) -> dict[str, Any]:
    import ucore.maintenance.background_verification as verification
    from ucore.app import bootstrap

    prof = ThreadProfiles() if profile else None
    calls: list[tuple[str, float, float]] = []
    peak: dict[str, float] = {}
    walk = verification.count_on_disk

    def count_on_disk(*args: Any) -> Any:  # in a thread: the walk of the root
        start = time.time()
        peak["before_walk"] = maxrss_mib()
        try:
            return walk(*args)
        finally:
            calls.append(("count_on_disk", start, time.time()))

    verification.count_on_disk = count_on_disk

    async def main() -> dict[str, Any]:
        if prof:  # before bootstrap: the database threads start there
            prof.start()
        app = await bootstrap(config(Path(data)), role="client")
        try:
            time_store_calls(app.tasks.store, calls, names=("list_roots", "file_counts"))
            peak["after_bootstrap"] = maxrss_mib()
            start = time.perf_counter()
            task_id = await app.tasks.submit(
                "background_verification", {"scan_on_drift": False}, origin="bench"
            )
            await app.tasks.become_runner(task_id)
            record = await app.tasks.wait(task_id)
            seconds = time.perf_counter() - start
            assert record.state.value == "completed", record.error
            (root,) = record.result["roots"]
            return {
                "seconds": seconds,
                "task_seconds": record.result["duration"],
                "status": root["status"],
                "disk_count": root["disk_count"],
                "db_count": root["db_count"],
            }
        finally:
            await app.shutdown()

    out = asyncio.run(main())
    out["maxrss_mib"] = maxrss_mib()
    out["peak"] = peak
    out["spent"] = {name: b - a for name, a, b in calls}
    out["profile"] = prof.report(Path(profile)) if prof else None
    return out


def child_verify_find(tree: str, memory: str = "") -> dict[str, Any]:
    """``find ROOT -type f | wc -l``; with ``memory``, each under ``/usr/bin/time -f %M``."""
    script = 'find "$1" -type f | wc -l'
    if memory:
        script = (
            '/usr/bin/time -f %M -o "$2.find" find "$1" -type f '
            '| /usr/bin/time -f %M -o "$2.wc" wc -l'
        )
    start = time.perf_counter()
    proc = subprocess.run(
        ["sh", "-c", script, "sh", tree, memory],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {"seconds": seconds, "count": int(proc.stdout.strip())}
    if memory:
        for tool in ("find", "wc"):
            path = Path(f"{memory}.{tool}")
            out[f"{tool}_mib"] = int(path.read_text().split()[-1]) / 1024
            path.unlink()
    return out


def child_verify_floor(tree: str) -> dict[str, Any]:
    """Pure-Python floors: os.scandir by d_type only, and with an lstat of every entry."""
    out: dict[str, Any] = {}
    for label, stat in (("dtype", False), ("lstat", True)):
        start = time.perf_counter()
        files = 0
        stack = [tree]
        while stack:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.name[0] == ".":
                        continue
                    if stat:
                        entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        files += 1
        out[label] = time.perf_counter() - start
        out[f"{label}_files"] = files
    return out


CHILDREN = {
    "fill": child_fill,
    "submitter": child_submitter,
    "purge-ours": child_purge_ours,
    "purge-delete": child_purge_delete,
    "anatomy": child_anatomy,
    "scan": child_scan,
    "verify-ours": child_verify_ours,
    "verify-find": child_verify_find,
    "verify-floor": child_verify_floor,
}


# -- the parent -----------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def verdict(value: float, limit: float, unit: str = "x") -> str:
    if value <= limit:
        return f"met ({value:.2f}{unit} <= {limit:g}{unit})"
    return f"MISSED ({value:.2f}{unit}, {value / limit:.2f}x the limit of {limit:g}{unit})"


def bench_purge(args: argparse.Namespace, base: Path) -> None:
    print(f"== 1. purge of {args.rows:,} old finished tasks + {args.rows:,} run-history rows")
    template = base / "purge-template"
    template.mkdir()
    fill = run_child(SCRIPT, ["--child", "fill", str(template), str(args.rows)])
    print(
        f"template        : {fill['bytes'] / 2**20:,.0f} MiB, filled in {fill['seconds']:.1f} s "
        f"(+ {RECENT:,} recent finished tasks/runs and {PENDING} pending tasks that must stay)"
    )
    for table, plan in fill["plans"].items():
        print(f"pick plan       : {table}: {plan}")
    mode = "runner (become_runner)" if args.ours_workers == "runner" else "start_workers()"
    print(f"other process   : submit('sleep') every {args.interval_ms:g} ms; ours: {mode}")
    if args.batch_rows or args.batch_pause_ms or args.waiter_poll_ms:
        print(
            f"EXPERIMENT      : batch of {args.batch_rows or 'default'} rows, "
            f"pause {args.batch_pause_ms:g} ms after each batch, the submitter polls the lock "
            f"every {args.waiter_poll_ms:g} ms (0: SQLite's busy handler) - not ucore's behaviour"
        )
    print(f"runs            : {args.runs}, alternating ours / one DELETE\n", flush=True)
    rows: dict[str, list[dict[str, Any]]] = {"ours": [], "delete": []}

    def one(side: str, run: int, profile: str = "") -> dict[str, Any]:
        d = base / f"purge-{side}-{run}"
        shutil.copytree(template, d)
        options = {
            "interval_ms": args.interval_ms,
            "workers": args.ours_workers,
            "profile": profile,
            "batch_rows": args.batch_rows,
            "pause_ms": args.batch_pause_ms,
            "poll_ms": args.waiter_poll_ms,
        }
        child = (
            ["--child", "purge-ours", str(d), json.dumps(options)]
            if side == "ours"
            else [
                "--child",
                "purge-delete",
                str(d),
                str(args.interval_ms),
                str(args.waiter_poll_ms),
            ]
        )
        r = run_child(SCRIPT, child)
        cleanup(d, keep=False)
        expect = {"task_runs": RECENT, "finished_tasks": RECENT, "old_pending": PENDING}
        ok = r["left"] == expect and r["deleted"] == 2 * args.rows
        r["ok"] = "ok" if ok else f"WRONG: deleted {r['deleted']}, left {r['left']}"
        return r

    def line(run: int, side: str, r: dict[str, Any]) -> None:
        extra = (
            f" (task {r['task_seconds']:.2f} s, {r['summaries']:,} summaries)"
            if side == "ours"
            else ""
        )
        err = f", {r['errors']} FAILED submits ({r['first_error']})" if r["errors"] else ""
        print(
            f"run {run} {side:6s}: {r['seconds']:7.2f} s{extra}  longest submit wait "
            f"{ms(r['max_wait'])} (p99 {ms(r['p99_wait'])}, p50 {ms(r['p50_wait'])}, "
            f"{r['submits']} submits; before: max {ms(r['baseline_max'])}){err}  "
            f"peak RSS {r['maxrss_mib']:.0f} MiB  {r['ok']}",
            flush=True,
        )
        if side == "ours":
            print(
                f"             {r['batches']} batches: each {ms(r['batch_p50'])} (max "
                f"{ms(r['batch_max'])}), gap {r['gap_p50'] * 1e3:.2f} ms, lock busy "
                f"{r['busy']:.0%}; counts {ms(r['count_s'])}, optimize {ms(r['optimize_s'])}; "
                f"longest wait overlapped: {r['blame']}",
                flush=True,
            )

    for run in range(1, args.runs + 1):
        for side in ("ours", "delete"):
            r = one(side, run)
            rows[side].append(r)
            line(run, side, r)
    keys = ("seconds", "max_wait", "p99_wait", "p50_wait")
    med = {side: {k: median(r[k] for r in rs) for k in keys} for side, rs in rows.items()}
    rss = {side: max(r["maxrss_mib"] for r in rs) for side, rs in rows.items()}
    sub_rss = max(r["submitter_rss_mib"] for rs in rows.values() for r in rs)
    worst = max(r["max_wait"] for r in rows["ours"])
    o, dl = med["ours"], med["delete"]
    print(f"\nmedians over {args.runs} runs      {'ours':>12s} {'one DELETE':>12s}   ratio")
    print(
        f"  total time              {o['seconds']:10.2f} s {dl['seconds']:10.2f} s   "
        f"{fmt_ratio(o['seconds'], dl['seconds'])}"
    )
    for label, key in (("longest submit wait", "max_wait"), ("p99 submit wait", "p99_wait")):
        print(f"  {label:22s}  {ms(o[key]):>12s} {ms(dl[key]):>12s}   {fmt_ratio(o[key], dl[key])}")
    print(f"  p50 submit wait         {ms(o['p50_wait']):>12s} {ms(dl['p50_wait']):>12s}")
    print(
        f"  peak RSS (max of runs)  {rss['ours']:8.0f} MiB {rss['delete']:8.0f} MiB"
        f"   (the submitting process: {sub_rss:.0f} MiB)"
    )
    print(
        f"  rows deleted per second {2 * args.rows / o['seconds']:12,.0f} "
        f"{2 * args.rows / dl['seconds']:12,.0f}"
    )
    total_ratio = ratio(o["seconds"], dl["seconds"])
    print(f"target total ours / one DELETE <= {TARGET_RATIO:g}x: {verdict(total_ratio, 3.0)}")
    print(
        f"target longest submit wait during ours < {TARGET_WAIT_MS:g} ms: "
        f"{verdict(o['max_wait'] * 1000, TARGET_WAIT_MS, ' ms')} (worst run {ms(worst)})"
    )
    if args.anatomy:
        d = base / "purge-anatomy"
        shutil.copytree(template, d)
        child = ["--child", "anatomy", str(d), str(args.batch_rows), args.autocheckpoint]
        r = run_child(SCRIPT, child)
        cleanup(d, keep=False)
        print(
            f"\nanatomy: ucore's purge statements replayed with sqlite3, no other process, "
            f"batches of {r['batch']:,} rows: {r['total']:.2f} s (wal_autocheckpoint "
            f"{r['autocheckpoint']}; longest batch {ms(r['longest']['batch'])}, longest commit "
            f"{ms(r['longest']['commit'])})"
        )
        n = r["batches"]
        per = {
            "summarise": n["history"],
            "delete history": n["history"],
            "delete tasks": n["tasks"],
        }
        for label, value in r["spent"].items():
            count = per.get(label, n["history"] + n["tasks"])
            print(
                f"  {label:15s} {value:7.2f} s  {value / r['total']:4.0%}  "
                f"{value / count * 1000:6.2f} ms per batch ({count} batches)"
            )
    if args.profile:
        r = one("ours", 0, str(base / "purge-ours.pstats"))
        print(
            f"\nprofile of one more run of ours ({r['seconds']:.2f} s under cProfile, "
            "all threads, bootstrap included; own time):"
        )
        print(r["profile"])
    print(flush=True)


def bench_verify(args: argparse.Namespace, base: Path) -> None:
    print(f"== 2. verification of {args.files:,} files")
    tree = args.tree or base / "tree"
    stamp = tree.parent / f"{tree.name}.complete"
    if stamp.exists() and stamp.read_text().strip() == str(args.files):
        print(f"tree            : {tree} (reused, {args.files:,} files)")
    else:
        shutil.rmtree(tree, ignore_errors=True)
        seconds = make_tree(tree, args.files)
        stamp.write_text(str(args.files))
        print(f"tree            : {tree}, {args.files:,} empty files made in {seconds:.1f} s")
    data = base / "verify-data"
    scan = run_child(SCRIPT, ["--child", "scan", str(tree), str(data)])
    assert scan["new"] == args.files, scan
    print(f"scan (once)     : {scan['seconds']:.1f} s, {scan['new']:,} file records")
    print(f"runs            : {args.runs}, alternating ours / find, after one untimed run each")
    memory = str(base / "time")
    warm_ours = run_child(SCRIPT, ["--child", "verify-ours", str(data), ""])
    warm_find = run_child(SCRIPT, ["--child", "verify-find", str(tree), memory])
    print(
        f"warm-up         : ours {warm_ours['seconds']:.2f} s, find {warm_find['seconds']:.2f} s"
        f" (peak RSS by /usr/bin/time: find {warm_find['find_mib']:.1f} MiB, "
        f"wc {warm_find['wc_mib']:.1f} MiB)\n",
        flush=True,
    )
    rows: dict[str, list[dict[str, Any]]] = {"ours": [], "find": [], "floor": []}
    for run in range(1, args.runs + 1):
        ours = run_child(SCRIPT, ["--child", "verify-ours", str(data), ""])
        find = run_child(SCRIPT, ["--child", "verify-find", str(tree)])
        floor = run_child(SCRIPT, ["--child", "verify-floor", str(tree)])
        assert ours["status"] == "ok" and ours["disk_count"] == args.files, ours
        assert find["count"] == args.files + 1, find  # + the root's hidden marker
        assert floor["dtype_files"] == floor["lstat_files"] == args.files, floor
        rows["ours"].append(ours)
        rows["find"].append(find)
        rows["floor"].append(floor)
        print(
            f"run {run}: ours {ours['seconds']:.3f} s (task {ours['task_seconds']:.3f} s, "
            f"{ours['status']}, {ours['disk_count']:,} on disk, peak RSS "
            f"{ours['maxrss_mib']:.0f} MiB), find|wc {find['seconds']:.3f} s "
            f"({find['count']:,} incl. the marker)  ratio "
            f"{fmt_ratio(ours['seconds'], find['seconds'])};  Python scandir: d_type only "
            f"{floor['dtype']:.3f} s, + lstat {floor['lstat']:.3f} s",
            flush=True,
        )
        sp, pk = ours["spent"], ours["peak"]
        print(
            f"       ours inside: file_counts {ms(sp['file_counts'])}, walk (count_on_disk) "
            f"{ms(sp['count_on_disk'])}; peak RSS after bootstrap {pk['after_bootstrap']:.0f} "
            f"MiB, before the walk {pk['before_walk']:.0f} MiB, at the end "
            f"{ours['maxrss_mib']:.0f} MiB",
            flush=True,
        )
    o = median(r["seconds"] for r in rows["ours"])
    ot = median(r["task_seconds"] for r in rows["ours"])
    f = median(r["seconds"] for r in rows["find"])
    fd = median(r["dtype"] for r in rows["floor"])
    fl = median(r["lstat"] for r in rows["floor"])
    n = args.files
    print(f"\nmedians over {args.runs} runs             seconds   per file   / find")
    for label, value in (
        ("ours, submit -> finished", o),
        ("ours, in the task (duration)", ot),
        ("find ROOT -type f | wc -l", f),
        ("Python scandir, d_type only", fd),
        ("Python scandir + lstat each", fl),
    ):
        print(f"  {label:30s} {value:8.3f}  {value / n * 1e6:6.2f} us  {fmt_ratio(value, f)}")
    print(
        f"  peak RSS (max of runs): ours {max(r['maxrss_mib'] for r in rows['ours']):.0f} MiB, "
        f"find {warm_find['find_mib']:.1f} MiB + wc {warm_find['wc_mib']:.1f} MiB"
    )
    print(f"target ours / find <= {TARGET_RATIO:g}x: {verdict(ratio(o, f), TARGET_RATIO)}")
    if args.profile:
        r = run_child(
            SCRIPT, ["--child", "verify-ours", str(data), str(base / "verify-ours.pstats")]
        )
        print(
            f"\nprofile of one more run of ours ({r['seconds']:.2f} s under cProfile, "
            "all threads, bootstrap included; own time):"
        )
        print(r["profile"])
    if not args.keep_tree and args.tree is None:
        shutil.rmtree(tree, ignore_errors=True)
        stamp.unlink(missing_ok=True)
    print(flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="old history rows (default 1,000,000)")
    p.add_argument("--files", type=int, default=None, help="files to verify (default 1,000,000)")
    p.add_argument("--runs", type=int, default=None, help="runs per side (default 5)")
    p.add_argument("--only", choices=("purge", "verify"), help="one of the two measurements")
    p.add_argument("--interval-ms", type=float, default=5.0, help="the submitter's period")
    p.add_argument(
        "--ours-workers",
        choices=("runner", "all"),
        default="runner",
        help="ours runs the purge as a runner (default) or with all workers started",
    )
    p.add_argument("--batch-rows", type=int, default=0, help="experiment: rows per batch")
    p.add_argument(
        "--batch-pause-ms", type=float, default=0.0, help="experiment: pause after each batch"
    )
    p.add_argument(
        "--anatomy", action="store_true", help="time each of ucore's purge statements alone"
    )
    p.add_argument(
        "--waiter-poll-ms",
        type=float,
        default=0.0,
        help="experiment: the submitter tries the write lock every MS ms",
    )
    p.add_argument("--autocheckpoint", default="", help="anatomy: PRAGMA wal_autocheckpoint")
    p.add_argument("--tree", type=Path, help="the file tree (made once, kept, reused)")
    p.add_argument("--keep-tree", action="store_true", help="keep the tree made under --dir")
    p.add_argument("--profile", action="store_true", help="one more run of ours, cProfiled")
    p.add_argument("--quick", action="store_true", help="20,000 rows, 100,000 files, 3 runs")
    add_work_args(p)
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = 20_000 if args.quick else 1_000_000
    if args.files is None:
        args.files = 100_000 if args.quick else 1_000_000
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    return args


def main(argv: list[str]) -> int:
    def body(args: argparse.Namespace, base: Path) -> None:
        if args.only in (None, "purge"):
            bench_purge(args, base)
        if args.only in (None, "verify"):
            bench_verify(args, base)

    return bench_main(
        parse_args(argv),
        argv,
        script="benchmarks/bench_maintenance.py",
        title="maintenance: purge and verification",
        children=CHILDREN,
        body=body,
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
