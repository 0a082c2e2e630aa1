"""Notifications of failed maintenance runs for headless servers.

``maintenance.notify.command`` is an argv list run when a maintenance run fails (or times
out), with the task object as JSON on its stdin; it gets ``timeout_seconds``, then is killed.
Its failure is logged, never raised. The panel adds its own notifications.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from ucore.stores.records import TaskRecord

log = logging.getLogger("ucore.maintenance")


async def notify_failure(command: Sequence[str], task: TaskRecord, limit: float) -> bool:
    """Run the command; True when it exited 0 in time."""
    payload = json.dumps(task.to_json(), ensure_ascii=False).encode()
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        log.error("notify command %s could not start: %s", command[0], exc)
        return False
    try:
        _, err = await asyncio.wait_for(proc.communicate(payload), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.error("notify command %s killed after %g s", command[0], limit)
        return False
    except BaseException:
        # cancelled (this process is going away): never leave the command running unbounded
        if proc.returncode is None:
            proc.kill()
        raise
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        log.error("notify command %s failed (exit %s) %s", command[0], proc.returncode, detail[0])
        return False
    return True
