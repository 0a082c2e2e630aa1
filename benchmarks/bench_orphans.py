"""Orphan check of a big library root: ``orphaned_cleanup`` against a per-record
``os.path.exists`` loop, the Python floor and ``find``.

    python benchmarks/bench_orphans.py [--files 1000000] [--per-dir 100] [--gone 0.01]
        [--runs 5] [--dir BASE] [--rebuild] [--no-cold] [--profile] [--no-snapshot]

**The library** (made once under ``--dir``, default ``$TMPDIR/ucore-bench-orphans-FILES``,
and reused by later invocations with the same ``--files``/``--per-dir``/``--gone`` in the
same place; other values, a moved folder or ``--rebuild`` make it again there): ``--files``
empty files, ``--per-dir`` per folder (1,000,000 = 10,000 folders of 100, 100 folders per
group folder), added as a library root and scanned once (``library_scan`` through the
TaskSystem). Then ``--gone`` of the files (1 %: the first file of every folder) are deleted,
so that there is work. Every measured run is a **dry run**: it does all the checking work
and writes nothing, so every run sees the same state.

**Sides**, each in a fresh child process, alternating (ours, exists, floor, find; ...):

* **ours**: the real ``orphaned_cleanup`` task (``dry_run: true``) in a bootstrapped client
  app that runs it here (``become_runner`` + ``wait``, as ``maintenance run --wait`` does
  without a service). Timed submit -> finished; the task's own ``duration`` printed too.
  Each run checks the result: every record checked, the deleted ones (and only they) seen
  as gone, no root or folder skipped.
* **exists**: the naive peer. The same records read from the same database (``sqlite3``,
  read-only: the folders' paths once, then ``SELECT dir_id, name FROM library_files``), and
  ``os.path.exists`` of each record's path.
* **floor**: the Python floor. The same read, ordered by folder (over the
  ``(dir_id, name)`` index), ``os.listdir`` of each folder once, set membership.
* **find**: ``sh -c 'find ROOT -type f | wc -l'`` (its ratio is printed, no target).

**Warm**: each side runs once untimed, then ``--runs`` alternating rounds. **Cold** (unless
``--no-cold``): before every child ``sync; echo 3 > /proc/sys/vm/drop_caches`` (root only;
if it is not permitted, the script says so and measures warm only). The caches are dropped
before the child starts, so its own imports are read from disk before its timer starts,
and the database and the tree during it.

Targets: ours faster than exists warm, at least 2x faster than exists cold, within 2x of
the floor. Printed: every run, medians, ratios, peak RSS (``VmHWM`` of each Python child;
``/usr/bin/time -f %M`` for find and wc in the warm-up), and the CPU time of each Python
child over its timed span (all threads; steadier than wall time on a shared machine). Each
run of ours adds its task row and journal entry to the database, nothing else.
``--profile``: one more (warm) run of ours under cProfile in every thread. ``--files
100000`` for a quick check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ThreadProfiles,
    cleanup,
    config,
    fmt_ratio,
    load_line,
    make_tmp,
    maxrss_mib,
    median,
    print_header,
    ratio,
    run_child,
    snapshot_src,
)
from bench_maintenance import child_scan

SCRIPT = Path(__file__).resolve()
DIRS_PER_GROUP = 100
SIDES = ("ours", "exists", "floor", "find")
DROP = "/proc/sys/vm/drop_caches"


# -- the library (made once) ------------------------------------------------------------------
def folder_of(k: int) -> str:
    return f"g{k // DIRS_PER_GROUP:03d}/d{k:05d}"


def make_tree(tree: Path, files: int, per_dir: int) -> float:
    """``files`` empty files, ``per_dir`` per folder, DIRS_PER_GROUP folders per group."""
    start = time.perf_counter()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    made = k = 0
    while made < files:
        path = tree / folder_of(k)
        path.mkdir(parents=True, exist_ok=True)
        base = f"{path}/f"
        n = min(per_dir, files - made)
        for i in range(n):
            os.close(os.open(f"{base}{i:04d}", flags, 0o644))
        made += n
        k += 1
    return time.perf_counter() - start


def gone_files(tree: Path, files: int, per_dir: int, gone: float) -> list[Path]:
    """The ``round(files * gone)`` files deleted after the scan, spread evenly: the first
    file of every folder, then (for more than one per folder) the second, and so on."""
    want = round(files * gone)
    folders = -(-files // per_dir)
    out: list[Path] = []
    i = 0
    while len(out) < want:
        for k in range(folders):
            if len(out) >= want:
                break
            if k * per_dir + i < files:
                out.append(tree / folder_of(k) / f"f{i:04d}")
        i += 1
    return out


def prepare(args: argparse.Namespace) -> tuple[Path, Path, dict[str, Any]]:
    """The tree and its scanned database under ``args.dir``, made or reused."""
    base: Path = args.dir
    base.mkdir(parents=True, exist_ok=True)
    tree, data, stamp = base / "tree", base / "data", base / "library.json"
    # the root's path is in the database: a moved folder is made again
    want = {
        "files": args.files,
        "per_dir": args.per_dir,
        "gone": args.gone,
        "tree": str(tree.resolve()),
    }
    if stamp.exists() and not args.rebuild:
        state = json.loads(stamp.read_text())
        if {k: state.get(k) for k in want} == want:
            print(f"library         : {base} (reused: {json.dumps(state)})")
            return tree, data, state
    stamp.unlink(missing_ok=True)
    shutil.rmtree(tree, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    seconds = make_tree(tree, args.files, args.per_dir)
    print(f"tree            : {tree}, {args.files:,} empty files made in {seconds:.1f} s")
    scan = run_child(SCRIPT, ["--child", "scan", str(tree), str(data)])
    assert scan["new"] == args.files, scan
    print(f"scan (once)     : {scan['seconds']:.1f} s, {scan['new']:,} file records")
    removed = gone_files(tree, args.files, args.per_dir, args.gone)
    for path in removed:
        path.unlink()
    state = {**want, "deleted": len(removed), "scan_seconds": round(scan["seconds"], 1)}
    state["db"] = str(next(data.glob("*.db")))
    state["db_mib"] = round(os.path.getsize(state["db"]) / 2**20, 1)
    stamp.write_text(json.dumps(state))
    print(f"deleted         : {len(removed):,} files ({args.gone:.1%}), db {state['db_mib']} MiB")
    return tree, data, state


# -- the children ----------------------------------------------------------------------------
def child_ours(data: str, profile: str) -> dict[str, Any]:
    from ucore.app import bootstrap

    prof = ThreadProfiles() if profile else None

    async def main() -> dict[str, Any]:
        if prof:
            prof.start()
        app = await bootstrap(config(Path(data)), role="client")
        try:
            after_bootstrap = maxrss_mib()
            start, cpu = time.perf_counter(), time.process_time()
            task_id = await app.tasks.submit("orphaned_cleanup", {"dry_run": True}, origin="bench")
            await app.tasks.become_runner(task_id)
            record = await app.tasks.wait(task_id)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            assert record.state.value == "completed", (record.error, record.traceback)
            r = record.result
            return {
                "seconds": seconds,
                "cpu": cpu,
                "task_seconds": r["duration"],
                "checked": r["checked"],
                "gone": r["removed"] + r["waiting"],  # waiting: marked now or before
                "marked": r["marked"],
                "unknown": r["unknown"],
                "skipped": len(r["roots_skipped"]) + r["dirs_skipped_total"],
                "partial": r["partial"],
                "after_bootstrap_mib": after_bootstrap,
            }
        finally:
            await app.shutdown()

    out = asyncio.run(main())
    out["maxrss_mib"] = maxrss_mib()
    out["profile"] = prof.report(Path(profile)) if prof else None
    return out


def _records(db: str, ordered: bool) -> tuple[str, dict[int, str], sqlite3.Cursor]:
    """The root's path, its folders (id -> relative path) and a cursor over (dir_id, name)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    ((root,),) = conn.execute("SELECT path FROM library_roots").fetchall()
    dirs = dict(conn.execute("SELECT id, path FROM library_dirs").fetchall())
    sql = "SELECT dir_id, name FROM library_files"
    if ordered:  # over the (dir_id, name) index: one folder's records together
        sql += " ORDER BY dir_id"
    return root, dirs, conn.execute(sql)


def _decoder() -> Any:
    """ucore's decoding of stored names (imported before the timer starts)."""
    from ucore.stores.names import ESCAPE, from_db

    return lambda text: from_db(text) if text[:1] == ESCAPE else text


def child_exists(db: str) -> dict[str, Any]:
    """The naive peer: ``os.path.exists`` of every record's path."""
    _from_db = _decoder()
    start, cpu = time.perf_counter(), time.process_time()
    root, dirs, rows = _records(db, ordered=False)
    paths = {k: os.path.join(root, _from_db(v)) if v else root for k, v in dirs.items()}
    exists, join = os.path.exists, os.path.join
    checked = gone = 0
    for dir_id, name in rows:
        checked += 1
        if not exists(join(paths[dir_id], name if name[:1] != "/" else _from_db(name))):
            gone += 1
    return _checked(start, cpu, checked, gone)


def _checked(start: float, cpu: float, checked: int, gone: int) -> dict[str, Any]:
    """A per-record side's result: its wall and CPU seconds since ``start``/``cpu``."""
    return {
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
        "checked": checked,
        "gone": gone,
        "maxrss_mib": maxrss_mib(),
    }


def child_floor(db: str) -> dict[str, Any]:
    """The Python floor: each folder listed once, its records looked up in the set."""
    _from_db = _decoder()
    start, cpu = time.perf_counter(), time.process_time()
    root, dirs, rows = _records(db, ordered=True)
    checked = gone = 0
    current: int | None = None
    names: set[str] = set()
    for dir_id, name in rows:
        if dir_id != current:
            current = dir_id
            rel = dirs[dir_id]
            try:
                names = set(os.listdir(os.path.join(root, _from_db(rel)) if rel else root))
            except FileNotFoundError:
                names = set()
        checked += 1
        if (name if name[:1] != "/" else _from_db(name)) not in names:
            gone += 1
    return _checked(start, cpu, checked, gone)


def child_find(tree: str, memory: str = "") -> dict[str, Any]:
    """``find ROOT -type f | wc -l``; with ``memory``, each under ``/usr/bin/time -f %M``."""
    script = 'find "$1" -type f | wc -l'
    if memory:
        script = (
            '/usr/bin/time -f %M -o "$2.find" find "$1" -type f '
            '| /usr/bin/time -f %M -o "$2.wc" wc -l'
        )
    start = time.perf_counter()
    proc = subprocess.run(
        ["sh", "-c", script, "sh", tree, memory], capture_output=True, text=True, check=True
    )
    out: dict[str, Any] = {
        "seconds": time.perf_counter() - start,
        "count": int(proc.stdout.strip()),
    }
    if memory:
        for tool in ("find", "wc"):
            path = Path(f"{memory}.{tool}")
            out[f"{tool}_mib"] = int(path.read_text().split()[-1]) / 1024
            path.unlink()
    return out


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "scan": child_scan,
    "ours": child_ours,
    "exists": child_exists,
    "floor": child_floor,
    "find": child_find,
}


# -- the parent ------------------------------------------------------------------------------
def can_drop_caches() -> str | None:
    """None when the page cache can be dropped here; else why not."""
    try:
        drop_caches()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot drop the page cache ({exc}): cold runs left out, warm only"
    return None


def drop_caches() -> None:
    os.sync()
    with open(DROP, "w") as f:
        f.write("3\n")


def verdict(value: float, limit: float, what: str) -> str:
    if value <= limit:
        return f"met ({value:.2f}x, {what})"
    return f"MISSED ({value:.2f}x, {what}: {value / limit:.2f}x the limit)"


def measure(
    args: argparse.Namespace,
    tree: Path,
    data: Path,
    state: dict[str, Any],
    *,
    cold: bool,
) -> dict[str, list[dict[str, Any]]]:
    db = state["db"]
    argv = {
        "ours": ["--child", "ours", str(data), ""],
        "exists": ["--child", "exists", db],
        "floor": ["--child", "floor", db],
        "find": ["--child", "find", str(tree)],
    }
    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    n, deleted = args.files, state["deleted"]
    for run in range(1, args.runs + 1):
        parts = []
        for side in SIDES:
            if cold:
                drop_caches()
            r = run_child(SCRIPT, argv[side])
            if side == "find":
                assert r["count"] == n - deleted + 1, r  # + the root's hidden marker
            else:
                assert (r["checked"], r["gone"]) == (n, deleted), (side, r)
            if side == "ours":
                assert (r["unknown"], r["skipped"], r["partial"]) == (0, 0, False), r
            rows[side].append(r)
            rss = f", {r['maxrss_mib']:.0f} MiB" if "maxrss_mib" in r else ""
            task = f" (task {r['task_seconds']:.2f})" if side == "ours" else ""
            cpu = f", cpu {r['cpu']:.2f}" if "cpu" in r else ""
            parts.append(f"{side} {r['seconds']:.2f} s{task}{cpu}{rss}")
        print(f"  run {run}: " + ";  ".join(parts), flush=True)
    return rows


def report(
    label: str, rows: dict[str, list[dict[str, Any]]], args: argparse.Namespace
) -> dict[str, float]:
    med = {side: median(r["seconds"] for r in rows[side]) for side in SIDES}
    task = median(r["task_seconds"] for r in rows["ours"])
    n = args.files
    print(f"\n  medians ({label}, {args.runs} runs)          seconds   per record   ours / this")
    lines = (
        ("ours, submit -> finished", med["ours"]),
        ("ours, in the task (duration)", task),
        ("exists: os.path.exists per record", med["exists"]),
        ("floor: listdir per folder + set", med["floor"]),
        ("find ROOT -type f | wc -l", med["find"]),
    )
    for name, value in lines:
        print(
            f"  {name:36s} {value:8.3f} {value / n * 1e6:8.2f} us   {fmt_ratio(med['ours'], value)}"
        )
    cpu = {side: median(r["cpu"] for r in rows[side]) for side in ("ours", "exists", "floor")}
    print(
        f"  CPU time of the process (all threads): ours {cpu['ours']:.3f} s, exists "
        f"{cpu['exists']:.3f} s, floor {cpu['floor']:.3f} s (ours / floor "
        f"{fmt_ratio(cpu['ours'], cpu['floor'])})"
    )
    peak = {side: max(r.get("maxrss_mib", 0.0) for r in rows[side]) for side in SIDES}
    boot = max(r["after_bootstrap_mib"] for r in rows["ours"])
    print(
        f"  peak RSS (max of runs): ours {peak['ours']:.0f} MiB ({boot:.0f} after bootstrap), "
        f"exists {peak['exists']:.0f} MiB, floor {peak['floor']:.0f} MiB"
    )
    return med


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=1_000_000, help="records (default 1,000,000)")
    p.add_argument("--per-dir", type=int, default=100, help="files per folder (default 100)")
    p.add_argument("--gone", type=float, default=0.01, help="fraction deleted (default 0.01)")
    p.add_argument("--runs", type=int, default=5, help="rounds per measurement (default 5)")
    p.add_argument(
        "--dir",
        type=Path,
        help="where the tree and its database are made once and reused "
        "(default: $TMPDIR/ucore-bench-orphans-FILES)",
    )
    p.add_argument("--rebuild", action="store_true", help="make the tree and database again")
    p.add_argument("--no-cold", dest="cold", action="store_false", help="warm runs only")
    p.add_argument("--profile", action="store_true", help="one more warm run of ours, cProfiled")
    p.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import the live src tree instead of a copy taken at the start",
    )
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dir is None:
        args.dir = Path(tempfile.gettempdir()) / f"ucore-bench-orphans-{args.files}"
    if args.child:
        kind, *rest = args.child
        print(json.dumps(CHILDREN[kind](*rest)))
        return 0

    started = time.perf_counter()
    work = make_tmp(None, "ucore-bench-orphans-work-")
    try:
        if args.snapshot:
            snapshot_src(work)
        args.dir.mkdir(parents=True, exist_ok=True)
        print_header("orphan check", ["benchmarks/bench_orphans.py", *argv], args.dir)
        tree, data, state = prepare(args)
        db = state["db"]
        folders = -(-args.files // args.per_dir)
        print(
            f"records         : {args.files:,} in {folders:,} folders of {args.per_dir}, "
            f"{state['deleted']:,} files deleted; every run a dry run (grace 24 h: all seen "
            "as newly gone, nothing written)"
        )
        memory = str(work / "time")
        warm_find = run_child(SCRIPT, ["--child", "find", str(tree), memory])
        for side in ("ours", "exists", "floor"):  # warm-up, untimed
            arg = [str(data), ""] if side == "ours" else [db]
            run_child(SCRIPT, ["--child", side, *arg])
        print(
            f"find, wc        : peak RSS {warm_find['find_mib']:.1f} MiB + "
            f"{warm_find['wc_mib']:.1f} MiB (/usr/bin/time, warm-up run)\n"
        )
        print(f"== warm page cache: {args.runs} rounds, alternating {', '.join(SIDES)}")
        warm = report("warm", measure(args, tree, data, state, cold=False), args)
        cold: dict[str, float] | None = None
        why_not = can_drop_caches() if args.cold else "--no-cold: warm only"
        if why_not is None:
            print(f"\n== cold page cache (sync; echo 3 > {DROP} before every child)")
            cold = report("cold", measure(args, tree, data, state, cold=True), args)
        else:
            print(f"\n== cold page cache: {why_not}")

        print("\n== targets")
        print(
            "  ours faster than exists, warm:        "
            + verdict(ratio(warm["ours"], warm["exists"]), 1.0, "ours / exists")
        )
        if cold is not None:
            print(
                "  ours >= 2x faster than exists, cold:  "
                + verdict(ratio(cold["ours"], cold["exists"]), 0.5, "ours / exists")
            )
        print(
            "  ours within 2x of the floor, warm:    "
            + verdict(ratio(warm["ours"], warm["floor"]), 2.0, "ours / floor")
        )
        if cold is not None:
            print(
                "  ours within 2x of the floor, cold:    "
                + verdict(ratio(cold["ours"], cold["floor"]), 2.0, "ours / floor")
            )
        print(f"  ours / find, warm: {fmt_ratio(warm['ours'], warm['find'])} (no target)")
        if cold is not None:
            print(f"  ours / find, cold: {fmt_ratio(cold['ours'], cold['find'])} (no target)")

        if args.profile:
            r = run_child(SCRIPT, ["--child", "ours", str(data), str(work / "orphans-ours.pstats")])
            print(
                f"\nprofile of one more warm run of ours ({r['seconds']:.2f} s under cProfile, "
                "all threads, bootstrap included; own time):"
            )
            print(r["profile"])
    finally:
        cleanup(work, keep=False)
    print(f"\ntotal time: {time.perf_counter() - started:.0f} s")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
