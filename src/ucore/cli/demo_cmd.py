"""``ucore demo create DIR [--files N]``: a demo library to try UCore on."""

from __future__ import annotations

import argparse

from ucore.cli.library_cmd import positive_int
from ucore.cli.output import err, out, print_json
from ucore.fs.demo import create_demo


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="a demo library to try UCore on", parents=[common])
    cmds = demo.add_subparsers(
        dest="demo_command", metavar="COMMAND", required=True, parser_class=type(demo)
    )
    create = cmds.add_parser(
        "create",
        help="write N library files (images, documents, others) in DIR",
        parents=[common],
    )
    create.add_argument("dir", help="a new or empty folder")
    create.add_argument(
        "--files",
        type=positive_int,
        default=2000,
        metavar="N",
        help="how many files (default 2000)",
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=create_cmd)


def create_cmd(args: argparse.Namespace) -> int:
    summary = create_demo(args.dir, args.files)
    if args.json:
        print_json(summary.to_json())
    else:
        out(
            f"created {summary.files:,} library files in {summary.folders:,} folders under "
            f"{summary.path} ({summary.images:,} images, {summary.documents:,} documents, "
            f"{summary.other:,} other) in {summary.seconds:.1f} s"
        )
    err(f"next: ucore library add {summary.path} && ucore library scan {summary.path} --wait")
    return 0
