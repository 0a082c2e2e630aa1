"""``ucore schedule``: next fire times, the whole picture of one schedule, live changes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ucore.cli.output import iso, out, print_json
from ucore.cli.session import open_app, parse_params, run
from ucore.foundation.errors import UsageError
from ucore.scheduling.live import ScheduleChange, parse_every, parse_window

SHOW_FIRES = 5


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    schedule = sub.add_parser("schedule", help="inspect and change schedules", parents=[common])
    cmds = schedule.add_subparsers(
        dest="schedule_command", metavar="COMMAND", required=True, parser_class=type(schedule)
    )
    nxt = cmds.add_parser("next", help="the next fire times of a schedule", parents=[common])
    nxt.add_argument("name")
    nxt.add_argument("--count", type=_count, default=5)
    nxt.add_argument("--json", action="store_true")
    nxt.set_defaults(handler=next_cmd)

    show = cmds.add_parser(
        "show", help="definition, state and next fires of a schedule", parents=[common]
    )
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_cmd)

    change = cmds.add_parser(
        "set",
        help="change a schedule (written to the config file; a running service "
        "picks it up within seconds)",
        parents=[common],
    )
    change.add_argument("name")
    onoff = change.add_mutually_exclusive_group()
    onoff.add_argument("--enable", dest="enabled", action="store_const", const=True)
    onoff.add_argument("--disable", dest="enabled", action="store_const", const=False)
    trigger = change.add_mutually_exclusive_group()
    trigger.add_argument("--every", metavar="N[smhd]", help="an interval: 45s, 30m, 6h, 7d")
    trigger.add_argument("--cron", metavar="EXPR", help='a cron expression, e.g. "0 3 * * *"')
    change.add_argument("--timezone", metavar="ZONE", help="zone of the cron and the window")
    win = change.add_mutually_exclusive_group()
    win.add_argument("--window", metavar="HH:MM-HH:MM", help="run only inside this window")
    win.add_argument("--no-window", action="store_true", help="remove the schedule's window")
    chain = change.add_mutually_exclusive_group()
    chain.add_argument(
        "--after",
        action="append",
        metavar="NAME",
        help="run after this schedule (repeat for several)",
    )
    chain.add_argument("--no-after", action="store_true", help="remove the schedule's chain")
    change.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a task parameter (JSON when it parses, else a string)",
    )
    change.add_argument("--json", action="store_true")
    change.set_defaults(handler=set_cmd)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: '{text}'") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def next_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            schedule = app.scheduler.get(args.name)
            times = await app.scheduler.next_fires(args.name, args.count)
        if args.json:
            print_json([{"local": t.astimezone().isoformat(), "utc": iso(t)} for t in times])
        else:
            out(f"{schedule.name}: {schedule.trigger.describe()}")
            for t in times:
                out(f"  {t.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}   {iso(t)}")
            if not times:
                out("  (no timer of its own)")
        return 0

    return run(go())


async def _describe(app: Any, name: str) -> dict[str, Any]:
    scheduler = app.scheduler
    schedule = scheduler.get(name)
    status = next(s for s in await scheduler.status() if s.name == name)
    definition = app.config.schedules[name].to_json()
    return {
        "name": name,
        "definition": definition,
        "trigger": schedule.trigger.describe(),
        "enabled": schedule.enabled,
        "registered": status.registered,
        "window": schedule.window.model_dump() if schedule.window else None,
        "next_run": iso(status.next_run),
        "next_fires": [iso(t) for t in await scheduler.next_fires(name, SHOW_FIRES)],
        "last_run": status.last_run.to_json() if status.last_run else None,
        "last_skip": status.to_json()["last_skip"],
        "drift": list(status.drift),
    }


def show_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            doc = await _describe(app, args.name)
        if args.json:
            print_json(doc)
            return 0
        _print_description(doc)
        return 0

    return run(go())


def _print_description(doc: dict[str, Any]) -> None:
    out(f"{doc['name']}: {doc['trigger']}" + ("" if doc["enabled"] else " (disabled)"))
    if not doc["registered"]:
        out("  task not registered in this process")
    out("definition:")
    for key, value in doc["definition"].items():
        out(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    out(f"next run: {doc['next_run'] or '-'}")
    out("next fires: " + (", ".join(doc["next_fires"]) or "-"))
    last = doc["last_run"]
    out(
        "last run: "
        + (
            "-"
            if last is None
            else f"task {last['id']} {last['state']} at {last['finished_at'] or '-'}"
        )
    )
    skip = doc["last_skip"]
    out("last skip: " + ("-" if skip is None else f"{skip['at']} {skip['reason']}"))
    if doc["drift"]:
        out("definition differs between live processes:")
        for d in doc["drift"]:
            out(f"  {d['role']} {d['host']} pid {d['pid']}: {d['hash']}")


def set_cmd(args: argparse.Namespace) -> int:
    change = ScheduleChange(
        enabled=args.enabled,
        every=parse_every(args.every) if args.every else None,
        cron=args.cron,
        timezone=args.timezone,
        window=parse_window(args.window) if args.window else None,
        clear_window=args.no_window,
        after=tuple(args.after) if args.after else (() if args.no_after else None),
        params=parse_params(args.param),
    )
    if change.empty():
        raise UsageError(
            "nothing to change: give --enable/--disable, --every, --cron, "
            "--window, --no-window, --after, --no-after or --param"
        )

    async def go() -> int:
        async with open_app(args) as app:
            await app.scheduler.change(args.name, change)
            doc = await _describe(app, args.name)
        if args.json:
            print_json(doc)
        else:
            _print_description(doc)
        return 0

    return run(go())
