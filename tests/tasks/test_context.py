"""TaskContext's stop requests seen by a sync handler's wait, whichever comes first."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ucore.tasks.context import TaskContext
from ucore.tasks.errors import TaskCancelled


def make(loop: asyncio.AbstractEventLoop) -> TaskContext:
    return TaskContext(
        task_id=1,
        name="t",
        attempt=1,
        params={},
        origin="api",
        app=None,  # type: ignore[arg-type]  # not used by these methods
        loop=loop,
        on_progress=lambda fraction, message: None,
    )


async def test_a_stop_asked_before_the_wait_ends_it_at_once() -> None:
    ctx = make(asyncio.get_running_loop())
    ctx.request_stop("timeout")
    ctx.request_stop("cancel")  # the first reason stays
    t0 = time.monotonic()
    with pytest.raises(TaskCancelled, match="timeout"):
        await asyncio.to_thread(ctx.wait, 30)
    assert time.monotonic() - t0 < 5
    assert ctx.stop_requested and ctx.stop_reason == "timeout"


async def test_a_stop_asked_during_the_wait_wakes_it() -> None:
    ctx = make(asyncio.get_running_loop())
    waiting = asyncio.ensure_future(asyncio.to_thread(ctx.wait, 30))
    await asyncio.sleep(0.05)
    threading.Thread(target=ctx.request_stop, args=("cancel",)).start()
    with pytest.raises(TaskCancelled, match="cancel"):
        await asyncio.wait_for(waiting, 5)


async def test_a_wait_without_a_stop_sleeps_and_returns() -> None:
    ctx = make(asyncio.get_running_loop())
    await asyncio.to_thread(ctx.wait, 0.01)
    assert not ctx.stop_requested
    ctx.check_cancelled()
    assert ctx.log.name == "ucore.task.t"
