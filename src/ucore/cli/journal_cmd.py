"""``ucore journal``: what happened to the library, newest first."""

from __future__ import annotations

import argparse

from ucore.cli.library_cmd import positive_int
from ucore.cli.output import out, print_json
from ucore.cli.render import columns
from ucore.cli.session import open_app, run
from ucore.stores.records import JournalEntry


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    journal = sub.add_parser(
        "journal", help="what happened to the library, newest first", parents=[common]
    )
    journal.add_argument(
        "--kind", metavar="K", help="only this kind and its sub-kinds (library, library.scan, …)"
    )
    journal.add_argument(
        "--limit", type=positive_int, default=20, metavar="N", help="at most N entries (default 20)"
    )
    journal.add_argument("--json", action="store_true")
    journal.set_defaults(handler=journal_cmd)


def journal_table(entries: list[JournalEntry]) -> list[str]:
    rows = [("AT", "KIND", "TASK", "MESSAGE")]
    for e in entries:
        rows.append(
            (
                e.at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                e.kind,
                "-" if e.task_id is None else str(e.task_id),
                e.message,
            )
        )
    return columns(rows)


def journal_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            entries = await app.library.journal.entries(kind=args.kind, limit=args.limit)
        if args.json:
            print_json([e.to_json() for e in entries])
        elif entries:
            for line in journal_table(entries):
                out(line)
        return 0

    return run(go())
