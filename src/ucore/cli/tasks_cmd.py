"""``ucore tasks``: submit, list, show, cancel, history."""

from __future__ import annotations

import argparse

from ucore.app import App
from ucore.cli.output import err, out, print_json
from ucore.cli.render import history_table, task_lines, task_table
from ucore.cli.session import open_app, parse_params, run
from ucore.cli.waiting import wait_for_task
from ucore.foundation.errors import UCoreError
from ucore.stores.records import TaskRecord, TaskState

#: ids and limits are stored as SQLite integers (64-bit signed)
MAX_ID = 2**63 - 1


class TaskOutcomeError(UCoreError):
    """The task did not complete (exit 1), after its object was printed."""


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("tasks", help="submit, inspect and cancel tasks", parents=[common])
    cmds = group.add_subparsers(
        dest="tasks_command", metavar="COMMAND", required=True, parser_class=type(group)
    )

    submit = cmds.add_parser("submit", help="queue a task (prints its id)", parents=[common])
    submit.add_argument("name", help="the task's name, e.g. sleep")
    submit.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a parameter; VALUE is JSON when it parses, else a string",
    )
    submit.add_argument("--priority", choices=("high", "normal", "low"), default="normal")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait for the end (runs it here when no service is alive)",
    )
    submit.add_argument("--json", action="store_true", help="print the task object as JSON")
    submit.set_defaults(handler=submit_cmd)

    lst = cmds.add_parser("list", help="tasks, newest first", parents=[common])
    lst.add_argument("--state", choices=[s.value for s in TaskState], action="append")
    lst.add_argument("--name")
    lst.add_argument("--limit", type=_positive_int, default=50)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_cmd)

    show = cmds.add_parser("show", help="one task", parents=[common])
    show.add_argument("id", type=_positive_int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_cmd)

    cancel = cmds.add_parser("cancel", help="cancel a pending or running task", parents=[common])
    cancel.add_argument("id", type=_positive_int)
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(handler=cancel_cmd)

    hist = cmds.add_parser("history", help="run history: one row per attempt", parents=[common])
    hist.add_argument("--name")
    hist.add_argument("--task", type=_positive_int, metavar="ID")
    hist.add_argument("--limit", type=_positive_int, default=50)
    hist.add_argument("--json", action="store_true")
    hist.set_defaults(handler=history_cmd)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value}")
    if value > MAX_ID:
        raise argparse.ArgumentTypeError(f"too large: {value}")
    return value


def print_task(task: TaskRecord, as_json: bool) -> None:
    if as_json:
        print_json(task.to_json())
    else:
        for line in task_lines(task):
            out(line)


def finish_with(task: TaskRecord, as_json: bool) -> int:
    """Print the final task object; exit 0 only when it completed."""
    print_task(task, as_json)
    if task.state is TaskState.COMPLETED:
        return 0
    raise TaskOutcomeError(
        f"task {task.id} {task.name} {task.state.value}" + (f": {task.error}" if task.error else "")
    )


def submit_cmd(args: argparse.Namespace) -> int:
    params = parse_params(args.param)

    async def go() -> int:
        async with open_app(args) as app:
            task_id = await app.tasks.submit(
                args.name, params, priority=args.priority, origin="manual"
            )
            if args.wait:
                return finish_with(await wait_for_task(app, task_id), args.json)
            return await report_queued(app, task_id, args.json)

    return run(go())


async def report_queued(app: App, task_id: int, as_json: bool, note: str = "") -> int:
    """Without ``--wait``: the task's id alone on one line (or its object with ``--json``),
    and a warning on stderr when no service is alive to run it."""
    if not await app.tasks.service_alive():
        err(
            f"warning: no service is running; task {task_id} waits until one starts "
            "(ucore run), or use --wait to run it here"
        )
    if as_json:
        print_json((await app.tasks.get(task_id)).to_json())
    else:
        out(f"{task_id}{note}")
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            tasks = await app.tasks.list_tasks(
                states=tuple(args.state or ()), name=args.name, limit=args.limit
            )
        if args.json:
            print_json([t.to_json() for t in tasks])
        else:
            for line in task_table(tasks):
                out(line)
        return 0

    return run(go())


def show_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            print_task(await app.tasks.get(args.id), args.json)
        return 0

    return run(go())


def cancel_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            before = await app.tasks.get(args.id)
            if before.state.finished:
                raise TaskOutcomeError(f"task {args.id} already {before.state.value}")
            task = await app.tasks.cancel(args.id)
        if args.json:
            print_json(task.to_json())
        elif task.state is TaskState.CANCELLED:
            out(f"task {task.id} cancelled")
        else:
            out(f"task {task.id} asked to stop (it is {task.state.value})")
        return 0

    return run(go())


def history_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            runs = await app.tasks.history(task_id=args.task, name=args.name, limit=args.limit)
        if args.json:
            print_json([r.to_json() for r in runs])
        else:
            for line in history_table(runs):
                out(line)
        return 0

    return run(go())
