"""``ucore config check [PATH]`` and ``ucore config show [--json]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ucore.cli.common import config_from_args
from ucore.cli.output import out, print_json
from ucore.foundation.config.loader import load_config


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("config", help="check and show the configuration", parents=[common])
    cmds = group.add_subparsers(
        dest="config_command", metavar="COMMAND", required=True, parser_class=type(group)
    )
    check = cmds.add_parser(
        "check",
        help="validate a config file (exit 0 'ok', or 2 with one line per problem)",
        parents=[common],
    )
    check.add_argument("path", nargs="?", type=Path, help="the file (default: the one in use)")
    check.set_defaults(handler=check_cmd)
    show = cmds.add_parser(
        "show",
        help="the effective config: defaults merged, absolute paths, passwords redacted",
        parents=[common],
    )
    show.add_argument("--json", action="store_true", help="one JSON document on stdout")
    show.set_defaults(handler=show_cmd)


def check_cmd(args: argparse.Namespace) -> int:
    if args.path is not None:
        load_config(args.path, getattr(args, "data_dir", None))
    else:
        config_from_args(args)
    out("ok")
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    loaded = config_from_args(args)
    doc = loaded.effective(redact=True)
    if args.json:
        print_json(doc)
    else:
        source = (
            str(loaded.source)
            if loaded.source
            else f"{loaded.locations.config_file} (not present: defaults)"
        )
        out(f"# config file: {source}")
        out(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0
