"""A service process for test_crash.py: runs ``journal`` tasks and logs every attempt.

Usage: ``python crash_child.py DATA_DIR JOURNAL LEASE_SECONDS``. Each attempt appends
``start <task id> <pid>`` and, after sleeping 0-50 ms, ``end <task id> <pid>`` to JOURNAL
(O_APPEND and fsync, so the lines of several processes interleave in the real order). Writes
``JOURNAL.ready.<pid>`` once it handles SIGTERM (a graceful shutdown); the test kills it with
SIGKILL at random points.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ucore.app import bootstrap
from ucore.foundation.config import parse_config
from ucore.tasks import TaskContext

TASK = "journal"


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def journal_handler(journal: str) -> Callable[[TaskContext], dict[str, Any]]:
    def handler(ctx: TaskContext) -> dict[str, Any]:
        pid = os.getpid()
        append(journal, f"start {ctx.task_id} {pid}\n")
        try:
            time.sleep(random.uniform(0.0, 0.05))
        finally:
            append(journal, f"end {ctx.task_id} {pid}\n")
        return {"pid": pid}

    return handler


def mark_ready(journal: str, node_id: str) -> None:
    """The file the test waits for before it asks for a graceful stop."""
    Path(f"{journal}.ready.{os.getpid()}").write_text(node_id)


def child_config(data_dir: Path, lease_seconds: float) -> Any:
    return parse_config(
        {
            "tasks": {
                "workers": 2,
                "lease_seconds": lease_seconds,
                "max_interruptions": 50,
                "shutdown_grace_seconds": 5.0,
            },
            # only the test's own tasks: no maintenance runs beside them
            "maintenance": {"enabled": False},
        },
        data_dir=data_dir,
        env={},
    )


async def main(data_dir: Path, journal: str, lease_seconds: float) -> None:
    app = await bootstrap(child_config(data_dir, lease_seconds), role="service")
    app.tasks.register(TASK, journal_handler(journal))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    mark_ready(journal, app.ctx.node_id)
    await stop.wait()
    await app.shutdown()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
