"""Entry point of ``ucore``: global options, command groups, errors and exit codes.

argparse rather than typer/click: it is in the standard library (the CLI starts fast and has
no dependency), and it lets us own every message and exit code of DESIGN.md §7 — one line on
stderr, exit 2 for a bad command line, 1 for a failure while doing the work, never a
traceback (``-v`` adds one for unexpected errors).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ucore import __version__
from ucore.cli.output import err
from ucore.foundation.errors import ConfigError, UCoreError, UsageError

PROG = "ucore"


class ArgParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="PATH",
        help="config file (default: $UCORE_CONFIG, the data dir, the platform config dir)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        metavar="DIR",
        help="keep data, cache, logs and the database under DIR ($UCORE_DATA_DIR)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS if suppress else 0,
        help="more detail on stderr (-vv: debug)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="only warnings and errors on stderr",
    )


#: Command groups: each registers its subcommands on the parser it is given.
Registrar = Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]  # type: ignore[type-arg]


def _registrars() -> list[Registrar]:
    from ucore.cli import (
        config_cmd,
        library_cmd,
        maintenance_cmd,
        run_cmd,
        schedule_cmd,
        status_cmd,
        tasks_cmd,
    )

    return [
        config_cmd.register,
        run_cmd.register,
        tasks_cmd.register,
        status_cmd.register,
        schedule_cmd.register,
        maintenance_cmd.register,
        library_cmd.register,
    ]


def build_parser() -> ArgParser:
    parser = ArgParser(prog=PROG, description="UCore: a self-maintaining file library.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _global_options(parser, suppress=False)
    common = ArgParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgParser)
    for register in _registrars():
        register(sub, common)
    return parser


def _log_level(args: argparse.Namespace) -> int:
    if getattr(args, "quiet", False):
        return logging.WARNING
    verbose = int(getattr(args, "verbose", 0) or 0) or 0
    return logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING


def main(argv: Sequence[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        from ucore.foundation.logs import setup_logging

        setup_logging(_log_level(args))
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except ConfigError as exc:
        for line in exc.lines():
            err(f"{PROG}: config: {line}")
        return exc.exit_code
    except UCoreError as exc:
        for line in exc.lines():
            err(f"{PROG}: {line}")
        if args is not None and int(getattr(args, "verbose", 0) or 0):
            traceback.print_exc(file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        err(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:
        # stdout closed early (| head): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        err(f"{PROG}: internal error: {type(exc).__name__}: {exc}")
        if args is not None and int(getattr(args, "verbose", 0) or 0):
            traceback.print_exc(file=sys.stderr)
        else:
            err(f"{PROG}: run again with -v for details")
        return 1


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
