"""Idle cost of ``ucore run`` vs an APScheduler 3 process, over a window of N seconds.

* **ucore**: ``ucore run --no-live --data-dir TMP`` as a subprocess (HOME in TMP, no UCORE_*
  variables; default config, so ``synchronous=FULL`` and the six default schedules, all
  enabled; the script prints the schedules the service stored), nothing submitted.
* **apscheduler**: the floor: a Python process running APScheduler 3's
  ``AsyncIOScheduler`` with six interval jobs (5 min, 24 h, 6 h, 12 h, 24 h, 7 days; async
  no-op functions, memory job store), on ``asyncio`` like ucore.
* **tick1s**: the target as a process: a bare ``asyncio`` loop that wakes once a second
  (``await asyncio.sleep(1)``) and does nothing else. What one wake-up a second costs on
  this machine; on a VM that cost moves a lot (see docs/performance.md), so ucore's CPU is
  best read against this side measured in the same session.

Each process is left to settle ``--settle`` s (default 2), then measured over the window:

* **CPU**: ``psutil.Process.cpu_times()`` user+system (whole process, 10 ms ticks) and,
  more precisely, the sum over its threads of ``/proc/PID/task/TID/schedstat`` (ns on CPU).
* **wake-ups**: voluntary context switches per second, summed over **all threads** from
  ``/proc/PID/task/*/status`` (each one is the thread going to sleep and being woken again).
  ``psutil.Process.num_ctx_switches()`` is printed beside it, but on Linux it reads
  ``/proc/PID/status``, which counts the **main thread only**.
* optionally (``strace`` installed, not ``--no-strace``): one extra window per side under
  ``strace -f -c -e trace=futex,epoll_wait,epoll_pwait,select,pselect6,poll,ppoll,
  clock_nanosleep,nanosleep`` (attached to all threads), counting the wait-type syscalls
  that completed in the window (asyncio also calls ``epoll_wait`` with a zero timeout when
  callbacks are ready, so calls >= sleeps; a call still blocked at the end is not counted).

Targets (ucore): about one wake-up a second, under 0.1 % CPU.

    python benchmarks/bench_idle.py                  # 60 s windows, 5 alternating runs
    python benchmarks/bench_idle.py --quick          # smoke run: one 10 s window per side
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    clean_env,
    cleanup,
    fmt_ratio,
    load_line,
    make_tmp,
    median,
    print_header,
    snapshot_src,
)

TARGET_WAKEUPS = 1.0
TARGET_CPU_PCT = 0.1
STRACE_CALLS = "futex,epoll_wait,epoll_pwait,select,pselect6,poll,ppoll,clock_nanosleep,nanosleep"
SIDES = ("ucore", "apscheduler", "tick1s")


# -- the APScheduler process ------------------------------------------------------------------
def child_apscheduler() -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    async def noop() -> None:
        return None

    async def main() -> None:
        scheduler = AsyncIOScheduler()
        for kw in (
            {"minutes": 5},
            {"hours": 24},
            {"hours": 6},
            {"hours": 12},
            {"hours": 24},
            {"days": 7},
        ):
            scheduler.add_job(noop, "interval", **kw)
        scheduler.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("READY", flush=True)
        await stop.wait()
        scheduler.shutdown(wait=False)

    asyncio.run(main())


def child_tick1s() -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("READY", flush=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    asyncio.run(main())


# -- measuring a process ----------------------------------------------------------------------
def thread_counters(pid: int) -> dict[int, tuple[int, int, int]]:
    """{tid: (voluntary switches, involuntary switches, ns on CPU)} of the live threads."""
    out: dict[int, tuple[int, int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
            sched = (task / "schedstat").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        vol = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        invol = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        out[int(task.name)] = (vol, invol, int(sched[0]))
    return out


def measure(pid: int, seconds: float) -> dict[str, Any]:
    import psutil

    proc = psutil.Process(pid)
    c0 = proc.cpu_times()
    s0 = proc.num_ctx_switches()
    t0 = thread_counters(pid)
    w0 = time.monotonic()
    time.sleep(seconds)
    c1 = proc.cpu_times()
    s1 = proc.num_ctx_switches()
    t1 = thread_counters(pid)
    wall = time.monotonic() - w0
    common = set(t0) & set(t1)
    per_thread = {
        tid: (t1[tid][0] - t0[tid][0], t1[tid][1] - t0[tid][1], t1[tid][2] - t0[tid][2])
        for tid in sorted(common)
    }
    cpu_ticks = (c1.user + c1.system) - (c0.user + c0.system)
    return {
        "wall": wall,
        "cpu_pct_psutil": 100 * cpu_ticks / wall,
        "cpu_pct_schedstat": 100 * sum(v[2] for v in per_thread.values()) / 1e9 / wall,
        "wakeups_all_threads": sum(v[0] for v in per_thread.values()) / wall,
        "involuntary_all_threads": sum(v[1] for v in per_thread.values()) / wall,
        "wakeups_psutil_main": (s1.voluntary - s0.voluntary) / wall,
        "threads": f"{len(t0)}->{len(t1)}",
        "per_thread": {
            ("main" if tid == pid else f"thread{i}"): round(v[0] / wall, 2)
            for i, (tid, v) in enumerate(per_thread.items())
        },
    }


def strace_window(pid: int, seconds: float) -> str:
    cmd = ["strace", "-f", "-c", "-e", f"trace={STRACE_CALLS}", "-p", str(pid)]
    tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    tracer.send_signal(signal.SIGINT)
    _, err = tracer.communicate(timeout=30)
    return err


def parse_strace(text: str, seconds: float) -> tuple[dict[str, int], str]:
    calls: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                continue
    total = sum(calls.values())
    summary = ", ".join(f"{k} {v / seconds:.2f}/s" for k, v in sorted(calls.items()))
    return calls, f"{total / seconds:.2f} wait-type syscalls/s ({summary or 'none completed'})"


# -- starting the sides -----------------------------------------------------------------------
def ucore_command() -> list[str]:
    script = Path(sys.executable).parent / "ucore"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "ucore.cli.main"]


def start(side: str, tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    log = tmp / f"{side}.stderr"
    env = clean_env(home=tmp / "home")
    (tmp / "home").mkdir(exist_ok=True)
    if side == "ucore":
        cmd = [*ucore_command(), "run", "--no-live", "--data-dir", str(tmp / "data")]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    return proc, log


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_started(side: str, proc: subprocess.Popen[str], tmp: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    if side != "ucore":
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise SystemExit(f"the {side} process did not start")
        return
    db = tmp / "data" / "ucore.db"
    while time.monotonic() < deadline:  # the service is up once it registered its node
        if proc.poll() is not None:
            raise SystemExit(f"ucore run exited with {proc.returncode}")
        if db.exists() and _count(db, "SELECT count(*) FROM nodes WHERE role = 'service'"):
            return
        time.sleep(0.05)
    raise SystemExit("ucore run did not start in time")


def _schedules(db: Path) -> str:
    """The schedules the service keeps state for (the six defaults with the default config)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT name FROM schedule_state ORDER BY name").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"unknown ({exc})"
    return f"{len(rows)} ({', '.join(r[0] for r in rows)})"


def _count(db: Path, sql: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def one_window(side: str, base: Path, args: argparse.Namespace, trace: bool) -> dict[str, Any]:
    tmp = make_tmp(base, f"{side}-")
    proc, log = start(side, tmp)
    try:
        wait_started(side, proc, tmp)
        time.sleep(args.settle)
        db = tmp / "data" / "ucore.db"
        tasks_before = _count(db, "SELECT count(*) FROM tasks") if side == "ucore" else 0
        if trace:
            text = strace_window(proc.pid, args.strace_seconds)
            result: dict[str, Any] = {"strace": text}
        else:
            result = measure(proc.pid, args.seconds)
        if side == "ucore":
            result["tasks_during"] = _count(db, "SELECT count(*) FROM tasks") - tasks_before
            result["schedules"] = _schedules(db)
        if proc.poll() is not None:
            raise SystemExit(f"{side} exited during the window: {log.read_text()[-2000:]}")
    finally:
        stop(proc)
        cleanup(tmp, args.keep)
    return result


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=None, help="window length (60; quick 10)")
    p.add_argument("--runs", type=int, default=None, help="windows per side (5; quick 1)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds before the window (2)")
    p.add_argument("--no-strace", dest="strace", action="store_false", help="skip strace")
    p.add_argument("--strace-seconds", type=float, default=None, help="strace window (=seconds)")
    p.add_argument("--dir", type=Path, default=None, help="where the data dirs go (default TMP)")
    p.add_argument("--keep", action="store_true")
    p.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import the live src tree instead of a copy taken at the start",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: one 10 s window per side")
    p.add_argument("--child", choices=("apscheduler", "tick1s"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 10.0 if args.quick else 60.0
    if args.runs is None:
        args.runs = 1 if args.quick else 5
    if args.strace_seconds is None:
        args.strace_seconds = args.seconds
    if args.quick:
        args.strace = False
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child == "apscheduler":
        child_apscheduler()
        return 0
    if args.child == "tick1s":
        child_tick1s()
        return 0
    base = make_tmp(args.dir, "ucore-bench-idle-")
    if args.snapshot:
        snapshot_src(base)
    print_header("idle cost of a process (lower is better)", sys.argv, base)
    print(
        f"window: {args.seconds:g} s after {args.settle:g} s settling, runs: {args.runs} per side "
        "(alternating)\n"
    )
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
    traces: dict[str, str] = {}
    try:
        for run in range(1, args.runs + 1):
            for side in SIDES:
                r = one_window(side, base, args, trace=False)
                results[side].append(r)
                extra = ""
                if side == "ucore":
                    extra = f"  tasks created {r['tasks_during']}; schedules {r['schedules']}"
                print(
                    f"run {run} {side:11s}: CPU {r['cpu_pct_schedstat']:.4f} % "
                    f"(psutil ticks {r['cpu_pct_psutil']:.3f} %)  wake-ups "
                    f"{r['wakeups_all_threads']:.2f}/s all threads "
                    f"(main thread, psutil: {r['wakeups_psutil_main']:.2f}/s; per thread "
                    f"{r['per_thread']}; involuntary {r['involuntary_all_threads']:.2f}/s; "
                    f"threads {r['threads']}){extra}",
                    flush=True,
                )
        if args.strace and shutil.which("strace"):
            for side in SIDES:
                r = one_window(side, base, args, trace=True)
                _, summary = parse_strace(r["strace"], args.strace_seconds)
                traces[side] = summary
                print(f"strace {args.strace_seconds:g} s {side:11s}: {summary}", flush=True)
    finally:
        cleanup(base, args.keep)

    print(f"\n== medians over {args.runs} windows of {args.seconds:g} s")
    med: dict[str, dict[str, float]] = {}
    for side in SIDES:
        rs = results[side]
        med[side] = {
            k: median(r[k] for r in rs)
            for k in (
                "cpu_pct_schedstat",
                "cpu_pct_psutil",
                "wakeups_all_threads",
                "wakeups_psutil_main",
            )
        }
        m = med[side]
        print(
            f"  {side:11s}: CPU {m['cpu_pct_schedstat']:.4f} % (psutil {m['cpu_pct_psutil']:.3f} %)"
            f"  wake-ups {m['wakeups_all_threads']:.2f}/s all threads "
            f"({m['wakeups_psutil_main']:.2f}/s main thread)"
        )
    u, a = med["ucore"], med["apscheduler"]
    print(
        "  ratio ucore/apscheduler: CPU "
        f"{fmt_ratio(u['cpu_pct_schedstat'], a['cpu_pct_schedstat'], 1)}"
        f"  wake-ups {fmt_ratio(u['wakeups_all_threads'], a['wakeups_all_threads'], 1)}"
    )
    t = med["tick1s"]
    print(
        "  ratio ucore/tick1s (a process doing exactly one wake-up a second): CPU "
        f"{fmt_ratio(u['cpu_pct_schedstat'], t['cpu_pct_schedstat'], 1)}"
        f"  wake-ups {fmt_ratio(u['wakeups_all_threads'], t['wakeups_all_threads'], 1)}"
    )
    per_wake = {
        side: 10 * m["cpu_pct_schedstat"] / m["wakeups_all_threads"]
        for side, m in med.items()
        if m["wakeups_all_threads"] > 0
    }
    print(
        "  CPU per wake-up (ms): "
        + ", ".join(f"{side} {ms:.2f}" for side, ms in per_wake.items())
        + "  (on a VM this moves with the host's load)"
    )
    w, c = u["wakeups_all_threads"], u["cpu_pct_schedstat"]
    print(
        f"  target ~{TARGET_WAKEUPS:g} wake-up/s: "
        + (
            f"met ({w:.2f}/s)"
            if w <= 1.5 * TARGET_WAKEUPS
            else f"MISSED: {w:.2f}/s, {w / TARGET_WAKEUPS:.1f}x the target"
        )
    )
    print(
        f"  target < {TARGET_CPU_PCT:g} % CPU: "
        + (
            f"met ({c:.4f} %, {TARGET_CPU_PCT / c:.0f}x under)"
            if c < TARGET_CPU_PCT
            else f"MISSED: {c:.4f} %, {c / TARGET_CPU_PCT:.1f}x the target"
        )
    )
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
