"""``ucore maintenance list`` and ``ucore maintenance run NAME``."""

from __future__ import annotations

import argparse
from typing import Any

from ucore.cli.output import out, print_json
from ucore.cli.render import columns
from ucore.cli.session import open_app, parse_params, run
from ucore.cli.tasks_cmd import finish_with, report_queued
from ucore.cli.waiting import wait_for_task
from ucore.foundation.clock import iso
from ucore.foundation.config.schedule import DEFAULT_SCHEDULES
from ucore.foundation.errors import UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser(
        "maintenance", help="the maintenance tasks and their runs", parents=[common]
    )
    cmds = group.add_subparsers(
        dest="maintenance_command", metavar="COMMAND", required=True, parser_class=type(group)
    )
    lst = cmds.add_parser(
        "list", help="each maintenance schedule, its last run, next run", parents=[common]
    )
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_cmd)

    now = cmds.add_parser("run", help="run a maintenance task now", parents=[common])
    now.add_argument("name", help="a maintenance schedule, e.g. database_cleanup")
    now.add_argument(
        "--wait",
        action="store_true",
        help="wait for the end (runs it here when no service is alive)",
    )
    now.add_argument("--dry-run", action="store_true", help="report what it would do only")
    now.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="override a parameter for this run"
    )
    now.add_argument("--json", action="store_true")
    now.set_defaults(handler=run_cmd)


async def _rows(app: Any) -> list[dict[str, Any]]:
    rows = []
    for status in await app.scheduler.status():
        if status.name not in DEFAULT_SCHEDULES and status.task not in DEFAULT_SCHEDULES:
            continue
        last = status.last_run
        rows.append(
            {
                "name": status.name,
                "task": status.task,
                "schedule": status.trigger,
                "enabled": status.enabled,
                "registered": status.registered,
                "last_run": last.to_json() if last else None,
                "last_result": app.maintenance.summarize(last) if last else None,
                "next_run": iso(status.next_run),
            }
        )
    return rows


def list_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            rows = await _rows(app)
        if args.json:
            print_json(rows)
            return 0
        table = [("TASK", "SCHEDULE", "ENABLED", "LAST RUN", "RESULT", "NEXT RUN")]
        for r in rows:
            last = r["last_run"]
            at = "-" if last is None else (last["finished_at"] or last["submitted_at"])
            enabled = "yes" if r["enabled"] else "no"
            if not r["registered"]:
                enabled += " (not available)"
            table.append(
                (
                    r["name"],
                    r["schedule"],
                    enabled,
                    at,
                    r["last_result"] or "-",
                    r["next_run"] or "-",
                )
            )
        for line in columns(table):
            out(line)
        return 0

    return run(go())


def run_cmd(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    if args.dry_run:
        params["dry_run"] = True

    async def go() -> int:
        async with open_app(args) as app:
            schedule = app.scheduler.get(args.name)
            if schedule.task not in DEFAULT_SCHEDULES:
                raise UsageError(f"'{args.name}' is not a maintenance task")
            task_id, merged = await app.scheduler.run_now(args.name, params)
            if args.wait:
                return finish_with(await wait_for_task(app, task_id), args.json)
            note = " (an identical queued run, now at normal priority)" if merged else ""
            return await report_queued(app, task_id, args.json, note)

    return run(go())
