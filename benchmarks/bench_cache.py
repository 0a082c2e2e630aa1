"""Cache cleanup of a big thumbnail cache: ucore's ``cache_cleanup`` against ``find -delete``.

    python benchmarks/bench_cache.py [--files 200000] [--old-fraction 0.25] [--runs 5]
        [--profile] [--quick] [--dir BASE] [--keep] [--no-snapshot]

**Set-up, once.** A library of ``--files`` empty ``.jpg`` files (1,000 per folder) is added as
a root and scanned (``library_scan`` through the TaskSystem, in a child); every record's
thumbnail is then marked ``done`` with one SQL UPDATE (and the queued ``thumbnails_generate``
dropped), as if every thumbnail had been made. The names of their thumbnails (ucore's naming
function, over the store's ``thumbnail_sources``) are written to a list. That database is
the template.

**Before every run (untimed), for both sides alike:** the database template is copied, and
the cache is made again from scratch: ``cache/thumbnails/256/<name>.png`` for every record,
512 to 4,095 bytes each (``os.open``/``write``), atime = mtime set with ``os.utime``; the
files whose index is in the first ``--old-fraction`` of each hundred are 40 to 400 days old,
the rest 1 to 29 days. So both sides start from identical trees in the page cache, and
"older than 30 days" is the same set for both (``find -mtime +30`` means 31 days or more;
no file is between 29 and 40 days old).

**The two sides**, alternating (ours, find, ours, find, ...), each in a fresh child process:

* **ours**: a client app on the copied database with ``paths.cache_dir`` = the cache;
  ``cache_cleanup`` with ``max_age_days`` 30 and ``max_cache_size_gb`` null (size cap off),
  submitted and run here (``become_runner`` + ``wait``, as ``ucore maintenance run --wait``
  does without a service). Timed from submit to the finished record: listing and ``lstat``
  of every entry, streaming the ``done`` records and hashing their names, the plan, evicting
  the deleted thumbnails' records (10,000 at a time, committed together), a second ``lstat``
  and an ``unlinkat`` per deleted file (in inode order), the journal entry. Also printed:
  bootstrap + task + shutdown, the CPU time of the child's threads during the task, and the
  time of each phase (the module's functions wrapped).
* **find**: ``find CACHE -type f -mtime +30 -delete``, timed around the process (GNU find
  reads a big folder whole and visits it in inode order).

Each run is checked afterwards: the files left are exactly the young ones (by count, and none
older than 30 days), and ours evicted exactly as many records as it deleted files.

Printed: each run, the medians, the ratio ours / find (target: within 2x) and peak memory:
ours as ``VmHWM`` of its child (with its value right after bootstrap, so the cleanup's own
share shows), find's by ``/usr/bin/time -f %M`` (the find runs under it; its exec costs about
a millisecond). ``--profile``: one more run of ours under cProfile (all threads), functions by
own time. ``--quick``: 20,000 files, 3 runs (a smoke test, do not quote).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ThreadProfiles,
    add_work_args,
    bench_main,
    cleanup,
    config,
    fmt_ratio,
    maxrss_mib,
    median,
    ratio,
    run_child,
)

SCRIPT = Path(__file__).resolve()
DAY = 86400.0
MAX_AGE_DAYS = 30
PER_DIR = 1000
SIZE_DIR = "256"
TARGET_RATIO = 2.0


def is_old(index: int, fraction: float) -> bool:
    """The files of the old subset: the first ``fraction`` of each hundred."""
    return index % 100 < round(fraction * 100)


# -- set-up (children) ----------------------------------------------------------------------
def child_fill(base: str, files: str) -> dict[str, Any]:
    """Library tree, scan, every thumbnail ``done``, the names list."""
    from ucore.app import bootstrap
    from ucore.fs.thumbnails import thumbnail_name

    b = Path(base)
    lib, data, names_file = b / "library", b / "data-template", b / "names.txt"
    n = int(files)
    start = time.perf_counter()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    for k in range(n):
        if k % PER_DIR == 0:
            folder = lib / f"d{k // PER_DIR:04d}"
            folder.mkdir(parents=True)
        os.close(os.open(f"{folder}/img{k:07d}.jpg", flags, 0o644))
    made = time.perf_counter() - start

    async def main() -> dict[str, Any]:
        app = await bootstrap(config(data), role="client")
        try:
            root, _ = await app.library.add_root(lib)
            t = time.perf_counter()
            task_id = await app.library.scan(root.id)
            await app.tasks.become_runner(task_id)
            record = await app.tasks.wait(task_id)
            assert record.state.value == "completed", record.error
            scanned = time.perf_counter() - t
            db = str(app.tasks.store.db.path)  # type: ignore[attr-defined]
            return {"scan_s": scanned, "new": record.result["new"], "db": db}
        finally:
            await app.shutdown()

    out = asyncio.run(main())
    conn = sqlite3.connect(out["db"], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    done = conn.execute(
        "UPDATE library_files SET thumb_state = 'done', thumb_mtime_ns = mtime_ns "
        "WHERE thumb_state = 'pending'"
    ).rowcount
    conn.execute("DELETE FROM tasks WHERE name = 'thumbnails_generate' AND state = 'pending'")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()

    async def names() -> int:
        app = await bootstrap(config(data), role="client")
        count = 0
        try:
            with names_file.open("w") as f:
                after = 0
                while page := await app.tasks.store.thumbnail_sources(after_id=after, limit=5000):
                    for _, root_id, rel_path in page:
                        f.write(thumbnail_name(root_id, rel_path) + "\n")
                    count += len(page)
                    after = page[-1][0]
        finally:
            await app.shutdown()
        return count

    listed = asyncio.run(names())
    return {**out, "tree_s": made, "done": done, "names": listed}


def child_build(names_file: str, cache: str, fraction: str) -> dict[str, Any]:
    """The cache made from scratch: every thumbnail, old ones 40-400 days, others 1-29."""
    start = time.perf_counter()
    folder = Path(cache) / "thumbnails" / SIZE_DIR
    folder.mkdir(parents=True, mode=0o700)
    frac = float(fraction)
    now = time.time()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    old = young = size = 0
    payload = os.urandom(4096)
    prefix = f"{folder}/"
    with open(names_file) as f:
        for i, line in enumerate(f):
            path = prefix + line.rstrip("\n")
            n = 512 + (i * 7919) % 3584
            fd = os.open(path, flags, 0o600)
            os.write(fd, payload[:n])
            os.close(fd)
            if is_old(i, frac):
                at = now - (40 + i % 361) * DAY
                old += 1
            else:
                at = now - (1 + i % 29) * DAY
                young += 1
            os.utime(path, (at, at))
            size += n
    return {"seconds": time.perf_counter() - start, "old": old, "young": young, "bytes": size}


def child_check(cache: str) -> dict[str, Any]:
    """What is left: files, and how many of them are older than the limit."""
    folder = Path(cache) / "thumbnails" / SIZE_DIR
    cutoff = time.time() - MAX_AGE_DAYS * DAY
    left = old = 0
    if folder.is_dir():
        with os.scandir(folder) as it:
            for entry in it:
                left += 1
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    old += 1
    return {"left": left, "old_left": old}


# -- the two sides (children) ---------------------------------------------------------------
def timed(owner: Any, name: str, spent: dict[str, float]) -> None:
    """Add the wall time of every call of ``owner.name`` (sync or async) to ``spent[name]``."""
    original = getattr(owner, name)
    spent.setdefault(name, 0.0)
    if asyncio.iscoroutinefunction(original):

        async def async_call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t

        setattr(owner, name, async_call)
    else:

        def call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t

        setattr(owner, name, call)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def child_ours(data: str, cache: str, profile: str) -> dict[str, Any]:
    """``cache_cleanup`` through the TaskSystem; where its time goes (its phases timed by
    wrapping the module's functions and the store's two calls)."""
    from ucore.app import bootstrap
    from ucore.maintenance import cache_cleanup

    prof = ThreadProfiles() if profile else None
    started = time.perf_counter()
    peak: dict[str, float] = {}
    spent: dict[str, float] = {}
    for name in ("scan", "owners_of", "plan", "evict", "delete_chunk"):
        timed(cache_cleanup, name, spent)

    async def main() -> dict[str, Any]:
        if prof:
            prof.start()
        cfg = config(Path(data), {"paths": {"cache_dir": cache}})
        app = await bootstrap(cfg, role="client")
        try:
            peak["after_bootstrap"] = maxrss_mib()
            t, cpu = time.perf_counter(), cpu_seconds()
            params = {"max_age_days": MAX_AGE_DAYS, "max_cache_size_gb": None}
            task_id = await app.tasks.submit("cache_cleanup", params, origin="bench")
            await app.tasks.become_runner(task_id)
            record = await app.tasks.wait(task_id)
            seconds, cpu = time.perf_counter() - t, cpu_seconds() - cpu
            assert record.state.value == "completed", (record.state, record.error)
            return {"seconds": seconds, "cpu": cpu, "result": record.result}
        finally:
            await app.shutdown()

    out = asyncio.run(main())
    out["child_s"] = time.perf_counter() - started
    out["maxrss_mib"] = maxrss_mib()
    out["peak"] = peak
    out["spent"] = spent
    out["profile"] = prof.report(Path(profile)) if prof else None
    return out


def child_find(cache: str, memory: str) -> dict[str, Any]:
    """``find CACHE -type f -mtime +30 -delete`` under ``/usr/bin/time`` (peak RSS, CPU)."""
    argv = ["find", cache, "-type", "f", "-mtime", f"+{MAX_AGE_DAYS}", "-delete"]
    start = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", memory, *argv], check=True)
    seconds = time.perf_counter() - start
    kib, user, system = Path(memory).read_text().split()[-3:]
    Path(memory).unlink()
    return {"seconds": seconds, "cpu": float(user) + float(system), "maxrss_mib": int(kib) / 1024}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "fill": child_fill,
    "build": child_build,
    "check": child_check,
    "ours": child_ours,
    "find": child_find,
}


# -- the parent -----------------------------------------------------------------------------
def prepare(base: Path, args: argparse.Namespace, tag: str) -> tuple[Path, Path, dict[str, Any]]:
    """A copy of the database template and a freshly made cache for one run."""
    work = base / f"run-{tag}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    data = work / "data"
    shutil.copytree(base / "data-template", data)
    cache = work / "cache"
    built = run_child(
        SCRIPT, ["--child", "build", str(base / "names.txt"), str(cache), str(args.old_fraction)]
    )
    os.sync()  # no writeback of the new tree left to slow the next fsync (ours makes some)
    return data, cache, built


def phases(spent: dict[str, float]) -> str:
    labels = {
        "scan": "listing + lstat",
        "owners_of": "records + hashing",
        "plan": "plan",
        "evict": "evictions",
        "delete_chunk": "lstat + unlink",
    }
    return ", ".join(f"{labels[k]} {spent[k]:.3f} s" for k in labels if k in spent)


def verdict(value: float, limit: float) -> str:
    if value <= limit:
        return f"met ({value:.2f}x <= {limit:g}x)"
    return f"MISSED ({value:.2f}x, {value / limit:.2f}x the limit of {limit:g}x)"


def bench(args: argparse.Namespace, base: Path) -> None:
    print(f"== cache cleanup of {args.files:,} thumbnails, {args.old_fraction:.0%} older than 30 d")
    fill = run_child(SCRIPT, ["--child", "fill", str(base), str(args.files)])
    assert fill["new"] == fill["done"] == fill["names"] == args.files, fill
    print(
        f"set-up (once)   : {args.files:,} library files in {fill['tree_s']:.1f} s, scanned in "
        f"{fill['scan_s']:.1f} s, every thumbnail marked done"
    )
    print(f"runs            : {args.runs}, alternating ours / find, the cache made anew each\n")
    rows: dict[str, list[dict[str, Any]]] = {"ours": [], "find": []}
    for run in range(1, args.runs + 1):
        for side in ("ours", "find"):
            data, cache, built = prepare(base, args, f"{side}-{run}")
            if side == "ours":
                r = run_child(SCRIPT, ["--child", "ours", str(data), str(cache), ""])
                res = r["result"]
                ok = res["deleted"] == res["expired"] == res["evicted"] == built["old"]
                extra = (
                    f" (task {res['duration']:.2f} s; deleted {res['deleted']:,}, evicted "
                    f"{res['evicted']:,}; peak RSS {r['maxrss_mib']:.0f} MiB, "
                    f"{r['peak']['after_bootstrap']:.0f} after bootstrap)"
                )
            else:
                r = run_child(SCRIPT, ["--child", "find", str(cache), str(base / "time.out")])
                ok = True
                extra = f" (peak RSS {r['maxrss_mib']:.1f} MiB)"
            left = run_child(SCRIPT, ["--child", "check", str(cache)])
            ok = ok and left == {"left": built["young"], "old_left": 0}
            r["ok"] = "ok" if ok else f"WRONG: left {left}, built {built}"
            rows[side].append(r)
            print(
                f"run {run} {side:4s}: {r['seconds']:7.3f} s, CPU {r['cpu']:6.3f} s{extra}  "
                f"{r['ok']}  [cache made in {built['seconds']:.1f} s: {built['old']:,} old, "
                f"{built['young']:,} young, {built['bytes'] / 2**20:,.0f} MiB]",
                flush=True,
            )
            if side == "ours":
                print("           ours inside: " + phases(r["spent"]), flush=True)
            cleanup(data.parent, keep=False)
    o = median(r["seconds"] for r in rows["ours"])
    oc = median(r["child_s"] for r in rows["ours"])
    ot = median(r["result"]["duration"] for r in rows["ours"])
    f = median(r["seconds"] for r in rows["find"])
    cpu_o = median(r["cpu"] for r in rows["ours"])
    cpu_f = median(r["cpu"] for r in rows["find"])
    deleted = rows["ours"][0]["result"]["deleted"]
    print(f"\nmedians over {args.runs} runs                      seconds  deleted/s   / find")
    for label, value in (
        ("ours, submit -> finished", o),
        ("ours, in the task (duration)", ot),
        ("ours, bootstrap + task + shutdown", oc),
        ("find -type f -mtime +30 -delete", f),
        ("CPU (user + system): ours", cpu_o),
        ("CPU (user + system): find", cpu_f),
    ):
        print(f"  {label:38s} {value:7.3f}  {deleted / value:9,.0f}   {fmt_ratio(value, f)}")
    spent = {k: median(r["spent"][k] for r in rows["ours"]) for k in rows["ours"][0]["spent"]}
    print("  ours inside (medians): " + phases(spent))
    rss_o = max(r["maxrss_mib"] for r in rows["ours"])
    rss_b = max(r["peak"]["after_bootstrap"] for r in rows["ours"])
    rss_f = max(r["maxrss_mib"] for r in rows["find"])
    print(
        f"  peak RSS (max of runs): ours {rss_o:.0f} MiB ({rss_b:.0f} MiB after bootstrap, "
        f"so {rss_o - rss_b:.0f} MiB for the cleanup), find {rss_f:.1f} MiB"
    )
    print(f"target ours / find <= {TARGET_RATIO:g}x: {verdict(ratio(o, f), TARGET_RATIO)}")
    if args.profile:
        data, cache, _ = prepare(base, args, "profile")
        prof = str(base / "ours.pstats")
        r = run_child(SCRIPT, ["--child", "ours", str(data), str(cache), prof])
        print(
            f"\nprofile of one more run of ours ({r['seconds']:.2f} s under cProfile, "
            "all threads, bootstrap included; own time):"
        )
        print(r["profile"])
        cleanup(data.parent, keep=False)
    print(flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=None, help="thumbnails (default 200,000)")
    p.add_argument(
        "--old-fraction", type=float, default=0.25, help="share older than 30 days (0.25)"
    )
    p.add_argument("--runs", type=int, default=None, help="runs per side (default 5)")
    p.add_argument("--profile", action="store_true", help="one more run of ours, cProfiled")
    p.add_argument("--quick", action="store_true", help="20,000 files, 3 runs")
    add_work_args(p)
    args = p.parse_args(argv)
    if args.files is None:
        args.files = 20_000 if args.quick else 200_000
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    return args


def main(argv: list[str]) -> int:
    return bench_main(
        parse_args(argv),
        argv,
        script="benchmarks/bench_cache.py",
        title="maintenance: cache cleanup",
        children=CHILDREN,
        body=bench,
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
