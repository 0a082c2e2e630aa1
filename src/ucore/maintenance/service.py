"""MaintenanceService: registers the maintenance task handlers with the TaskSystem.

It is a default system of every Foundation app (all roles: a client needs the handlers'
parameter models to validate ``maintenance run``; only service and runner processes run
them). On a failed maintenance run it runs ``maintenance.notify.command``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ucore.foundation.config.params import params_model
from ucore.foundation.context import Context
from ucore.foundation.events import Event
from ucore.foundation.system import BaseSystem
from ucore.fs.journal import Journal
from ucore.maintenance import (
    background_verification,
    cache_cleanup,
    database_cleanup,
    database_optimization,
    log_rotation,
    orphaned_cleanup,
)
from ucore.maintenance.notify import notify_failure
from ucore.maintenance.run import Summary, maintenance_task
from ucore.stores.base import Store
from ucore.stores.records import TaskRecord, TaskState
from ucore.tasks.system import TaskSystem

log = logging.getLogger("ucore.maintenance")

#: name → (module with body and summary)
TASKS: dict[str, Any] = {
    background_verification.NAME: background_verification,
    database_optimization.NAME: database_optimization,
    cache_cleanup.NAME: cache_cleanup,
    orphaned_cleanup.NAME: orphaned_cleanup,
    log_rotation.NAME: log_rotation,
    database_cleanup.NAME: database_cleanup,
}


class MaintenanceService(BaseSystem):
    name = "maintenance"
    depends_on = ("tasks",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.summaries: dict[str, Summary] = {}
        self._unsubscribe: Any = None
        self._notifications: set[asyncio.Task[bool]] = set()

    @property
    def tasks(self) -> TaskSystem:
        return self.ctx.typed("tasks", TaskSystem)

    def _store(self) -> Store:
        return self.tasks.store

    def _journal(self) -> Journal:
        return Journal(self.tasks.store, self.ctx.clock)

    async def initialize(self) -> None:
        for name, module in TASKS.items():
            self.tasks.register(
                name,
                maintenance_task(name, module.body, module.summary, self._store, self._journal),
                params=params_model(name),
            )
            self.summaries[name] = module.summary
        log.info("MaintenanceService: Registered %d task handlers", len(TASKS))
        self._unsubscribe = self.ctx.events.subscribe(self._on_finished, "task.finished")

    async def shutdown(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._notifications:
            # Each notification ends within its own timeout (it kills its command then). A
            # CLI runner shuts down right after the failure it reports: let them finish.
            limit = self.ctx.config.config.maintenance.notify.timeout_seconds + 2.0
            _, pending = await asyncio.wait(set(self._notifications), timeout=limit)
            for task in pending:
                task.cancel()

    def summarize(self, task: TaskRecord) -> str:
        """A run's result in words ("deleted 1,204 files, freed 3.1 GB")."""
        if task.state is not TaskState.COMPLETED:
            return f"{task.state.value}: {task.error or ''}".rstrip(": ")
        fn = self.summaries.get(task.name)
        if fn is None or not isinstance(task.result, dict):
            return "completed"
        return fn(task.result)

    def _on_finished(self, event: Event) -> None:
        record = event.data.get("record")
        command = self.ctx.config.config.maintenance.notify.command
        if not command or not isinstance(record, TaskRecord) or record.name not in TASKS:
            return
        if record.state not in (TaskState.FAILED, TaskState.TIMED_OUT):
            return
        timeout = self.ctx.config.config.maintenance.notify.timeout_seconds
        task = asyncio.ensure_future(notify_failure(command, record, timeout))
        self._notifications.add(task)
        task.add_done_callback(self._notifications.discard)
