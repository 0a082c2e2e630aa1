"""Tasks every process has: ``sleep``, the diagnostic task."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ucore.foundation.config.params import SleepParams
from ucore.tasks.context import TaskContext

if TYPE_CHECKING:
    from ucore.tasks.system import TaskSystem

#: ``sleep`` reports progress this often (and so notices a cancel within this time).
SLEEP_STEP_SECONDS = 0.1


class SleepFailed(RuntimeError):
    pass


def sleep_task(ctx: TaskContext) -> dict[str, Any]:
    """Sleep ``seconds``, reporting progress every 100 ms; fail at the end if ``fail``."""
    params: SleepParams = ctx.params
    total = params.seconds
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= total:
            break
        ctx.progress(elapsed, total, f"slept {elapsed:.1f} of {total:g} s")
        ctx.wait(min(SLEEP_STEP_SECONDS, total - elapsed))
    ctx.progress(1.0, message=f"slept {total:g} s")
    if params.fail:
        raise SleepFailed(f"failed on purpose after {total:g} s")
    return {"slept_seconds": round(time.monotonic() - start, 3)}


def register_all(tasks: TaskSystem) -> None:
    tasks.register("sleep", sleep_task, params=SleepParams)
