"""``--wait``: follow a task to its end, running it here when no service is alive.

With a live service the CLI follows the service's progress through the store. Without one
this process becomes a **runner**: it claims and runs only the task it submitted (so
``ucore tasks submit --wait``, ``library scan --wait`` and ``maintenance run --wait`` work
with nothing else running).
"""

from __future__ import annotations

import asyncio
import logging

from ucore.app import App
from ucore.cli.output import err
from ucore.cli.progress import ProgressView
from ucore.cli.session import log_to_file
from ucore.foundation.events import Event
from ucore.stores.records import TaskRecord

FOLLOW_POLL_SECONDS = 0.25


async def wait_for_task(app: App, task_id: int) -> TaskRecord:
    tasks = app.tasks
    record = await tasks.get(task_id)
    with ProgressView(f"task {task_id} {record.name}") as view:
        if not record.state.finished and not await tasks.service_alive():
            log_to_file(app, logging.INFO)
            err(f"no service is running: running task {task_id} in this process")
            return await _run_here(app, task_id, view)
        return await _follow(app, task_id, view)


async def _run_here(app: App, task_id: int, view: ProgressView) -> TaskRecord:
    def on_event(event: Event) -> None:
        if event.data.get("task_id") != task_id:
            return
        if event.kind == "task.progress":
            view.update(event.data.get("fraction"), event.data.get("message"))
        elif event.kind == "task.started":
            view.update(0.0, "started")

    unsubscribe = app.ctx.events.subscribe(on_event, "task.")
    try:
        await app.tasks.become_runner(task_id)
        return await app.tasks.wait(task_id)
    finally:
        unsubscribe()


async def _follow(app: App, task_id: int, view: ProgressView) -> TaskRecord:
    while True:
        record = await app.tasks.get(task_id)
        view.show(record)
        if record.state.finished:
            return record
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
