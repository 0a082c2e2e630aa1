"""Firing lateness of a 1 s schedule while every worker slot runs CPU-bound Python: ucore vs
APScheduler 3.

Both sides run one process on ``asyncio`` with **two threads spinning pure-Python loops** for
the whole run (they hold the GIL and give it up only when the interpreter forces a switch,
every ``sys.getswitchinterval()`` = 5 ms), and a schedule due every second. Lateness of a due
time = when the scheduler acted on it minus the nominal due time (wall clock, ``time.time()``).

* **ucore**: ``bootstrap(role="service")`` (what ``ucore run`` starts) with the config
  ``{"tasks": {"workers": 2}, "maintenance": {"schedule": {<the six defaults, each
  {"enabled": false}>, "tick": {"task": "sleep", "interval_seconds": 1, "seconds": 0}}}}``
  (written to the config file, which the scheduler watches). A sync handler ``spin`` is
  registered and submitted twice at high priority; ucore runs each sync task in a thread of
  its own, so both slots are taken by spinning threads for the whole run. The tick tasks
  (low priority) then stay pending, and nearly every due time is a *skip* ("previous run still
  pending") — a fire or a skip is the scheduler's decision at that due time, written to the
  database with the next due time. Per due time two figures:

  * **event**: ``time.time()`` in a subscriber of ``schedule.fired`` / ``schedule.skipped``
    (published after the decision's write has committed) minus the due time;
  * **decided**: the ``now`` the scheduler itself stored with the decision
    (``schedule_state.last_fire`` / ``last_skip_at``) minus the due time.

  The due time of each decision is the ``nominal_next`` stored by the decision before it
  (read right after each event; a decision that does not follow its predecessor's stored
  due time is counted as ``grid breaks`` and left out).
* **apscheduler**: APScheduler 3's ``AsyncIOScheduler`` with one ``interval`` job of 1 s
  (an async no-op; memory job store; ``misfire_grace_time`` 1 s, the default) and two
  ``threading.Thread`` spinning the same loop. Lateness = ``time.time()`` in a listener of
  ``EVENT_JOB_SUBMITTED`` (also ``EVENT_JOB_MISSED`` / ``EVENT_JOB_MAX_INSTANCES``, so a late
  run is never dropped from the figures) minus each of the event's ``scheduled_run_times``.

The first ``--warmup`` seconds after the spinners start are not measured. ``--spinners 0``
measures the same without GIL contention (ucore's tick tasks then fire and run);
``--switch-interval MS`` sets ``sys.setswitchinterval`` in both children. Sides alternate
(ucore, apscheduler, ucore, ...), each run in a fresh process. Target: ucore p99 < 50 ms.

    python benchmarks/bench_lateness.py           # 5 alternating runs of 15 s per side
    python benchmarks/bench_lateness.py --quick   # smoke run: 3 runs of 4 s per side
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    cleanup,
    fmt_ratio,
    load_line,
    make_tmp,
    median,
    percentile,
    print_header,
    run_child,
    snapshot_src,
)

TARGET_P99_MS = 50.0
SIDES = ("ucore", "apscheduler")
DEFAULT_SCHEDULES = (
    "background_verification",
    "database_optimization",
    "cache_cleanup",
    "orphaned_cleanup",
    "log_rotation",
    "database_cleanup",
)


def spin(stop: threading.Event) -> int:
    """Pure-Python work until ``stop`` is set; returns the number of inner rounds."""
    rounds = 0
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i
        rounds += 1
    return rounds


# -- ucore ----------------------------------------------------------------------------------
def ucore_raw_config() -> dict[str, Any]:
    schedules: dict[str, Any] = {name: {"enabled": False} for name in DEFAULT_SCHEDULES}
    schedules["tick"] = {"task": "sleep", "interval_seconds": 1, "seconds": 0}
    return {"tasks": {"workers": 2}, "maintenance": {"schedule": schedules}}


def child_ucore(args: argparse.Namespace) -> dict[str, Any]:
    from ucore.app import bootstrap
    from ucore.foundation.config.loader import parse_config

    data = Path(args.dir)
    raw = ucore_raw_config()
    config_file = data / "config.json"
    config_file.write_text(json.dumps(raw))
    stop = threading.Event()

    def spin_handler(ctx: Any) -> dict[str, int]:
        # until the benchmark's signal or any stop request (shutdown, cancel)
        return {"rounds": _spin_until(stop, ctx)}

    async def main() -> dict[str, Any]:
        cfg = parse_config(raw, data_dir=data, config_file=config_file, env={})
        app = await bootstrap(cfg, role="service")
        loop = asyncio.get_running_loop()
        store = app.tasks.store
        app.tasks.register("spin", spin_handler)
        started: set[int] = set()
        spinning = asyncio.Event()
        records: list[dict[str, Any]] = []
        reads: set[asyncio.Task[None]] = set()
        measuring = [False]

        def on_started(event: Any) -> None:
            if event.data.get("name") == "spin":
                started.add(event.data["task_id"])
                if len(started) == args.spinners:
                    spinning.set()

        async def read_state(rec: dict[str, Any]) -> None:
            state = (await store.schedule_states())["tick"]
            rec["nominal_next"] = state.nominal_next.timestamp() if state.nominal_next else None
            decided = state.last_fire if rec["kind"] == "fired" else state.last_skip_at
            rec["decided"] = decided.timestamp() if decided else None

        def on_schedule(event: Any) -> None:
            t = time.time()
            if not measuring[0] or event.data.get("name") != "tick":
                return
            rec: dict[str, Any] = {"t": t, "kind": event.kind.split(".", 1)[1]}
            records.append(rec)
            task = loop.create_task(read_state(rec))
            reads.add(task)
            task.add_done_callback(reads.discard)

        app.ctx.events.subscribe(on_started, "task.started")
        app.ctx.events.subscribe(on_schedule, "schedule.")
        for _ in range(args.spinners):
            await app.tasks.submit("spin", {}, priority="high")
        if args.spinners:
            await asyncio.wait_for(spinning.wait(), 30)
        t_spin = time.time()
        measuring[0] = True
        await asyncio.sleep(args.warmup + args.seconds + 0.5)
        measuring[0] = False
        if reads:
            await asyncio.wait(set(reads), timeout=10)
        stop.set()
        await app.shutdown()
        lateness, decided, breaks, kinds = [], [], 0, {"fired": 0, "skipped": 0}
        t_from, t_to = t_spin + args.warmup, t_spin + args.warmup + args.seconds
        for prev, rec in itertools.pairwise(records):
            due = prev.get("nominal_next")
            if due is None or not (t_from <= due < t_to):
                continue
            # a state read that came after the next decision would pair it with a later
            # due time: the decision then precedes its "due time"
            d = rec.get("decided")
            if d is None or d < due:
                breaks += 1
                continue
            kinds[rec["kind"]] += 1
            lateness.append(rec["t"] - due)
            decided.append(d - due)
        return {
            "lateness": lateness,
            "decided": decided,
            "grid_breaks": breaks,
            "kinds": kinds,
            "spin_rounds_per_s": _spin_rate(),
        }

    return asyncio.run(main())


_SPUN: list[tuple[int, float]] = []
_SPUN_LOCK = threading.Lock()


def _spin_until(stop: threading.Event, ctx: Any) -> int:
    t0 = time.perf_counter()
    rounds = 0
    x = 0
    while not stop.is_set() and not ctx.stop_requested:
        for i in range(1000):
            x += i
        rounds += 1
    with _SPUN_LOCK:
        _SPUN.append((rounds, time.perf_counter() - t0))
    return rounds


def _spin_rate() -> float:
    with _SPUN_LOCK:
        return sum(r / s for r, s in _SPUN if s > 0)


# -- APScheduler 3 --------------------------------------------------------------------------
def child_apscheduler(args: argparse.Namespace) -> dict[str, Any]:
    from apscheduler.events import (
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        EVENT_JOB_SUBMITTED,
    )
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    stop = threading.Event()
    spun: list[tuple[int, float]] = []

    def spinner() -> None:
        t0 = time.perf_counter()
        rounds = spin(stop)
        spun.append((rounds, time.perf_counter() - t0))

    async def noop() -> None:
        return None

    async def main() -> dict[str, Any]:
        threads = [threading.Thread(target=spinner, name=f"spin-{i}") for i in range(args.spinners)]
        for th in threads:
            th.start()
        t_spin = time.time()
        records: list[tuple[float, float, str]] = []
        names = {
            EVENT_JOB_SUBMITTED: "submitted",
            EVENT_JOB_MISSED: "missed",
            EVENT_JOB_MAX_INSTANCES: "max_instances",
        }

        def listener(event: Any) -> None:
            t = time.time()
            times = getattr(event, "scheduled_run_times", None) or [event.scheduled_run_time]
            for due in times:
                records.append((t, due.timestamp(), names.get(event.code, str(event.code))))

        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_listener(
            listener, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        scheduler.add_job(noop, "interval", seconds=1, id="tick")
        scheduler.start()
        await asyncio.sleep(args.warmup + args.seconds + 1.5)
        scheduler.shutdown(wait=False)
        stop.set()
        for th in threads:
            th.join()
        t_from, t_to = t_spin + args.warmup, t_spin + args.warmup + args.seconds
        kinds: dict[str, int] = {}
        lateness = []
        for t, due, kind in records:
            if t_from <= due < t_to:
                kinds[kind] = kinds.get(kind, 0) + 1
                lateness.append(t - due)
        return {
            "lateness": lateness,
            "kinds": kinds,
            "spin_rounds_per_s": sum(r / s for r, s in spun if s > 0),
        }

    return asyncio.run(main())


CHILDREN = {"ucore": child_ucore, "apscheduler": child_apscheduler}


# -- parent ---------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=None, help="measured seconds per run (15)")
    p.add_argument("--runs", type=int, default=None, help="runs per side (5)")
    p.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds first (1.5)")
    p.add_argument(
        "--spinners", type=int, default=2, help="spinning threads (2; 0: no GIL contention)"
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        metavar="MS",
        help="sys.setswitchinterval in both children (default: Python's 5 ms)",
    )
    p.add_argument("--dir", type=Path, default=None, help="where the databases go (default TMP)")
    p.add_argument("--keep", action="store_true")
    p.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import the live src tree instead of a copy taken at the start",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 3 runs of 4 s per side")
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 4.0 if args.quick else 15.0
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    return args


def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        if args.switch_interval is not None:
            sys.setswitchinterval(args.switch_interval / 1000)
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    base = make_tmp(args.dir, "ucore-bench-lateness-")
    if args.snapshot:
        snapshot_src(base)
    switch = (
        args.switch_interval if args.switch_interval is not None else sys.getswitchinterval() * 1e3
    )
    print_header("firing lateness of a 1 s schedule, all slots CPU-bound (ms)", sys.argv, base)
    print(
        f"measured: {args.seconds:g} s per run after {args.warmup:g} s warm-up, runs: "
        f"{args.runs} per side (alternating), {args.spinners} spinning threads per process, "
        f"switch interval {switch:g} ms\n"
    )
    script = Path(__file__).resolve()
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
    try:
        for run in range(1, args.runs + 1):
            for side in SIDES:
                d = base / f"{side}-{run}"
                d.mkdir()
                child_args = ["--child", side, "--dir", str(d)]
                child_args += ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
                child_args += ["--spinners", str(args.spinners)]
                if args.switch_interval is not None:
                    child_args += ["--switch-interval", str(args.switch_interval)]
                r = run_child(script, child_args, timeout=args.seconds + 120)
                cleanup(d, args.keep)
                lat = _ms(r["lateness"])
                if not lat:
                    raise SystemExit(f"{side} run {run}: no due time measured: {r}")
                r["p50"], r["p99"], r["max"] = percentile(lat, 50), percentile(lat, 99), max(lat)
                results[side].append(r)
                extra = ""
                if side == "ucore":
                    dec = _ms(r["decided"])
                    r["decided_p50"], r["decided_p99"] = percentile(dec, 50), percentile(dec, 99)
                    extra = (
                        f"  decided p50 {r['decided_p50']:6.2f} p99 {r['decided_p99']:6.2f}"
                        f"  grid breaks {r['grid_breaks']}"
                    )
                print(
                    f"run {run} {side:11s}: n {len(lat):3d}  p50 {r['p50']:7.2f}  "
                    f"p99 {r['p99']:7.2f}  max {r['max']:7.2f}  min {min(lat):6.2f}{extra}  "
                    f"{r['kinds']}  spinner rounds/s {r['spin_rounds_per_s']:.0f}",
                    flush=True,
                )
    finally:
        cleanup(base, args.keep)

    print(f"\n== medians over {args.runs} runs (and percentiles of all due times pooled)")
    meds: dict[str, tuple[float, float]] = {}
    for side in SIDES:
        rs = results[side]
        pooled = [x for r in rs for x in _ms(r["lateness"])]
        meds[side] = (median(r["p50"] for r in rs), median(r["p99"] for r in rs))
        print(
            f"  {side:11s}: p50 {meds[side][0]:7.2f} ms  p99 {meds[side][1]:7.2f} ms   "
            f"(pooled {len(pooled)} due times: p50 {percentile(pooled, 50):.2f}, "
            f"p99 {percentile(pooled, 99):.2f}, max {max(pooled):.2f}; spinner rounds/s "
            f"{median(r['spin_rounds_per_s'] for r in rs):.0f})"
        )
        if side == "ucore":
            dec = [x for r in rs for x in _ms(r["decided"])]
            print(
                f"  {'':11s}  decided (the scheduler's own now): p50 "
                f"{median(r['decided_p50'] for r in rs):.2f} ms, p99 "
                f"{median(r['decided_p99'] for r in rs):.2f} ms (pooled p99 "
                f"{percentile(dec, 99):.2f}, max {max(dec):.2f}); grid breaks "
                f"{sum(r['grid_breaks'] for r in rs)}"
            )
    u, a = meds["ucore"], meds["apscheduler"]
    print(
        f"  ratio ucore/apscheduler: p50 {fmt_ratio(u[0], a[0])}, p99 {fmt_ratio(u[1], a[1])}"
        "  (< 1: ucore is on time more closely)"
    )
    p99 = u[1]
    verdict = (
        f"met ({p99:.2f} ms, {TARGET_P99_MS / p99:.1f}x under)"
        if p99 < TARGET_P99_MS
        else f"MISSED by {p99 - TARGET_P99_MS:.2f} ms"
    )
    print(f"  target ucore p99 < {TARGET_P99_MS:g} ms: {verdict}")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
