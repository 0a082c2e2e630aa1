"""``ucore run [--for SECONDS]``: the headless service (workers; the scheduler once it exists).

Runs until SIGINT/SIGTERM or the given time. On a terminal it shows a live view (running
tasks with progress bars, recent results) and logs go to ``ucore.log`` only; otherwise it
logs plain lines to stderr (and ``ucore.log``). A signal starts a graceful shutdown: running
tasks are asked to stop and get ``tasks.shutdown_grace_seconds``; what is still running then
is recorded interrupted and re-queued for the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from ucore.app import bootstrap
from ucore.cli.common import config_from_args
from ucore.cli.live import LiveView
from ucore.foundation.logs import LOG_FILE_NAME, setup_logging
from ucore.foundation.system import Role

log = logging.getLogger("ucore.service")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("run", help="run the service: workers and schedules", parents=[common])
    cmd.add_argument(
        "--for",
        dest="duration",
        type=_seconds,
        metavar="SECONDS",
        help="stop after this many seconds",
    )
    cmd.add_argument("--no-live", action="store_true", help="plain log lines even on a terminal")
    cmd.set_defaults(handler=run_cmd)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _level(args: argparse.Namespace, configured: str) -> int:
    if getattr(args, "quiet", False):
        return logging.WARNING
    verbose = int(getattr(args, "verbose", 0) or 0)
    if verbose >= 2:
        return logging.DEBUG
    return logging.INFO if verbose == 1 else logging.getLevelNamesMapping()[configured]


def run_cmd(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    live = sys.stderr.isatty() and not args.no_live
    config.locations.ensure()
    log_file = config.locations.log_dir / LOG_FILE_NAME
    level = _level(args, config.config.logging.level)
    # on a terminal the live view owns stderr: logs go to the file only
    setup_logging(level, log_file, stream=open(_devnull(), "w") if live else None)  # noqa: SIM115

    async def go() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # before bootstrap: a signal that comes while the service starts (its node is already
        # visible) stops it gracefully once started, instead of killing it half-way
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        app = await bootstrap(config, role=Role.SERVICE)
        log.info("service running (pid %s, database %s)", app.ctx.pid, app.tasks.store.display_url)
        view = LiveView(app) if live else None
        try:
            if view is not None:
                view.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        finally:
            if view is not None:
                view.stop()
            log.info("service stopping")
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await app.shutdown()
            log.info("service stopped")
        return 0

    return asyncio.run(go())


def _devnull() -> str:
    import os

    return os.devnull
