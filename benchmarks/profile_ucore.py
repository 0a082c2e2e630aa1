"""Where ucore's time goes in the throughput benchmark (a diagnostic, not a benchmark).

Written for round 2 (docs/performance.md), when every write went through the writer
thread. Since round 4 the task queue's writes are quick writes on the event loop's thread
(``src/ucore/stores/sqlite/quick.py``): the writer-thread sections below then show only
bulk writes. For the time per statement of today's hot path use ``profile_statements.py``.

Runs the ucore side of ``bench_throughput.py`` (N no-op tasks submitted one per call, 2
workers, one process) with instrumentation that lives only in this script (``src`` is not
touched):

* every store call (``Database.write``/``read``): count per task and mean latency as the
  event loop sees it (queueing + the other thread + the wake-up back);
* every SQL statement on the writer and reader connections (``sqlite3.connect`` is wrapped to
  use a ``Connection`` subclass that times ``execute``): calls and time per statement kind;
* group-commit batch sizes of the writer thread;
* ``cProfile`` of the writer thread and, with ``--main-profile``, of the event loop thread;
* ``PRAGMA data_version`` reads on the event loop thread (``Database.data_version``, the
  change token since the poll moved off the reader thread): count and mean;
* the plan and the cost of the claim query on the database the run leaves behind, with
  ``+name IN (...)`` (as src sends it now: the partial ``tasks_claim`` index drives it) and
  with plain ``name IN (...)`` (as it was at a206d8a: the name index, the whole history).

``--plus-name`` rewrites an old-style claim query to ``+name IN (...)`` (the experiment that
led to the fix; a no-op on the current src). ``--round-trip N`` times N trivial jobs through
the reader and the writer thread and N inline ``data_version`` reads (what one thread round
trip costs, without SQL work); with ``--spin K``, while K threads spin pure-Python loops
(the GIL contention of bench_lateness.py).

    python benchmarks/profile_ucore.py --tasks 10000 --sync NORMAL
    python benchmarks/profile_ucore.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import pstats
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, make_tmp, print_header, snapshot_src

CLAIM_PREFIX = "SELECT id FROM tasks WHERE state = 'pending'"

_stmt_stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
_stmt_lock = threading.Lock()
_claim_sql: list[tuple[str, tuple[Any, ...]]] = []
#: options the Connection subclass reads (set by main)
OPTS = {"plus_name": False}


def _kind(sql: str) -> str:
    s = " ".join(sql.split())
    if s.startswith(CLAIM_PREFIX):
        return "claim: pick pending (SELECT id … ORDER BY priority DESC, id LIMIT 1)"
    return s[:72]


class TimedConnection(sqlite3.Connection):
    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql.startswith(CLAIM_PREFIX):
            if OPTS["plus_name"]:
                sql = sql.replace("AND name IN (", "AND +name IN (")
            if not _claim_sql:
                _claim_sql.append((sql, tuple(args[0]) if args else ()))
        t = time.perf_counter()
        try:
            return super().execute(sql, *args)
        finally:
            dt = time.perf_counter() - t
            with _stmt_lock:
                s = _stmt_stats[_kind(sql)]
                s[0] += 1
                s[1] += dt


_connect = sqlite3.connect


def _op_name(fn: Any) -> str:
    """``SQLiteStore.claim_task.<locals>.op`` -> ``claim_task``."""
    parts = getattr(fn, "__qualname__", repr(fn)).split(".")
    return parts[1] if len(parts) > 2 else parts[0]


def _timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    kwargs.setdefault("factory", TimedConnection)
    return _connect(*args, **kwargs)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=None, help="tasks (default 10000)")
    p.add_argument("--runs", type=int, default=1, help="runs (each printed; default 1)")
    p.add_argument("--sync", default="NORMAL", choices=("FULL", "NORMAL"))
    p.add_argument("--plus-name", action="store_true", help="experiment: claim with +name")
    p.add_argument("--main-profile", action="store_true", help="cProfile the event loop too")
    p.add_argument("--top", type=int, default=14, help="rows of each cProfile listing")
    p.add_argument("--quick", action="store_true", help="1000 tasks")
    p.add_argument(
        "--idle",
        type=float,
        metavar="SECONDS",
        help="instead: an idle service (role service, default config) for SECONDS; count "
        "its store calls, SQL statements and writer transactions",
    )
    p.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import the live src tree instead of a copy taken at the start",
    )
    p.add_argument(
        "--round-trip",
        type=int,
        metavar="N",
        help="instead: time N trivial reader and writer jobs and N inline data_version reads",
    )
    p.add_argument(
        "--spin", type=int, default=0, metavar="K", help="--round-trip: K spinning threads"
    )
    p.add_argument(
        "--claim-scaling",
        metavar="N,N,...",
        help="instead: time the claim query on databases holding N finished tasks of the name",
    )
    args = p.parse_args(argv)
    base = make_tmp(None, "ucore-profile-src-")
    if args.snapshot:
        sys.path.insert(0, str(snapshot_src(base)))
    if args.tasks is None:
        args.tasks = 1000 if args.quick else 10_000
    OPTS["plus_name"] = args.plus_name
    sqlite3.connect = _timed_connect  # type: ignore[assignment]

    from ucore.app import bootstrap
    from ucore.foundation.config.loader import parse_config
    from ucore.stores.sqlite import db as dbmod

    op_stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    batches: collections.Counter[int] = collections.Counter()
    writer_prof = cProfile.Profile()
    orig_write, orig_read, orig_serve, orig_batch, orig_dv = (
        dbmod.Database.write,
        dbmod.Database.read,
        dbmod._Writer.serve,
        dbmod._Writer._run_batch,
        dbmod.Database.data_version,
    )

    async def write(self: Any, fn: Any) -> Any:
        t = time.perf_counter()
        try:
            return await orig_write(self, fn)
        finally:
            s = op_stats["write " + _op_name(fn)]
            s[0] += 1
            s[1] += time.perf_counter() - t

    async def read(self: Any, fn: Any) -> Any:
        t = time.perf_counter()
        try:
            return await orig_read(self, fn)
        finally:
            s = op_stats["read  " + _op_name(fn)]
            s[0] += 1
            s[1] += time.perf_counter() - t

    def data_version(self: Any) -> int:
        t = time.perf_counter()
        try:
            return int(orig_dv(self))
        finally:
            s = op_stats["poll  change_token (loop thread)"]
            s[0] += 1
            s[1] += time.perf_counter() - t

    def serve(self: Any, conn: Any) -> None:
        writer_prof.enable()
        try:
            orig_serve(self, conn)
        finally:
            writer_prof.disable()

    def run_batch(self: Any, conn: Any, batch: list[Any]) -> None:
        if batch:
            batches[len(batch)] += 1
        orig_batch(self, conn, batch)

    dbmod.Database.write = write  # type: ignore[method-assign]
    dbmod.Database.read = read  # type: ignore[method-assign]
    dbmod._Writer.serve = serve  # type: ignore[method-assign]
    dbmod._Writer._run_batch = run_batch  # type: ignore[method-assign]
    dbmod.Database.data_version = data_version  # type: ignore[method-assign]

    n = args.tasks
    print_header(
        "profile of ucore's throughput path" + (" (experiment: +name)" if args.plus_name else ""),
        sys.argv,
    )

    async def one_run(data: Path) -> tuple[float, Path]:
        cfg = parse_config(
            {"database": {"synchronous": args.sync}, "tasks": {"workers": 2}},
            data_dir=data,
            config_file=data / "config.json",
            env={},
        )
        app = await bootstrap(cfg, role="client")

        async def noop(ctx: Any) -> dict[str, bool]:
            return {"ok": True}

        app.tasks.register("noop", noop)
        finished = 0
        all_done = asyncio.Event()

        def on_finished(event: Any) -> None:
            nonlocal finished
            finished += 1
            if finished >= n:
                all_done.set()

        app.ctx.events.subscribe(on_finished, "task.finished")
        await app.tasks.start_workers()
        await asyncio.sleep(0.2)
        op_stats.clear()
        _stmt_stats.clear()
        batches.clear()
        main_prof = cProfile.Profile()
        if args.main_profile:
            main_prof.enable()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(n):
            await app.tasks.submit("noop", {})
        await all_done.wait()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        main_prof.disable()
        db_path = Path(app.tasks.store.db.path)  # type: ignore[attr-defined]
        await app.shutdown()
        print(
            f"{n} tasks in {wall:.2f} s = {n / wall:.0f} tasks/s, synchronous={args.sync}; "
            f"process CPU {cpu:.2f} s ({100 * cpu / wall:.0f} % of one core)\n"
        )
        print("store calls as the event loop sees them (queue + thread + wake-up):")
        for k, (c, s) in sorted(op_stats.items(), key=lambda x: -x[1][1]):
            print(f"  {k:32s} {int(c):7d} calls  {c / n:5.2f}/task  mean {s / c * 1e3:7.3f} ms")
        print("\nSQL statements (time inside sqlite3 execute, writer, reader, poll connections):")
        total = sum(s for _, s in _stmt_stats.values())
        for k, (c, s) in sorted(_stmt_stats.items(), key=lambda x: -x[1][1])[:16]:
            print(
                f"  {s:7.3f} s {100 * s / total:5.1f} %  {int(c):7d} calls  "
                f"mean {s / c * 1e6:8.1f} us  {k}"
            )
        print(f"  total {total:.3f} s in SQLite over {wall:.2f} s wall")
        nb = sum(batches.values())
        jobs = sum(k * v for k, v in batches.items())
        print(
            f"\nwriter: {nb} transactions for {jobs} writes ({jobs / max(nb, 1):.2f} writes "
            f"per commit); batch sizes {dict(sorted(batches.items()))}"
        )
        if args.main_profile:
            buf = io.StringIO()
            pstats.Stats(main_prof, stream=buf).sort_stats("tottime").print_stats(args.top)
            print("\nevent loop thread, cProfile by own time:\n" + buf.getvalue())
        return wall, db_path

    if args.round_trip:
        asyncio.run(round_trip(args.round_trip, args.spin, bootstrap, parse_config))
        cleanup(base, keep=False)
        return 0
    if args.idle:
        asyncio.run(idle_profile(args.idle, op_stats, batches, bootstrap, parse_config))
        cleanup(base, keep=False)
        return 0
    if args.claim_scaling:
        sizes = [int(x) for x in args.claim_scaling.split(",")]
        claim_scaling(sizes, base, bootstrap, parse_config)
        cleanup(base, keep=False)
        return 0

    for run in range(1, args.runs + 1):
        data = Path(tempfile.mkdtemp(prefix="ucore-profile-"))
        try:
            print(f"-- run {run}")
            _, db_path = asyncio.run(one_run(data))
            buf = io.StringIO()
            pstats.Stats(writer_prof, stream=buf).sort_stats("tottime").print_stats(args.top)
            print("writer thread, cProfile by own time:\n" + buf.getvalue())
            if _claim_sql:
                claim_plan(db_path, *_claim_sql[0])
        finally:
            cleanup(data, keep=False)
    cleanup(base, keep=False)
    return 0


async def idle_profile(
    seconds: float, op_stats: Any, batches: Any, bootstrap: Any, parse_config: Any
) -> None:
    """Store calls of an idle service (what ``ucore run`` does with nothing to do)."""
    data = Path(tempfile.mkdtemp(prefix="ucore-profile-idle-"))
    try:
        cfg = parse_config({}, data_dir=data, config_file=data / "config.json", env={})
        app = await bootstrap(cfg, role="service")
        await asyncio.sleep(2.0)
        op_stats.clear()
        _stmt_stats.clear()
        batches.clear()
        await asyncio.sleep(seconds)
        print(f"idle service ({', '.join(app.systems)}), window {seconds:g} s:")
        print("store calls per second:")
        for k, (c, _) in sorted(op_stats.items(), key=lambda x: -x[1][0]):
            print(f"  {k:32s} {c / seconds:6.2f}/s")
        print("SQL statements per second (writer, reader, poll connections):")
        for k, (c, _) in sorted(_stmt_stats.items(), key=lambda x: -x[1][0]):
            print(f"  {c / seconds:6.2f}/s  {k}")
        nb = sum(batches.values())
        print(f"writer transactions: {nb / seconds:.2f}/s")
        tasks = sorted(t.get_name() for t in asyncio.all_tasks())
        print(f"asyncio tasks alive: {tasks}")
        print(f"threads: {[t.name for t in threading.enumerate()]}")
        await app.shutdown()
    finally:
        cleanup(data, keep=False)


async def round_trip(n: int, spin: int, bootstrap: Any, parse_config: Any) -> None:
    """What a thread round trip costs: trivial jobs through the reader and the writer thread."""
    data = Path(tempfile.mkdtemp(prefix="ucore-profile-rt-"))
    try:
        cfg = parse_config({}, data_dir=data, config_file=data / "config.json", env={})
        app = await bootstrap(cfg, role="client")
        db: Any = app.tasks.store.db  # type: ignore[attr-defined]

        def nothing(c: sqlite3.Connection) -> int:
            return 1

        def one_row(c: sqlite3.Connection) -> Any:
            return c.execute("SELECT 1").fetchone()

        async def timed(label: str, call: Any) -> None:
            for _ in range(min(n, 200)):  # warm up
                await call()
            samples = []
            for _ in range(n):
                t = time.perf_counter()
                await call()
                samples.append(time.perf_counter() - t)
            samples.sort()
            print(
                f"  {label:46s} mean {sum(samples) / n * 1e6:7.1f} us  "
                f"p50 {samples[n // 2] * 1e6:7.1f} us  p99 {samples[int(n * 0.99)] * 1e6:7.1f} us"
            )

        async def inline() -> int:
            return int(db.data_version())

        stop = threading.Event()

        def spinner() -> None:
            x = 0
            while not stop.is_set():
                for i in range(1000):
                    x += i

        threads = [threading.Thread(target=spinner, daemon=True) for _ in range(spin)]
        for th in threads:
            th.start()
        print(
            f"{n} sequential calls each, client, synchronous=FULL, {spin} spinning threads "
            f"(switch interval {sys.getswitchinterval() * 1e3:g} ms):"
        )
        await timed("inline PRAGMA data_version (loop thread)", inline)
        await timed("reader thread, fn returns at once", lambda: db.read(nothing))
        await timed("reader thread, SELECT 1", lambda: db.read(one_row))
        await timed("writer thread, empty BEGIN IMMEDIATE/COMMIT", lambda: db.write(nothing))
        await timed("asyncio.to_thread, fn returns at once", lambda: asyncio.to_thread(int))
        await timed("asyncio.sleep(0.01), lateness of the wake-up", _late_sleep)
        stop.set()
        for th in threads:
            th.join()
        await app.shutdown()
    finally:
        cleanup(data, keep=False)


async def _late_sleep() -> None:
    """Sleep 10 ms; the call's time is 10 ms plus how late the loop got the thread back."""
    await asyncio.sleep(0.01)


def claim_scaling(sizes: list[int], base: Path, bootstrap: Any, parse_config: Any) -> None:
    """The claim query (as ucore builds it) against N finished tasks of the same name."""

    async def one_claim(data: Path) -> Path:
        cfg = parse_config({}, data_dir=data, config_file=data / "config.json", env={})
        app = await bootstrap(cfg, role="client")

        async def noop(ctx: Any) -> None:
            return None

        app.tasks.register("noop", noop)
        task_id = await app.tasks.submit("noop", {})
        await app.tasks.start_workers()
        await app.tasks.wait(task_id, poll=0.05)
        path = Path(app.tasks.store.db.path)  # type: ignore[attr-defined]
        await app.shutdown()
        return path

    db = asyncio.run(one_claim(base / "claim"))
    if not _claim_sql:
        raise SystemExit("no claim query seen")
    sql, params = _claim_sql[0]
    print(f"claim query as ucore sends it:\n  {sql}\n")
    for n in sizes:
        conn = _connect(str(db))
        try:
            have = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO tasks (name, params, priority, origin, state, max_attempts, "
                "submitted_at, finished_at, result) "
                "VALUES ('noop', '{}', 1, 'api', 'completed', 1, 0, 0, '{}')",
                ([] for _ in range(max(0, n - have))),
            )
            conn.execute(
                "INSERT INTO tasks (name, params, priority, origin, state, "
                "max_attempts, submitted_at) VALUES ('noop', '{}', 1, 'api', "
                "'pending', 1, 0)"
            )
            conn.execute("COMMIT")
            for label, q in (
                ("old name IN", sql.replace("AND +name IN (", "AND name IN (")),
                ("now +name IN", sql.replace("AND name IN (", "AND +name IN (")),
            ):
                t = time.perf_counter()
                for _ in range(20):
                    conn.execute(q, params).fetchall()
                mean = (time.perf_counter() - t) / 20
                print(
                    f"  {n:>8d} finished + 1 pending, {label:12s}: {mean * 1e3:8.3f} ms per claim"
                )
            conn.execute("DELETE FROM tasks WHERE state = 'pending'")
        finally:
            conn.close()


def claim_plan(db: Path, sql: str, params: tuple[Any, ...]) -> None:
    """The claim query's plan and cost on the database the run left (N finished tasks)."""
    conn = _connect(str(db))
    try:
        rows = conn.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall()
        print(f"claim query on the finished database ({dict(rows)}):")
        for label, q in (
            ("old name IN", sql.replace("AND +name IN (", "AND name IN (")),
            ("now +name IN", sql.replace("AND name IN (", "AND +name IN (")),
        ):
            plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + q, params)]
            t = time.perf_counter()
            for _ in range(50):
                conn.execute(q, params).fetchall()
            mean = (time.perf_counter() - t) / 50
            print(f"  {label:12s}: {mean * 1e6:9.1f} us per call  plan {plan}")
        stat = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
        ).fetchone()[0]
        print(f"  sqlite_stat1 present (ANALYZE ever run): {bool(stat)}")
    finally:
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
