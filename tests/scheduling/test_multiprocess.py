"""Four real services on one SQLite database: one task per due time (DESIGN.md §4).

Four ``ucore run --no-live`` processes share a data dir whose config has a one-second
schedule. They run for about six seconds of real time and are stopped with SIGTERM. Every due
time must have yielded exactly one task: the tasks' submission times are about a second apart
(never two within half a second) and their number is the number of due times that passed
(give or take one at the edges).

This is the one scheduling test that uses real time: it checks the real processes, the real
clock and the real database locking together.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ucore.app import bootstrap
from ucore.foundation.config import LoadedConfig, parse_config
from ucore.foundation.system import Role
from ucore.stores.records import TaskRecord, TaskState

pytestmark = pytest.mark.slow

PROCESSES = 4
RUN_SECONDS = 6.0
CONFIG = {
    "maintenance": {
        "schedule": {"tick": {"task": "sleep", "interval_seconds": 1, "seconds": 0.05}}
    },
    "tasks": {"workers": 2},
}


async def _service_pids(config: LoadedConfig) -> set[int]:
    """The pids of the live service nodes, read through a client app."""
    client = await bootstrap(config, role=Role.CLIENT)
    try:
        return {n.pid for n in await client.tasks.nodes() if n.role == "service"}
    finally:
        await client.shutdown()


async def _tick_tasks(config: LoadedConfig) -> list[TaskRecord]:
    client = await bootstrap(config, role=Role.CLIENT)
    try:
        found = await client.tasks.list_tasks(limit=10_000)
    finally:
        await client.shutdown()
    return sorted((t for t in found if t.origin == "schedule:tick"), key=lambda t: t.submitted_at)


def test_four_services_fire_each_due_time_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "config.json").write_text(json.dumps(CONFIG))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UCORE_", "XDG_"))}
    env["HOME"] = str(home)
    ucore = Path(sys.executable).parent / "ucore"
    assert ucore.is_file(), ucore

    config = parse_config(CONFIG, data_dir=data_dir, env={})
    procs = [
        subprocess.Popen(
            [str(ucore), "--data-dir", str(data_dir), "run", "--no-live"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        # all four are up (registered as live service nodes) before the clock starts
        deadline = time.monotonic() + 10
        while (pids := asyncio.run(_service_pids(config))) != {p.pid for p in procs}:
            dead = [p.returncode for p in procs if p.poll() is not None]
            assert not dead, f"a service exited early: {dead}"
            assert time.monotonic() < deadline, f"only {len(pids)} services came up"
            time.sleep(0.1)
        time.sleep(RUN_SECONDS)
        stopped_at = datetime.now(UTC)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        errors = [p.communicate(timeout=20)[1] for p in procs]
    for p, err in zip(procs, errors, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err, err

    tasks = asyncio.run(_tick_tasks(config))
    times = [t.submitted_at for t in tasks]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(times) >= RUN_SECONDS - 1, times
    assert min(gaps) > 0.5, f"two tasks for one due time: gaps {gaps}"
    assert max(gaps) < 2.1, f"a due time without a task: gaps {gaps}"
    assert statistics.median(gaps) == pytest.approx(1.0, abs=0.1), gaps

    # the due times that passed: the first fire, then one a second until SIGTERM
    due_times = int((stopped_at - times[0]).total_seconds()) + 1
    assert abs(len(times) - due_times) <= 1, (len(times), due_times, times)

    # every task ran (the last one may have been stopped by the shutdown and re-queued)
    done = [t for t in tasks if t.state is TaskState.COMPLETED]
    assert len(done) >= len(tasks) - 1, [t.state for t in tasks]

    # each fire was logged by exactly one of the processes
    fired = [
        int(line.rsplit(" ", 1)[1])
        for err in errors
        for line in err.splitlines()
        if "schedule tick fired: task " in line
    ]
    assert sorted(fired) == sorted(t.id for t in tasks)
    print(f"tasks {len(tasks)}, due times {due_times}, gaps {[round(g, 3) for g in gaps]}")
    print("fires per process:", [e.count("schedule tick fired: task ") for e in errors])
