"""``ucore status [--json] [--check]``: schedules, running tasks, live processes."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from ucore.app import App
from ucore.cli.output import err, iso, out, print_json
from ucore.cli.render import columns, when
from ucore.cli.session import open_app, run
from ucore.scheduling.scheduler import ScheduleStatus
from ucore.stores.records import TaskRecord, TaskState

FAILED_STATES = (TaskState.FAILED, TaskState.TIMED_OUT)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    status = sub.add_parser(
        "status", help="schedules, running tasks and live processes", parents=[common]
    )
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--check", action="store_true", help="for monitoring: exit 1 with one line per problem"
    )
    status.set_defaults(handler=status_cmd)


def problems(schedules: list[ScheduleStatus], service_alive: bool, now: datetime) -> list[str]:
    """What ``status --check`` reports: failed last runs, overdue schedules, no service."""
    found = []
    if not service_alive:
        found.append("no service is running (start one: ucore run)")
    for s in schedules:
        last = s.last_run
        if last is not None and last.state in FAILED_STATES:
            found.append(
                f"schedule {s.name}: last run (task {last.id}) {last.state.value}: "
                f"{last.error or 'no detail'}"
            )
        if s.enabled and s.registered and s.next_run is not None and s.period:
            overdue = (now - s.next_run).total_seconds()
            if overdue > s.period:
                found.append(
                    f"schedule {s.name}: overdue since {iso(s.next_run)} (more than one interval)"
                )
    return found


async def _gather(app: App) -> tuple[list[ScheduleStatus], list[TaskRecord], Any, bool]:
    schedules = await app.scheduler.status()
    running = await app.tasks.list_tasks(states=(TaskState.RUNNING.value,), limit=100)
    nodes = [n for n in await app.tasks.nodes() if n.id != app.ctx.node_id]
    alive = await app.tasks.service_alive()
    return schedules, running, nodes, alive


def status_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            schedules, running, nodes, alive = await _gather(app)
            now = app.ctx.clock.now()
        found = problems(schedules, alive, now)
        if args.check:
            if args.json:
                print_json({"ok": not found, "problems": found})
            else:
                for line in found or ["ok"]:
                    out(line)
            return 1 if found else 0
        if args.json:
            print_json(
                {
                    "schedules": [s.to_json() for s in schedules],
                    "running": [t.to_json() for t in running],
                    "nodes": [n.to_json() for n in nodes],
                    "service_alive": alive,
                }
            )
            return 0
        _print_status(schedules, running, nodes, alive)
        return 0

    return run(go())


def _print_status(
    schedules: list[ScheduleStatus], running: list[TaskRecord], nodes: Any, alive: bool
) -> None:
    if not alive:
        err("note: no service is running; schedules fire only while one runs (ucore run)")
    rows = [("SCHEDULE", "TASK", "ENABLED", "TRIGGER", "NEXT RUN", "LAST RUN", "LAST SKIP")]
    for s in schedules:
        last = "-"
        if s.last_run is not None:
            at = s.last_run.finished_at or s.last_run.submitted_at
            last = f"{s.last_run.state.value} {when(at)}"
        skip = "-" if s.last_skip_at is None else f"{when(s.last_skip_at)} {s.last_skip_reason}"
        enabled = "yes" if s.enabled else "no"
        if not s.registered:
            enabled += " (task not registered)"
        rows.append((s.name, s.task, enabled, s.trigger, when(s.next_run), last, skip))
    for line in columns(rows):
        out(line)
    out("")
    if running:
        out("RUNNING")
        for t in running:
            pct = "" if t.progress is None else f" {t.progress * 100:.0f}%"
            out(f"  {t.id} {t.name}{pct} {t.progress_message or ''}".rstrip())
    else:
        out("RUNNING: none")
    out("")
    out("PROCESSES")
    for n in nodes:
        out(f"  {n.role:<8} {n.host} pid {n.pid} since {when(n.started_at)}")
