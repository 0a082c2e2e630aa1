"""Log rotation: compression of a big log by the ``log_rotation`` task against ``gzip -6``.

    python benchmarks/bench_logs.py [--size-mb 300] [--runs 5] [--seed 1] [--quick]
        [--dir BASE] [--keep] [--no-snapshot]

A log file of ``--size-mb`` MiB is generated once (a child process, seeded): lines in UCore's
``LOG_FORMAT`` from ten loggers, with task ids, paths, sizes, durations, hashes and errors
drawn at random, so it compresses like a real log (about 4.6:1 with ``gzip -6``), not like a
repeated line. It is read once before the runs, so that every side reads it from a warm
page cache. Then, alternating, each in a fresh child process:

* **ours**: the real ``log_rotation`` task through the TaskSystem, as ``ucore maintenance run
  log_rotation --wait`` runs it without a service: a client app on a fresh data dir whose
  ``logs/ucore.log`` is a hard link to the input; submit, ``become_runner``, wait. Timed from
  submit to the finished record: listing, ``detach_for_rotation`` (rename, exclusive lock),
  gzip level 6 in 1 MiB chunks in a worker thread, fsync of the output and the directory,
  removal of the uncompressed archive (the hard link; the input stays). Also printed: the time
  in ``compress_archive`` alone, and in its ``fsync`` calls.
* **gzip**: ``sh -c 'gzip -6 -c FILE > OUT'`` (no fsync).
* **zlib floor** (for reference): the same file read with ``os.readv`` into a 1 MiB buffer
  and compressed with ``zlib.compressobj(6, DEFLATED, 31)``, output discarded: what any
  Python gzip of this file costs at least.

Printed per run and as medians: seconds, input MiB/s, CPU seconds (user + system of the
process doing the work: ours' whole process from submit to the finished record, gzip and its
``sh``, the floor), output size; the ratio of ours' rate to
gzip's (target: >= 1.0x; also per pair of runs, which a noisy machine disturbs less) and of
ours' size to gzip's (target: within 1 %). Every run of ours
checks its output: it decompresses to the input (sha256, streamed, after the timing).

Peak memory: ``VmHWM`` (the process's own high-water mark) of the ucore child, after
bootstrap and at the end of the task (before the check); for ``gzip`` ``/usr/bin/time -f %M``
in one extra, untimed run. Not ``ru_maxrss``: an exec'd child's starts at its parent's peak
(see docs/performance.md). ``--quick``: 64 MiB, 3 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    add_work_args,
    bench_main,
    config,
    fmt_ratio,
    maxrss_mib,
    median,
    ratio,
    run_child,
)

SCRIPT = Path(__file__).resolve()
MIB = 1 << 20
READ = 1 << 20
SIDES = ("ours", "gzip", "floor")
TARGET_RATE = 1.0
TARGET_SIZE = 1.01


# -- the input --------------------------------------------------------------------------------
LOGGERS = (
    "ucore.tasks",
    "ucore.tasks.worker",
    "ucore.scheduling",
    "ucore.fs.scan",
    "ucore.maintenance",
    "ucore.stores.sqlite",
    "ucore.task.library_scan",
    "ucore.task.thumbnails_generate",
    "uexplorer.ui",
    "ucore.fs.thumbnails",
)
LEVELS = ("INFO",) * 12 + ("DEBUG",) * 6 + ("WARNING",) * 2 + ("ERROR",)
# fmt: off
WORDS = (
    "photo", "album", "holiday", "family", "scan", "raw", "jpeg", "export", "draft", "final",
    "2019", "2020", "2021", "2022", "2023", "beach", "mountain", "city", "night", "portrait",
    "landscape", "img", "dsc", "pxl", "screenshot", "video", "clip", "edit",
)
# fmt: on
EXTS = (".jpg", ".png", ".heic", ".cr2", ".mp4", ".mov", ".tiff", ".webp")
TASKS = ("library_scan", "thumbnails_generate", "cache_cleanup", "sleep")
SCHEDULES = ("cache_cleanup", "orphaned_cleanup", "log_rotation", "database_cleanup")
ERRORS = ((2, "No such file or directory"), (5, "Input/output error"), (13, "Permission denied"))


def _path(rng: random.Random) -> str:
    parts = ["/home/anna/Pictures"]
    parts += ["_".join(rng.sample(WORDS, rng.randint(1, 2))) for _ in range(rng.randint(2, 5))]
    name = rng.choice(("IMG_", "DSC", "PXL_", "photo-", "")) + f"{rng.randint(0, 99999):05d}"
    return "/".join(parts) + "/" + name + rng.choice(EXTS)


def _message(rng: random.Random, task: int) -> str:
    k = rng.random()
    if k < 0.25:
        return (
            f"task {task} library_scan: scanned {rng.randint(0, 10**6):,} files in "
            f"{rng.uniform(0.1, 300):.2f} s ({rng.randint(0, 5000)} new, "
            f"{rng.randint(0, 300)} changed)"
        )
    if k < 0.45:
        return (
            f"thumbnail {rng.getrandbits(64):016x} for {_path(rng)} ({rng.randint(100, 9000)}x"
            f"{rng.randint(100, 9000)}) in {rng.uniform(1, 900):.1f} ms"
        )
    if k < 0.6:
        return (
            f"claimed task {task} ({rng.choice(TASKS)}, attempt {rng.randint(1, 3)}) on node "
            f"{rng.getrandbits(32):08x} pid {rng.randint(1000, 60000)}"
        )
    if k < 0.7:
        return (
            f"file {_path(rng)} changed: size {rng.randint(0, 10**8)} -> "
            f"{rng.randint(0, 10**8)}, mtime {rng.uniform(1.5e9, 1.8e9):.6f}"
        )
    if k < 0.8:
        return (
            f"GET /api/tasks/{task} 200 {rng.randint(100, 90000)} bytes "
            f"{rng.uniform(0.1, 50):.2f} ms from 127.0.0.1:{rng.randint(30000, 65000)}"
        )
    if k < 0.88:
        return (
            f"schedule {rng.choice(SCHEDULES)} fired {rng.uniform(0, 2):.3f} s late; next run "
            f"2026-11-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:00Z"
        )
    if k < 0.95:
        return (
            f"checkpoint: wal {rng.randint(0, 4000)} pages, moved {rng.randint(0, 4000)}, "
            f"busy {rng.randint(0, 3)}"
        )
    code, text = rng.choice(ERRORS)
    return f"could not read {_path(rng)}: [Errno {code}] {text}"


def child_generate(path: str, size_mb: str, seed: str) -> dict[str, Any]:
    """Write ``size_mb`` MiB of log lines in LOG_FORMAT (as logging.Formatter renders it)."""
    from ucore.foundation.logs import LOG_FORMAT

    assert LOG_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s", LOG_FORMAT
    rng = random.Random(int(seed))
    target = int(float(size_mb) * MIB)
    t = 1_793_491_200.0  # 2026-11-01 00:00 UTC
    task = 1000
    size = 0
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        while size < target:
            batch = []
            for _ in range(10_000):
                t += rng.expovariate(20)
                if rng.random() < 0.01:
                    task += 1
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
                batch.append(
                    f"{stamp},{int(t * 1000) % 1000:03d} {rng.choice(LEVELS)} "
                    f"{rng.choice(LOGGERS)}: {_message(rng, task)}\n"
                )
            data = "".join(batch).encode()
            out.write(data)
            digest.update(data)
            size += len(data)
    return {"bytes": size, "sha256": digest.hexdigest(), "seconds": time.perf_counter() - start}


# -- the sides --------------------------------------------------------------------------------
def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def sha256_of_gzip(path: Path) -> str:
    digest = hashlib.sha256()
    unpacker = zlib.decompressobj(31)
    with open(path, "rb") as f:
        while chunk := f.read(READ):
            digest.update(unpacker.decompress(chunk))
    digest.update(unpacker.flush())
    return digest.hexdigest()


def child_ours(data: str, source: str, expect_sha: str) -> dict[str, Any]:
    import ucore.maintenance.log_rotation as rot
    from ucore.app import bootstrap

    spent = {"compress": 0.0, "fsync": 0.0}
    compress, fsync = rot.compress_archive, os.fsync

    def timed_compress(*args: Any, **kwargs: Any) -> tuple[int, int]:
        start = time.perf_counter()
        try:
            return compress(*args, **kwargs)
        finally:
            spent["compress"] += time.perf_counter() - start

    def timed_fsync(fd: int) -> None:
        start = time.perf_counter()
        try:
            fsync(fd)
        finally:
            spent["fsync"] += time.perf_counter() - start

    rot.compress_archive = timed_compress  # type: ignore[assignment]
    rot.os.fsync = timed_fsync  # type: ignore[assignment]
    d = Path(data)
    peak: dict[str, float] = {}

    async def main() -> dict[str, Any]:
        app = await bootstrap(config(d), role="client")
        try:
            log_dir = app.ctx.locations.log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
            os.link(source, log_dir / "ucore.log")
            peak["after_bootstrap"] = maxrss_mib()
            params = {"max_log_size_mb": 1.0, "max_log_files": 1000}
            cpu = cpu_seconds()
            start = time.perf_counter()
            task_id = await app.tasks.submit("log_rotation", params, origin="bench")
            await app.tasks.become_runner(task_id)
            record = await app.tasks.wait(task_id)
            seconds = time.perf_counter() - start
            cpu = cpu_seconds() - cpu
            peak["end"] = maxrss_mib()
            assert record.state.value == "completed", record.error
            result = record.result
            assert (result["rotated"], result["compressed"]) == (1, 1), result
            assert result["warnings"] == [], result["warnings"]
            (archive,) = [p for p in log_dir.iterdir() if p.name.endswith(".gz")]
            return {
                "seconds": seconds,
                "cpu": cpu,
                "task_seconds": result["duration"],
                "out_bytes": archive.stat().st_size,
                "archive": str(archive),
            }
        finally:
            await app.shutdown()

    out = asyncio.run(main())
    out["ok"] = sha256_of_gzip(Path(out["archive"])) == expect_sha
    out.update(spent)
    out["peak"] = peak
    return out


def child_gzip(source: str, target: str, memory: str = "") -> dict[str, Any]:
    """``gzip -6 -c FILE > OUT``; with ``memory``, under ``/usr/bin/time -f %M``."""
    script = 'gzip -6 -c "$1" > "$2"'
    if memory:
        script = '/usr/bin/time -f %M -o "$3" gzip -6 -c "$1" > "$2"'
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["sh", "-c", script, "sh", source, target, memory], check=True)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    out: dict[str, Any] = {"seconds": seconds, "cpu": cpu, "out_bytes": os.stat(target).st_size}
    if memory:
        out["maxrss_mib"] = int(Path(memory).read_text().split()[-1]) / 1024
    return out


def child_floor(source: str) -> dict[str, Any]:
    """Read with os.readv into a 1 MiB buffer, zlib level 6 (gzip wrapper), output dropped."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    buffer = bytearray(READ)
    view = memoryview(buffer)
    size = 0
    fd = os.open(source, os.O_RDONLY)
    try:
        while n := os.readv(fd, [buffer]):
            size += len(packer.compress(view[:n]))
    finally:
        os.close(fd)
    size += len(packer.flush())
    return {
        "seconds": time.perf_counter() - start,
        "cpu": cpu_seconds() - cpu,
        "out_bytes": size,
        "maxrss_mib": maxrss_mib(),
    }


CHILDREN = {
    "generate": child_generate,
    "ours": child_ours,
    "gzip": child_gzip,
    "floor": child_floor,
}


# -- the parent -------------------------------------------------------------------------------
def warm(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(8 * MIB):
            pass
    return time.perf_counter() - start


def rate(n_bytes: int, seconds: float) -> float:
    return n_bytes / MIB / seconds if seconds else float("inf")


def verdict(ok: bool, text: str) -> str:
    return f"met ({text})" if ok else f"MISSED ({text})"


def bench(args: argparse.Namespace, base: Path) -> None:
    source = base / "input.log"
    gen = run_child(SCRIPT, ["--child", "generate", str(source), str(args.size_mb), str(args.seed)])
    n = gen["bytes"]
    print(
        f"input           : {source}, {n / MIB:,.1f} MiB of log lines (seed {args.seed}), "
        f"generated in {gen['seconds']:.1f} s"
    )
    print(f"page cache      : read once before the runs in {warm(source):.2f} s")
    print(f"runs            : {args.runs}, alternating ours / gzip -6 / zlib floor\n", flush=True)
    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    gz_out = base / "gzip-out.gz"
    for run in range(1, args.runs + 1):
        for side in SIDES:
            if side == "ours":
                data = base / f"ours-{run}"
                r = run_child(SCRIPT, ["--child", "ours", str(data), str(source), gen["sha256"]])
                shutil.rmtree(data)
                if not r["ok"]:
                    raise SystemExit(f"run {run}: ours' archive does not decompress to the input")
                extra = (
                    f"  task {r['task_seconds']:.3f} s, compress_archive {r['compress']:.3f} s "
                    f"(fsync {r['fsync']:.3f} s), output checked"
                )
            elif side == "gzip":
                r = run_child(SCRIPT, ["--child", "gzip", str(source), str(gz_out)])
                gz_out.unlink()
                extra = ""
            else:
                r = run_child(SCRIPT, ["--child", "floor", str(source)])
                extra = ""
            rows[side].append(r)
            print(
                f"run {run} {side:5s}  {r['seconds']:7.3f} s  {rate(n, r['seconds']):6.1f} MiB/s  "
                f"cpu {r['cpu']:6.3f} s  out {r['out_bytes']:,} B{extra}",
                flush=True,
            )
    mem = run_child(
        SCRIPT, ["--child", "gzip", str(source), str(gz_out), str(base / "gzip.maxrss")]
    )
    gz_out.unlink()

    sec = {side: median(r["seconds"] for r in rows[side]) for side in SIDES}
    cpu = {side: median(r["cpu"] for r in rows[side]) for side in SIDES}
    size = {side: median(r["out_bytes"] for r in rows[side]) for side in SIDES}
    mib_s = {side: rate(n, sec[side]) for side in SIDES}
    print(
        f"\nmedians over {args.runs} runs    seconds     MiB/s   rate/gzip   CPU s   CPU/gzip"
        "   output bytes   ratio"
    )
    for side, label in (("ours", "ours (task)"), ("gzip", "gzip -6"), ("floor", "zlib floor")):
        print(
            f"  {label:18s} {sec[side]:8.3f} {mib_s[side]:9.1f} "
            f"{fmt_ratio(mib_s[side], mib_s['gzip']):>11s} {cpu[side]:7.3f} "
            f"{fmt_ratio(cpu[side], cpu['gzip']):>10s} {size[side]:14,.0f} {n / size[side]:6.2f}:1"
        )
    inside = median(r["compress"] for r in rows["ours"])
    fsyncs = median(r["fsync"] for r in rows["ours"])
    print(
        f"  ours, compress_archive alone {inside:.3f} s ({rate(n, inside):.1f} MiB/s), "
        f"of which fsync {fsyncs:.3f} s"
    )
    rate_ratio = ratio(mib_s["ours"], mib_s["gzip"])
    paired = [
        ratio(g["seconds"], o["seconds"]) for o, g in zip(rows["ours"], rows["gzip"], strict=True)
    ]
    print(
        "  rate ours / gzip per run (each pair run back to back): "
        + ", ".join(f"{x:.2f}x" for x in paired)
        + f"; median {median(paired):.2f}x"
    )
    size_ratio = ratio(size["ours"], size["gzip"])
    print(
        f"target rate ours / gzip -6 >= {TARGET_RATE:g}x: "
        + verdict(rate_ratio >= TARGET_RATE, f"{rate_ratio:.2f}x")
    )
    print(
        f"target size ours / gzip -6 <= {TARGET_SIZE:g}: "
        + verdict(size_ratio <= TARGET_SIZE, f"{size_ratio:.4f}, {(size_ratio - 1) * 100:+.2f} %")
    )
    ours_peak = [r["peak"] for r in rows["ours"]]
    print(
        f"peak RSS (VmHWM): ours {median(p['end'] for p in ours_peak):.1f} MiB at the end of the "
        f"task ({median(p['after_bootstrap'] for p in ours_peak):.1f} MiB after bootstrap); "
        f"zlib floor {median(r['maxrss_mib'] for r in rows['floor']):.1f} MiB; "
        f"gzip {mem['maxrss_mib']:.1f} MiB (/usr/bin/time, one extra untimed run)"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mb", type=float, default=None, help="input size in MiB (default 300)")
    p.add_argument("--runs", type=int, default=None, help="runs per side (default 5)")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated log")
    p.add_argument("--quick", action="store_true", help="64 MiB, 3 runs")
    add_work_args(p)
    args = p.parse_args(argv)
    if args.size_mb is None:
        args.size_mb = 64.0 if args.quick else 300.0
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    return args


def main(argv: list[str]) -> int:
    return bench_main(
        parse_args(argv),
        argv,
        script="benchmarks/bench_logs.py",
        title="log rotation: compression",
        children=CHILDREN,
        body=bench,
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
