"""Shared helpers of the benchmark scripts: machine facts, child processes, medians.

Every benchmark runs each measurement in a fresh child process (the same script with a
hidden ``--child`` option) so that no side inherits threads, caches or garbage from the
other, and alternates the sides: ours, peer, ours, peer, ...
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import json
import math
import os
import platform
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: environment variables that would make a child use the developer's own library
UCORE_ENV = ("UCORE_CONFIG", "UCORE_DATA_DIR", "UCORE_DATABASE_URL")
#: the copy of src that the children import (None: the live tree); see snapshot_src()
SNAPSHOT: list[Path | None] = [None]

_CHECK = """
import asyncio, sys, tempfile
from pathlib import Path
import ucore
assert str(Path(ucore.__file__).resolve()).startswith(sys.argv[1]), ucore.__file__
from ucore.app import bootstrap
from ucore.foundation.config.loader import parse_config
async def main():
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cfg = parse_config({}, data_dir=d, config_file=d / "config.json", env={})
        app = await bootstrap(cfg, role="client")
        await app.shutdown()
asyncio.run(main())
"""


def snapshot_src(base: Path, *, tries: int = 30, wait: float = 10.0) -> Path:
    """Copy ``src`` under ``base`` and make every child import that copy (PYTHONPATH).

    The tree may be edited while a benchmark runs (several minutes); a copy keeps every run
    on the same code. The copy must import and bootstrap a client; a tree caught half-way
    through an edit is copied again after ``wait`` seconds, up to ``tries`` times.
    """
    target = base / "src"
    for attempt in range(1, tries + 1):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "src", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        env = {**clean_env(), "PYTHONPATH": str(target)}
        check = subprocess.run(
            [sys.executable, "-c", _CHECK, str(target.resolve())],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if check.returncode == 0:
            os.environ["PYTHONPATH"] = str(target)
            SNAPSHOT[0] = target
            return target
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        print(f"src does not bootstrap yet (try {attempt}/{tries}): {last}", file=sys.stderr)
        time.sleep(wait)
    raise SystemExit("src never bootstrapped; run with --no-snapshot to see why")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "not installed"


def src_fingerprint(src: Path | None = None) -> str:
    """A short hash of every file under src/ucore: the figures belong to this code."""
    h = hashlib.sha256()
    base = (src or ROOT / "src") / "ucore"
    for path in sorted(base.rglob("*.py")):
        h.update(str(path.relative_to(base)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted src changes' if dirty else ''}"


def filesystem_of(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "-PT", str(path)], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        fields = out[-1].split()
        return f"{fields[0]} ({fields[1]})"
    except (OSError, IndexError):
        return "unknown"


def machine_lines(data_dir: Path | None = None) -> list[str]:
    mem = mem_total_gib()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?", "?", "?")
    lines = [
        f"date (UTC)      : {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M:%S')}",
        f"nproc           : {os.cpu_count()}",
        f"CPU             : {cpu_model()}",
        f"memory          : {mem:.1f} GiB" if mem else "memory          : unknown",
        f"kernel          : {platform.release()}",
        f"python          : {sys.version.split()[0]} ({sys.executable})",
        f"SQLite          : {sqlite3.sqlite_version}",
        f"load average    : {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared, noisy VM)",
        f"ucore code      : git {git_state()}, src fingerprint {src_fingerprint(SNAPSHOT[0])}"
        + (f" (snapshot {SNAPSHOT[0]})" if SNAPSHOT[0] else " (live tree)"),
        "peers           : huey "
        f"{_version('huey')}, APScheduler {_version('APScheduler')}, psutil {_version('psutil')}",
    ]
    if data_dir is not None:
        lines.append(f"data dir        : {data_dir} on {filesystem_of(data_dir)}")
    return lines


def print_header(title: str, argv: Sequence[str], data_dir: Path | None = None) -> None:
    print(f"== {title}")
    print("command         : " + " ".join([Path(sys.executable).name, *argv]))
    for line in machine_lines(data_dir):
        print(line)
    print(flush=True)


def make_tmp(base: Path | None, prefix: str) -> Path:
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=str(base) if base else None))


def clean_env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UCORE_ENV}
    if home is not None:
        env["HOME"] = str(home)
        for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
            env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_child(script: Path, args: Sequence[str], *, timeout: float = 3600) -> dict[str, Any]:
    """Run ``python script --child ARGS`` and return the JSON object of its last stdout line."""
    try:
        proc = subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        # killed by subprocess.run; a peer that hangs (Huey's consumer once sat idle for 18
        # minutes) must not stall the whole benchmark
        raise SystemExit(f"child {' '.join(args)} did not finish within {timeout:g} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:])
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child {' '.join(args)} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def median(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def fmt_ratio(a: float, b: float, digits: int = 2) -> str:
    """``a/b`` as ``1.23x``; ``n/a`` when the peer's figure is 0."""
    return f"{a / b:.{digits}f}x" if b else "n/a (peer measured 0)"


def load_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def cleanup(path: Path, keep: bool) -> None:
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


# -- what the maintenance benchmarks share -----------------------------------------------
def maxrss_mib() -> float:
    """This process's peak RSS (VmHWM: the high-water mark of its own address space)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config(data: Path, extra: dict[str, Any] | None = None) -> Any:
    from ucore.foundation.config.loader import parse_config

    return parse_config(extra or {}, data_dir=data, config_file=data / "config.json", env={})


# -- profiling (every thread) ---------------------------------------------------------------
class ThreadProfiles:
    """cProfile in this thread and in every thread started after :meth:`start`."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_here(self, *_: Any) -> None:
        prof = cProfile.Profile()
        with self._lock:
            self.profiles.append(prof)
        prof.enable()  # replaces this function as the thread's profiler

    def start(self) -> None:
        threading.setprofile(self._start_here)
        self._start_here()

    def report(self, path: Path, top: int = 25) -> str:
        """The functions with the most own time, threads merged, idle waits left out."""
        threading.setprofile(None)  # type: ignore[arg-type]
        stats: pstats.Stats | None = None
        for prof in self.profiles:
            prof.disable()
            prof.create_stats()
            if not prof.stats:  # type: ignore[attr-defined]
                continue
            if stats is None:
                stats = pstats.Stats(prof)
            else:
                stats.add(prof)
        if stats is None:
            return "(no profile)"
        stats.dump_stats(str(path))
        table = stats.stats  # type: ignore[attr-defined]
        rows = []
        idle = 0.0
        for (file, line, func), (_, calls, own, cum, _) in table.items():
            where = func if file == "~" else f"{Path(file).name}:{line}({func})"
            if any(w in where for w in IDLE):
                idle += own
                continue
            rows.append((own, cum, calls, where))
        rows.sort(reverse=True)
        busy = sum(r[0] for r in rows)
        lines = [
            f"  own time {busy:.3f} s in all threads besides {idle:.3f} s of idle waits "
            f"({', '.join(IDLE)})",
            f"  {'own s':>8s} {'cum s':>8s} {'calls':>9s}  function",
        ]
        lines += [f"  {o:8.3f} {c:8.3f} {n:9d}  {w}" for o, c, n, w in rows[:top]]
        return "\n".join(lines)


#: profiler entries that are threads waiting for work, not work
IDLE = ("'get' of '_queue.SimpleQueue'", "'poll' of 'select.epoll'", "'acquire' of '_thread")


def add_work_args(p: argparse.ArgumentParser, *, keep: bool = True) -> None:
    """The options every maintenance benchmark takes: --dir, --keep, --no-snapshot, --child."""
    p.add_argument("--dir", type=Path, help="where the work folder goes (default TMP)")
    if keep:
        p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import the live src tree instead of a copy taken at the start",
    )
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)


def bench_main(
    args: argparse.Namespace,
    argv: Sequence[str],
    *,
    script: str,
    title: str,
    children: dict[str, Callable[..., Any]],
    body: Callable[[argparse.Namespace, Path], None],
) -> int:
    """A benchmark's main: a ``--child`` call prints its JSON result; otherwise a work folder
    (with a snapshot of src), the header, ``body(args, work)``, clean-up, the total time."""
    if args.child:
        kind, *rest = args.child
        print(json.dumps(children[kind](*rest)))
        return 0
    started = time.perf_counter()
    base = make_tmp(args.dir, f"ucore-bench-{Path(script).stem.removeprefix('bench_')}-")
    if args.snapshot:
        snapshot_src(base)
    print_header(title, [script, *argv], base)
    try:
        body(args, base)
    finally:
        cleanup(base, keep=args.keep)
    print(f"total time: {time.perf_counter() - started:.0f} s")
    print(load_line())
    return 0
