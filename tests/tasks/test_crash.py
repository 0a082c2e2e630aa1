"""The crash test (DESIGN.md §3): kill -9 at random points loses no task and never runs one twice
at the same time; and two service processes on one database run each task exactly once.

A child process (crash_child.py, role service, two workers, a 1 s lease) runs ``journal``
tasks that write ``start``/``end`` lines to a journal file; the test writes ``kill <pid>``
there once it has killed (and reaped) a child. Replaying the journal in order shows whether a
task ever started while an earlier attempt of it was still running in a live process.

``UCORE_CRASH_KILLS`` sets the number of kills (default 20; try 200), ``UCORE_CRASH_TASKS``
the number of tasks (default 10 per kill), ``UCORE_CRASH_SEED`` replays a run (the seed is
printed).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from crash_child import TASK, append, child_config, journal_handler
from task_helpers import wait_until

from ucore.app import App, bootstrap
from ucore.stores.records import ACTIVE_STATES, RunRecord, TaskFilter, TaskState

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("crash_child.py")
LEASE_SECONDS = 1.0


class Children:
    """The child processes of one test; all of them are gone when the test ends."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.journal = tmp_path / "journal.log"
        self.journal.touch()
        self.log = tmp_path / "children.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: list[int] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UCORE_")}
        with self.log.open("ab") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(CHILD),
                    str(self.data_dir),
                    str(self.journal),
                    str(LEASE_SECONDS),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.poll() is None, f"child {proc.pid} died on its own:\n{self.log_tail()}"
        proc.kill()
        proc.wait()  # reaped: a zombie would still look alive to the next child
        append(str(self.journal), f"kill {proc.pid}\n")
        self.killed.append(proc.pid)

    def ready(self, proc: subprocess.Popen[bytes]) -> bool:
        return Path(f"{self.journal}.ready.{proc.pid}").exists()

    async def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM once it is ready (its handler installed); its exit code."""
        await wait_until(
            lambda: self.ready(proc) or proc.poll() is not None, within=10, what="ready"
        )
        proc.send_signal(signal.SIGTERM)
        return proc.wait(15)

    def journal_size(self) -> int:
        return self.journal.stat().st_size

    def journal_lines(self) -> list[list[str]]:
        return [line.split() for line in self.journal.read_text().splitlines() if line]

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@contextmanager
def children_of(tmp_path: Path) -> Iterator[Children]:
    children = Children(tmp_path)
    try:
        yield children
    finally:
        children.cleanup()


def replay(lines: list[list[str]]) -> tuple[list[str], set[tuple[int, int]]]:
    """Overlaps found in the journal, and the attempts that started but never ended."""
    running: dict[int, set[int]] = defaultdict(set)
    dead: set[int] = set()
    problems: list[str] = []
    for n, (kind, *rest) in enumerate(lines, 1):
        if kind == "kill":
            dead.add(int(rest[0]))
            continue
        task_id, pid = int(rest[0]), int(rest[1])
        if kind == "start":
            live = running[task_id] - dead
            if live:
                problems.append(
                    f"line {n}: task {task_id} started in {pid} while running in {sorted(live)}"
                )
            running[task_id].add(pid)
        elif kind == "end":
            if pid not in running[task_id]:
                problems.append(f"line {n}: task {task_id} ended in {pid} without a start")
            running[task_id].discard(pid)
        else:
            problems.append(f"line {n}: unknown line {kind} {rest}")
    open_attempts = {(t, p) for t, pids in running.items() for p in pids}
    return problems, open_attempts


async def client_app(children: Children) -> App:
    app = await bootstrap(child_config(children.data_dir, LEASE_SECONDS), role="client")
    # for submit's validation only: a client never runs tasks
    app.tasks.register(TASK, journal_handler(str(children.journal)))
    return app


async def active_count(app: App) -> int:
    return len(await app.tasks.store.list_tasks(TaskFilter(states=ACTIVE_STATES, limit=100_000)))


async def all_runs(app: App) -> dict[int, list[RunRecord]]:
    by_task: dict[int, list[RunRecord]] = defaultdict(list)
    for run in reversed(await app.tasks.history(limit=1_000_000)):
        by_task[run.task_id].append(run)
    return by_task


async def test_kill_9_at_random_points_loses_nothing_and_never_overlaps(tmp_path: Path) -> None:
    kills = int(os.environ.get("UCORE_CRASH_KILLS", "20"))
    seed = int(os.environ.get("UCORE_CRASH_SEED", str(random.randrange(1 << 31))))
    print(f"crash test: {kills} kills, UCORE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    # enough work that every kill finds tasks running (a child gets through about 8 per life)
    n_tasks = int(os.environ.get("UCORE_CRASH_TASKS", str(max(60, 10 * kills))))
    with children_of(tmp_path) as children:
        app = await client_app(children)
        try:
            ids = [await app.tasks.submit(TASK, {"n": i}) for i in range(n_tasks)]
            t0 = time.monotonic()
            left: list[int] = []  # tasks not finished at each kill
            for _ in range(kills):
                proc = children.spawn()
                if rng.random() < 0.25:
                    # anywhere: while it imports, migrates, recovers, claims or works
                    await asyncio.sleep(rng.uniform(0.0, 0.6))
                else:
                    # once it works (or there is nothing left to do), at a random moment
                    size = children.journal_size()

                    async def working(proc: Any = proc, size: int = size) -> bool:
                        return (
                            children.journal_size() > size
                            or proc.poll() is not None
                            or await active_count(app) == 0
                        )

                    await wait_until(working, within=10, what="the child to start working")
                    await asyncio.sleep(rng.uniform(0.0, 0.25))
                left.append(await active_count(app))
                children.kill(proc)
            kill_phase = time.monotonic() - t0

            final = children.spawn()

            async def all_done() -> bool:
                assert final.poll() is None, f"final child died:\n{children.log_tail()}"
                return await active_count(app) == 0

            await wait_until(all_done, within=30, interval=0.1, what="every task to finish")
            assert await children.stop(final) == 0, children.log_tail()

            # -- nothing lost ---------------------------------------------------------------
            records = {r.id: r for r in await app.tasks.list_tasks(limit=100_000)}
            assert sorted(records) == sorted(ids)
            not_done = {
                i: r.state.value for i, r in records.items() if r.state is not TaskState.COMPLETED
            }
            assert not not_done, f"tasks not completed: {not_done}"
            assert await app.tasks.store.integrity_check() == []

            # -- run history: interrupted attempts (by the kills only), then one completion --
            killed = set(children.killed)
            runs = await all_runs(app)
            spawned = {proc.pid for proc in children.procs}
            interrupted_rows: list[tuple[int, int]] = []
            for task_id in ids:
                task_runs = runs[task_id]
                outcomes = [r.outcome.value if r.outcome else None for r in task_runs]
                assert outcomes[-1] == "completed", (task_id, outcomes)
                assert set(outcomes[:-1]) <= {"interrupted"}, (task_id, outcomes)
                record = records[task_id]
                assert record.interruptions == len(outcomes) - 1 == record.attempts - 1
                assert record.failures == 0
                for run in task_runs[:-1]:
                    assert run.pid in killed, f"task {task_id}: {run} was not killed"
                    interrupted_rows.append((task_id, run.pid or 0))
                assert task_runs[-1].pid in spawned, task_runs[-1]
            interrupted = set(interrupted_rows)
            assert len(interrupted) == len(interrupted_rows)  # one per task and killed process
            assert len(interrupted) <= 2 * kills  # two workers per killed process

            # -- the journal: no overlap; what a kill cut short is an interrupted attempt ----
            lines = children.journal_lines()
            problems, open_attempts = replay(lines)
            assert problems == [], "\n".join(problems[:20])
            assert {pid for _, pid in open_attempts} <= killed, open_attempts
            assert open_attempts <= interrupted, open_attempts - interrupted
            ends = Counter(
                (int(t), int(p))
                for kind, t, p, *_ in (line for line in lines if line[0] != "kill")
                if kind == "end"
            )
            for task_id in ids:
                done = runs[task_id][-1]
                assert ends[(task_id, done.pid or 0)] >= 1, f"task {task_id}: no journal end"

            # -- nodes: the dead ones were cleaned up, the final child removed its own --------
            nodes = await app.tasks.nodes(live_only=False)
            assert [n.id for n in nodes] == [app.ctx.node_id]

            print(
                f"crash test: {kills} kills in {kill_phase:.1f} s, {len(interrupted)} attempts "
                f"interrupted, {n_tasks} tasks completed; tasks left at each kill: {left}"
            )
            hits = sum(1 for n in left if n > 0)
            assert len(interrupted) >= hits // 3, "the kills hardly hit running tasks"
        finally:
            await app.shutdown()


async def test_two_services_on_one_database_run_each_task_exactly_once(tmp_path: Path) -> None:
    n_tasks = 40
    with children_of(tmp_path) as children:
        app = await client_app(children)
        try:
            procs = [children.spawn(), children.spawn()]

            async def both_up() -> bool:
                nodes = await app.tasks.nodes()
                return sum(1 for n in nodes if n.role == "service") == 2

            await wait_until(both_up, within=15, interval=0.05, what="two services")
            # all due at one moment, so that both processes compete for them at once
            due = app.ctx.clock.now() + timedelta(seconds=1.5)
            ids = [await app.tasks.submit(TASK, {"n": i}, not_before=due) for i in range(n_tasks)]

            async def all_done() -> bool:
                for proc in procs:
                    assert proc.poll() is None, f"a child died:\n{children.log_tail()}"
                return await active_count(app) == 0

            await wait_until(all_done, within=30, interval=0.1, what="every task to finish")
            for proc in procs:
                assert await children.stop(proc) == 0, children.log_tail()

            records = await app.tasks.list_tasks(limit=1000)
            assert len(records) == n_tasks
            assert all(r.state is TaskState.COMPLETED for r in records)
            runs = await all_runs(app)
            pids = {proc.pid for proc in procs}
            for task_id in ids:
                assert [r.outcome.value if r.outcome else None for r in runs[task_id]] == [
                    "completed"
                ], (runs[task_id], children.log_tail())
                assert runs[task_id][0].pid in pids

            lines = children.journal_lines()
            problems, open_attempts = replay(lines)
            assert problems == [] and open_attempts == set(), problems
            starts = Counter(int(t) for kind, t, _ in lines if kind == "start")
            ends = Counter(int(t) for kind, t, _ in lines if kind == "end")
            assert starts == ends == Counter(dict.fromkeys(ids, 1))
            workers = Counter(int(p) for kind, _, p in lines if kind == "start")
            print(f"two services: tasks per process {dict(workers)}")
            assert set(workers) == pids, "both processes should have taken tasks"
            assert await app.tasks.store.integrity_check() == []
        finally:
            await app.shutdown()
