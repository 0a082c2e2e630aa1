"""Submit-to-start latency with idle workers: ucore vs Huey, in-process and cross-process.

A sample is ``time.perf_counter()`` just before the submit call to ``time.perf_counter()``
on the handler's first line. ``perf_counter`` is CLOCK_MONOTONIC on Linux, one clock for
every process of the machine, so cross-process samples are comparable.

* **in-process**: the submitter and 2 idle workers share one process. ucore:
  ``bootstrap(role="client")``, register an ``async`` no-op handler,
  ``await app.tasks.start_workers()``, then ``await app.tasks.submit(...)`` from the same
  loop (the submit wakes the claim loop through an ``asyncio.Event``). Huey: ``SqliteHuey``
  with its consumer (2 thread workers) started in the same process, the task called from
  the main thread (its idle workers poll the queue: 0.1 s, growing ×1.15 per empty poll,
  Huey's defaults).
* **cross-process**: a service process with 2 idle workers and a separate client process
  that submits. ucore's service learns of another process's commit by reading ``PRAGMA
  data_version`` once a second while idle (docs/service.md), so expect ~0.5 s median, ~1 s
  worst. Huey's consumer polls the same way as in-process.

Samples are spaced ``--spacing`` apart (default 20 ms, on a fixed grid). Both queues run in
WAL mode with ``synchronous`` = ``--sync`` (default FULL, ucore's default).

    python benchmarks/bench_latency.py              # 200 samples, 5 alternating runs
    python benchmarks/bench_latency.py --quick      # smoke run (< 30 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    load_line,
    make_tmp,
    median,
    percentile,
    print_header,
    ratio,
    run_child,
    snapshot_src,
)

TARGET_P50_MS = 10.0
SERIES = ("in-process", "cross-process")


def _ucore_config(data: Path, sync: str) -> Any:
    from ucore.foundation.config.loader import parse_config

    raw = {"database": {"synchronous": sync}, "tasks": {"workers": 2}}
    return parse_config(raw, data_dir=data, config_file=data / "config.json", env={})


def _register_recorder(app: Any, starts: dict[int, float], handler: str) -> None:
    if handler == "async":

        async def noop(ctx: Any) -> dict[str, bool]:
            starts[ctx.task_id] = time.perf_counter()
            return {"ok": True}

        app.tasks.register("noop", noop)
    else:

        def noop_sync(ctx: Any) -> dict[str, bool]:
            starts[ctx.task_id] = time.perf_counter()
            return {"ok": True}

        app.tasks.register("noop", noop_sync)


async def _paced(n: int, spacing: float, submit: Any) -> dict[str, float]:
    """Call ``await submit()`` n times on a fixed grid; {id: perf_counter before the call}."""
    sent: dict[str, float] = {}
    t0 = time.perf_counter() + spacing
    for i in range(n):
        delay = t0 + i * spacing - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        before = time.perf_counter()
        key = await submit(i)
        sent[str(key)] = before
    return sent


async def _wait_for(starts: dict[Any, float], n: int, within: float) -> None:
    """Until the handler recorded n starts (or ``within`` seconds passed)."""
    deadline = time.monotonic() + within
    while len(starts) < n and time.monotonic() < deadline:  # noqa: ASYNC110 (benchmark idle)
        await asyncio.sleep(0.01)


# -- ucore ----------------------------------------------------------------------------------
def child_ucore_inproc(args: argparse.Namespace) -> dict[str, Any]:
    from ucore.app import bootstrap

    async def main() -> dict[str, Any]:
        app = await bootstrap(_ucore_config(Path(args.dir), args.sync), role="client")
        starts: dict[int, float] = {}
        _register_recorder(app, starts, args.handler)
        await app.tasks.start_workers()
        await asyncio.sleep(args.settle)
        submit_s: list[float] = []

        async def submit(i: int) -> int:
            t = time.perf_counter()
            tid = await app.tasks.submit("noop", {})
            submit_s.append(time.perf_counter() - t)
            return tid

        sent = await _paced(args.samples, args.spacing, submit)
        await _wait_for(starts, args.samples, 10.0)
        await app.shutdown()
        lat = [starts[int(k)] - v for k, v in sent.items() if int(k) in starts]
        return {"latencies": lat, "missing": args.samples - len(lat), "submit_call": submit_s}

    return asyncio.run(main())


def child_ucore_service(args: argparse.Namespace) -> dict[str, Any]:
    """The service side of the cross-process series: idle workers, record handler starts."""
    from ucore.app import bootstrap

    async def main() -> dict[str, Any]:
        app = await bootstrap(_ucore_config(Path(args.dir), args.sync), role="client")
        starts: dict[int, float] = {}
        _register_recorder(app, starts, args.handler)
        await app.tasks.start_workers()
        print("READY", flush=True)
        await _wait_for(starts, args.samples, args.samples * args.spacing + 30)
        await app.shutdown()
        return {"starts": {str(k): v for k, v in starts.items()}}

    return asyncio.run(main())


def child_ucore_client(args: argparse.Namespace) -> dict[str, Any]:
    from ucore.app import bootstrap

    async def main() -> dict[str, Any]:
        app = await bootstrap(_ucore_config(Path(args.dir), args.sync), role="client")
        _register_recorder(app, {}, args.handler)  # a client validates what it submits

        async def submit(i: int) -> int:
            return await app.tasks.submit("noop", {})

        sent = await _paced(args.samples, args.spacing, submit)
        await app.shutdown()
        return {"sent": sent}

    return asyncio.run(main())


# -- huey -----------------------------------------------------------------------------------
def _huey(args: argparse.Namespace, starts: dict[int, float] | None) -> tuple[Any, Any]:
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    sync = args.sync

    class Storage(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> sqlite3.Connection:
            conn = super()._create_connection()
            conn.execute(f"PRAGMA synchronous = {sync}")
            return conn

    class Huey(SqliteHuey):  # type: ignore[misc]
        storage_class = Storage

    huey = Huey("bench", filename=str(Path(args.dir) / "huey.db"))
    record = starts if starts is not None else {}

    @huey.task()  # type: ignore[misc]
    def noop(seq: int) -> dict[str, bool]:
        record[seq] = time.perf_counter()
        return {"ok": True}

    return huey, noop


def _huey_submit(noop: Any, args: argparse.Namespace) -> dict[str, float]:
    sent: dict[str, float] = {}
    t0 = time.perf_counter() + args.spacing
    for i in range(args.samples):
        delay = t0 + i * args.spacing - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[str(i)] = time.perf_counter()
        noop(i)
    return sent


def _huey_wait(starts: dict[int, float], n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(starts) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def child_huey_inproc(args: argparse.Namespace) -> dict[str, Any]:
    starts: dict[int, float] = {}
    huey, noop = _huey(args, starts)
    consumer = huey.create_consumer(workers=2, worker_type="thread")
    consumer.start()
    time.sleep(args.settle)
    sent = _huey_submit(noop, args)
    _huey_wait(starts, args.samples, 30.0)
    consumer.stop(graceful=True)
    lat = [starts[int(k)] - v for k, v in sent.items() if int(k) in starts]
    return {"latencies": lat, "missing": args.samples - len(lat)}


def child_huey_service(args: argparse.Namespace) -> dict[str, Any]:
    starts: dict[int, float] = {}
    huey, _ = _huey(args, starts)
    consumer = huey.create_consumer(workers=2, worker_type="thread")
    consumer.start()
    print("READY", flush=True)
    _huey_wait(starts, args.samples, args.samples * args.spacing + 60)
    consumer.stop(graceful=True)
    return {"starts": {str(k): v for k, v in starts.items()}}


def child_huey_client(args: argparse.Namespace) -> dict[str, Any]:
    _, noop = _huey(args, None)
    return {"sent": _huey_submit(noop, args)}


CHILDREN = {
    "ucore-in-process": child_ucore_inproc,
    "ucore-service": child_ucore_service,
    "ucore-client": child_ucore_client,
    "huey-in-process": child_huey_inproc,
    "huey-service": child_huey_service,
    "huey-client": child_huey_client,
}


# -- parent ---------------------------------------------------------------------------------
def _common_args(args: argparse.Namespace, d: Path) -> list[str]:
    return [
        "--dir",
        str(d),
        "--samples",
        str(args.samples),
        "--spacing",
        str(args.spacing),
        "--sync",
        args.sync,
        "--handler",
        args.handler,
        "--settle",
        str(args.settle),
    ]


def run_in_process(script: Path, side: str, args: argparse.Namespace, d: Path) -> dict[str, Any]:
    return run_child(script, ["--child", f"{side}-in-process", *_common_args(args, d)])


def run_cross_process(script: Path, side: str, args: argparse.Namespace, d: Path) -> dict[str, Any]:
    service = subprocess.Popen(
        [sys.executable, str(script), "--child", f"{side}-service", *_common_args(args, d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert service.stdout is not None
        line = service.stdout.readline()
        if line.strip() != "READY":
            raise SystemExit(f"{side} service did not start: {line}{service.stderr.read()}")  # type: ignore[union-attr]
        time.sleep(args.settle)  # idle workers
        sent = run_child(script, ["--child", f"{side}-client", *_common_args(args, d)])["sent"]
        out, err = service.communicate(timeout=args.samples * args.spacing + 90)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if service.returncode != 0 or not lines:
        raise SystemExit(f"{side} service failed: {err[-3000:]}")
    starts = json.loads(lines[-1])["starts"]
    lat = [starts[k] - v for k, v in sent.items() if k in starts]
    return {"latencies": lat, "missing": args.samples - len(lat)}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", "--tasks", type=int, default=None, help="submits per run (200)")
    p.add_argument("--runs", type=int, default=None, help="runs per side and series (5)")
    p.add_argument("--spacing", type=float, default=0.02, help="seconds between submits (0.02)")
    p.add_argument("--sync", default="FULL", choices=("FULL", "NORMAL"))
    p.add_argument("--handler", choices=("async", "sync"), default="async", help="ucore handler")
    p.add_argument("--series", default=",".join(SERIES), help="in-process,cross-process")
    p.add_argument("--settle", type=float, default=1.5, help="idle seconds before submitting")
    p.add_argument("--dir", type=Path, default=None, help="where the databases go (default TMP)")
    p.add_argument("--keep", action="store_true")
    p.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import the live src tree instead of a copy taken at the start",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 40 samples, 3 runs")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.samples is None:
        args.samples = 40 if args.quick else 200
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    if args.quick and "--settle" not in " ".join(argv):
        args.settle = 0.5
    return args


def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    series = [s.strip() for s in args.series.split(",") if s.strip()]
    base = make_tmp(args.dir, "ucore-bench-latency-")
    if args.snapshot:
        snapshot_src(base)
    print_header("submit-to-start latency with idle workers (ms, lower is better)", sys.argv, base)
    print(
        f"samples per run: {args.samples} spaced {args.spacing * 1000:g} ms, runs: {args.runs}, "
        f"synchronous={args.sync}, ucore handler: {args.handler}, 2 workers each, "
        f"idle {args.settle:g} s before the first submit\n"
    )
    script = Path(__file__).resolve()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for run in range(1, args.runs + 1):
            for s in series:
                for side in ("ucore", "huey"):
                    d = base / f"{side}-{s}-{run}"
                    d.mkdir()
                    if s == "in-process":
                        r = run_in_process(script, side, args, d)
                    else:
                        r = run_cross_process(script, side, args, d)
                    cleanup(d, args.keep)
                    lat = _ms(r["latencies"])
                    r["p50"], r["p99"] = percentile(lat, 50), percentile(lat, 99)
                    results.setdefault((side, s), []).append(r)
                    extra = ""
                    if r.get("submit_call"):
                        extra = f"  (submit() call p50 {percentile(_ms(r['submit_call']), 50):.2f})"
                    miss = f"  MISSING {r['missing']}" if r["missing"] else ""
                    print(
                        f"run {run} {s:13s} {side:5s}: p50 {r['p50']:8.2f}  p99 {r['p99']:8.2f}  "
                        f"max {max(lat):8.2f}  min {min(lat):7.2f}{extra}{miss}",
                        flush=True,
                    )
    finally:
        cleanup(base, args.keep)

    print(f"\n== medians over {args.runs} runs (and percentiles of all samples pooled)")
    for s in series:
        print(s)
        meds: dict[str, tuple[float, float]] = {}
        for side in ("ucore", "huey"):
            rs = results[(side, s)]
            pooled = [x for r in rs for x in _ms(r["latencies"])]
            meds[side] = (median(r["p50"] for r in rs), median(r["p99"] for r in rs))
            print(
                f"  {side:5s}: p50 {meds[side][0]:8.2f} ms  p99 {meds[side][1]:8.2f} ms   "
                f"(pooled {len(pooled)} samples: p50 {percentile(pooled, 50):.2f}, "
                f"p99 {percentile(pooled, 99):.2f}, max {max(pooled):.2f})"
            )
        print(
            f"  ratio ucore/huey: p50 {ratio(meds['ucore'][0], meds['huey'][0]):.3f}x  "
            f"p99 {ratio(meds['ucore'][1], meds['huey'][1]):.3f}x  (< 1: ucore starts sooner)"
        )
        if s == "in-process":
            p50 = meds["ucore"][0]
            verdict = (
                f"met ({p50:.2f} ms, {TARGET_P50_MS / p50:.1f}x under)"
                if p50 < TARGET_P50_MS
                else f"MISSED by {p50 - TARGET_P50_MS:.2f} ms"
            )
            print(f"  target ucore in-process p50 < {TARGET_P50_MS:g} ms: {verdict}")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
