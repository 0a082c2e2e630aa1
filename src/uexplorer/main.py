"""Entry point of ``uexplorer``: config, logging, the asyncio loop on Qt (qasync), the window.

UExplorer is a ``service`` process: it bootstraps the same systems as ``ucore run``, so
maintenance runs while it is open.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ucore.foundation.errors import ConfigError, UCoreError
from ucore.foundation.logs import LOG_FILE_NAME, setup_logging

log = logging.getLogger("uexplorer")


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="uexplorer", description="UExplorer: browse a UCore library."
    )
    parser.add_argument("--config", type=Path, metavar="PATH")
    parser.add_argument("--data-dir", type=Path, metavar="DIR")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    from ucore.foundation.config.loader import load_config

    try:
        config = load_config(args.config, args.data_dir)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"uexplorer: config: {line}", file=sys.stderr)
        return 2
    config.locations.ensure()
    setup_logging(
        logging.DEBUG if args.verbose else config.config.logging.level,
        config.locations.log_dir / LOG_FILE_NAME,
    )
    try:
        from PySide6.QtWidgets import QApplication
        from qasync import QEventLoop
    except ImportError:
        print("uexplorer: the GUI needs the 'gui' extra: pip install 'ucore[gui]'", file=sys.stderr)
        return 1

    from ucore.app import bootstrap
    from uexplorer.window import MainWindow

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    loop = QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        core = loop.run_until_complete(bootstrap(config, role="service"))
    except UCoreError as exc:
        print(f"uexplorer: {exc}", file=sys.stderr)
        return 1
    window = MainWindow(config)
    window.show()
    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)
    log.info("UExplorer started")
    with loop:
        loop.run_until_complete(closed.wait())
        loop.run_until_complete(core.shutdown())
    return 0
