"""``ucore library``: add, remove, list, scan, thumbnails.

:func:`register` also registers the other UCoreFS command groups, ``journal`` and ``demo``
(their own modules), so that the CLI's entry point lists this one registrar for them.
"""

from __future__ import annotations

import argparse
from typing import Any

from ucore.app import App
from ucore.cli.output import err, out, print_json
from ucore.cli.render import columns
from ucore.cli.session import open_app, run
from ucore.cli.tasks_cmd import finish_with, report_queued
from ucore.cli.waiting import wait_for_task
from ucore.fs.errors import LibraryError
from ucore.fs.system import RootInfo
from ucore.stores.records import RootRecord


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """The ``library``, ``journal`` and ``demo`` command groups."""
    from ucore.cli import demo_cmd, journal_cmd

    register_library(sub, common)
    journal_cmd.register(sub, common)
    demo_cmd.register(sub, common)


def register_library(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("library", help="library roots, scans and thumbnails", parents=[common])
    cmds = group.add_subparsers(
        dest="library_command", metavar="COMMAND", required=True, parser_class=type(group)
    )

    add = cmds.add_parser(
        "add", help="make a folder a library root (prints its id)", parents=[common]
    )
    add.add_argument("path", help="the folder")
    add.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out names or paths matching GLOB (repeatable)",
    )
    add.add_argument("--json", action="store_true", help="print the root as JSON")
    add.set_defaults(handler=add_cmd)

    remove = cmds.add_parser(
        "remove",
        help="forget a root: its records and thumbnails (never its files)",
        parents=[common],
    )
    remove.add_argument("id", type=positive_int, help="the root's id (see: library list)")
    remove.add_argument("--json", action="store_true")
    remove.set_defaults(handler=remove_cmd)

    lst = cmds.add_parser("list", help="roots with status, files and thumbnails", parents=[common])
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_cmd)

    scan = cmds.add_parser(
        "scan", help="update the index of one root or all (prints the task id)", parents=[common]
    )
    scan.add_argument("path", nargs="?", help="a root's folder (default: every root)")
    _wait_options(scan)
    scan.set_defaults(handler=scan_cmd)

    thumbs = cmds.add_parser(
        "thumbnails", help="make the pending thumbnails (prints the task id)", parents=[common]
    )
    _wait_options(thumbs)
    thumbs.set_defaults(handler=thumbnails_cmd)


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait for the end (runs it here when no service is alive)",
    )
    parser.add_argument("--json", action="store_true", help="print the task object as JSON")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value}")
    return value


# -- add / remove / list --------------------------------------------------------------------
def _root_json(root: RootRecord) -> dict[str, Any]:
    return {
        "id": root.id,
        "path": root.path,
        "ignore": list(root.ignore),
        "marker": root.marker,
        "fs_uuid": root.fs_uuid,
        "device": root.device,
    }


def add_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            root, created = await app.library.add_root(args.path, args.ignore)
        if not created:
            err(f"{root.path} is already library root {root.id}")
        elif root.marker is None:
            err(f"note: {root.path} is read-only: identified by its file system, not a marker")
        if args.json:
            print_json(_root_json(root) | {"created": created})
        else:
            out(str(root.id))
        if created:
            err(f"next: ucore library scan {root.path} --wait")
        return 0

    return run(go())


def remove_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            done = await app.library.remove_root(args.id)
        if args.json:
            print_json(done)
        else:
            out(
                f"removed library root {done['id']} ({done['path']}): "
                f"{done['files_removed']:,} records, {done['thumbnails_removed']:,} thumbnails; "
                "its files were not touched"
            )
        return 0

    return run(go())


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def root_table(infos: list[RootInfo]) -> list[str]:
    rows = [
        ("ID", "STATUS", "FILES", "SIZE", "THUMBNAILS done/pending/failed", "LAST SCAN", "PATH")
    ]
    for info in infos:
        doc = info.to_json()
        t = doc["thumbnails"]
        last = info.root.last_scan_at
        rows.append(
            (
                str(doc["id"]),
                doc["status"],
                f"{doc['files']:,}",
                _size(doc["bytes"]),
                f"{t['done']:,}/{t['pending']:,}/{t['failed']:,}",
                "-" if last is None else last.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                doc["path"],
            )
        )
    return columns(rows)


def list_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            infos = await app.library.roots()
        if args.json:
            print_json([i.to_json() for i in infos])
            return 0
        if not infos:
            err("no library roots yet (add one: ucore library add PATH)")
            return 0
        for line in root_table(infos):
            out(line)
        for info in infos:
            if info.check.reason:
                err(f"root {info.root.id}: {info.check.reason}")
        return 0

    return run(go())


# -- scan / thumbnails ----------------------------------------------------------------------
async def _scan_target(app: App, path: str | None) -> int | None:
    if path is None:
        if not await app.library.store.list_roots():
            raise LibraryError("no library roots yet (add one: ucore library add PATH)")
        return None
    root = await app.library.root_for_path(path)
    if root is None:
        raise LibraryError(f"{path} is not a library root (add it: ucore library add {path})")
    return root.id


async def _submitted(app: App, task_id: int, args: argparse.Namespace) -> int:
    if args.wait:
        record = await wait_for_task(app, task_id)
        thumbs = record.result.get("thumbnails_task") if isinstance(record.result, dict) else None
        if thumbs and not args.json:
            err(
                f"thumbnails queued as task {thumbs} (make them now: ucore library thumbnails "
                "--wait)"
            )
        return finish_with(record, args.json)
    return await report_queued(app, task_id, args.json)


def scan_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            root_id = await _scan_target(app, args.path)
            task_id = await app.library.scan(root_id, origin="manual")
            return await _submitted(app, task_id, args)

    return run(go())


def thumbnails_cmd(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_app(args) as app:
            task_id = await app.library.generate_thumbnails(origin="manual")
            return await _submitted(app, task_id, args)

    return run(go())
