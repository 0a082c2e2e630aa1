"""The TaskSystem: register handlers, submit, cancel, inspect; workers in service/runner roles."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ucore.foundation.clock import Clock
from ucore.foundation.context import Context
from ucore.foundation.events import Event
from ucore.foundation.system import BaseSystem, Role
from ucore.stores.base import Store
from ucore.stores.records import (
    ACTIVE_STATES,
    NewTask,
    NodeRecord,
    Priority,
    RunRecord,
    TaskFilter,
    TaskRecord,
    TaskState,
)
from ucore.stores.system import StoreSystem
from ucore.tasks import builtin
from ucore.tasks.errors import TaskError, TaskNotFoundError
from ucore.tasks.execution import task_event
from ucore.tasks.handlers import Handler, HandlerRegistry, Registration
from ucore.tasks.nodes import is_fresh, local_process_alive, process_start_time
from ucore.tasks.workers import WorkerPool

log = logging.getLogger("ucore.tasks")

ORIGINS = ("manual", "api")


class TaskSystem(BaseSystem):
    name = "tasks"
    depends_on = ("store",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        cfg = ctx.config.config.tasks
        self.handlers = HandlerRegistry()
        self.clock: Clock = ctx.clock
        self.lease_seconds = cfg.lease_seconds
        self.max_interruptions = cfg.max_interruptions
        self.progress_interval = cfg.progress_interval_seconds
        self.shutdown_grace = cfg.shutdown_grace_seconds
        self.pool: WorkerPool | None = None
        self._stores: StoreSystem | None = None
        self.node_info: dict[str, Any] = {}
        self._node_role = ctx.role.value
        self._node_started = ctx.clock.now()
        self._workers = cfg.workers
        self._low_slots = min(cfg.low_priority_slots, cfg.workers)
        builtin.register_all(self)

    @property
    def store(self) -> Store:
        stores = self._stores
        if stores is None:  # looked up once: a few times per task on the queue's hot path
            stores = self._stores = self.ctx.typed("store", StoreSystem)
        return stores.store

    # -- lifecycle ----------------------------------------------------------------------
    async def initialize(self) -> None:
        self.ctx.events.bind(asyncio.get_running_loop())
        self._node_role = self.ctx.role.value
        self._node_started = self.clock.now()
        await self._register_node()
        if self.ctx.role is Role.SERVICE:
            await self.start_workers()

    async def start_workers(self, only_ids: set[int] | None = None) -> WorkerPool:
        """Start this process's workers (service: all tasks; runner: only ``only_ids``)."""
        if self.pool is not None:
            raise TaskError("workers already started")
        slots = 1 if only_ids is not None else self._workers
        self.pool = WorkerPool(
            self, slots=slots, low_slots=min(self._low_slots, slots) or 1, only_ids=only_ids
        )
        await self.pool.start()
        return self.pool

    async def become_runner(self, task_id: int) -> WorkerPool:
        """Runner mode: announce this process as a runner and run only ``task_id`` here."""
        if self.pool is not None and self.pool.only_ids is not None:
            self.pool.only_ids.add(task_id)
            self.pool.wake()
            return self.pool
        self._node_role = Role.RUNNER.value
        await self._register_node()
        return await self.start_workers(only_ids={task_id})

    async def _register_node(self) -> None:
        await self.store.register_node(
            NodeRecord(
                id=self.ctx.node_id,
                host=self.ctx.host,
                pid=self.ctx.pid,
                role=self._node_role,
                started_at=self._node_started,
                heartbeat_at=self.clock.now(),
                proc_started=process_start_time(self.ctx.pid),
                info=dict(self.node_info),
            )
        )

    async def announce(self, **info: Any) -> None:
        """Publish facts about this process to the others (stored with its node record)."""
        self.node_info.update(info)
        await self._register_node()

    async def shutdown(self) -> None:
        if self.pool is not None:
            await self.pool.stop(self.shutdown_grace)
            self.pool = None
        try:
            await self.store.remove_nodes([self.ctx.node_id])
        except Exception as exc:
            log.warning("could not remove this node's record: %s", exc)

    # -- registration -------------------------------------------------------------------
    def register(
        self,
        name: str,
        handler: Handler,
        *,
        params: type[BaseModel] | None = None,
        timeout: float | None = None,
        max_attempts: int = 1,
        retry_backoff: float = 5.0,
    ) -> Registration:
        """Register ``handler(ctx)`` for tasks called ``name``.

        ``params`` is the parameter model (default: the one registered for ``name`` with
        :func:`~ucore.foundation.config.register_task_params`, if any). ``max_attempts``
        counts failures (a timeout is a failure); interruptions by a dying process do not.
        """
        registration = self.handlers.register(
            name,
            handler,
            params=params,
            timeout=timeout,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
        )
        if self.pool is not None:
            self.pool.wake()  # its pending tasks can be claimed now
        return registration

    # -- submit / cancel ----------------------------------------------------------------
    async def submit(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        priority: Priority | str = Priority.NORMAL,
        unique_key: str | None = None,
        not_before: datetime | None = None,
        origin: str = "api",
    ) -> int:
        """Queue a task and return its id (an existing id for a live ``unique_key``)."""
        task_id, _ = await self.submit_ex(
            name,
            params,
            priority=priority,
            unique_key=unique_key,
            not_before=not_before,
            origin=origin,
        )
        return task_id

    async def submit_ex(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        priority: Priority | str = Priority.NORMAL,
        unique_key: str | None = None,
        not_before: datetime | None = None,
        origin: str = "api",
    ) -> tuple[int, bool]:
        """:meth:`submit` that also says whether a new task was created."""
        reg = self.handlers.get(name)
        canonical = reg.canonical(params)
        prio = Priority.parse(priority)
        new = NewTask(
            name=name,
            params=canonical,
            priority=prio,
            origin=origin,
            submitted_at=self.clock.now(),
            max_attempts=reg.max_attempts,
            unique_key=unique_key,
            not_before=not_before,
        )
        pool = self.pool
        request = None if pool is None or not_before is not None else pool.reserve(prio)
        if pool is None or request is None:
            task_id, created = await self.store.insert_task(new)
            self._submitted(new, task_id, created)
            if created and pool is not None:
                pool.wake()
            return task_id, created
        # A slot is free and nothing else is due for it: insert and claim in one
        # transaction. The pool gets the claimed task from the write's own callback, so
        # that a caller cancelled meanwhile cannot lose a task claimed for this process.
        try:
            write = asyncio.ensure_future(self.store.insert_and_claim(new, request))
        except BaseException:
            pool.submitted(prio, None)  # the store refused at once (closed)
            raise
        write.add_done_callback(functools.partial(self._claimed_at_submit, new, pool))
        task_id, created, _ = await asyncio.shield(write)
        return task_id, created

    def _submitted(self, new: NewTask, task_id: int, created: bool) -> None:
        if created:
            log.debug("task %s %s submitted (%s)", task_id, new.name, new.priority.label)
            # Published before the task can start here: "submitted" must reach subscribers
            # before "started".
            events = self.ctx.events
            if events.wants("task.submitted"):
                events.publish(task_event("task.submitted", _pending_record(task_id, new)))

    def _claimed_at_submit(
        self,
        new: NewTask,
        pool: WorkerPool,
        write: asyncio.Future[tuple[int, bool, TaskRecord | None]],
    ) -> None:
        if write.cancelled() or write.exception() is not None:
            pool.submitted(new.priority, None)
            return
        task_id, created, record = write.result()
        self._submitted(new, task_id, created)
        pool.submitted(new.priority, record)

    async def cancel(self, task_id: int) -> TaskRecord:
        """Cancel a pending task at once; ask a running one to stop (cooperative)."""
        record = await self.store.request_cancel(task_id, self.clock.now())
        if record is None:
            raise TaskNotFoundError(f"no task with id {task_id}")
        if self.pool is not None:
            self.pool.stop_task(task_id, "cancel")
        if record.state.finished and record.error == "cancelled by user":
            self.ctx.events.publish(task_event("task.finished", record, outcome="cancelled"))
        return record

    async def promote(self, task_id: int, priority: Priority) -> bool:
        return await self.store.promote_task(task_id, priority)

    # -- reading ------------------------------------------------------------------------
    async def get(self, task_id: int) -> TaskRecord:
        record = await self.store.get_task(task_id)
        if record is None:
            raise TaskNotFoundError(f"no task with id {task_id}")
        return record

    async def list_tasks(
        self, *, states: tuple[str, ...] = (), name: str | None = None, limit: int = 50
    ) -> list[TaskRecord]:
        return await self.store.list_tasks(TaskFilter(states=states, name=name, limit=limit))

    async def active(self, name: str | None = None) -> list[TaskRecord]:
        return await self.list_tasks(states=ACTIVE_STATES, name=name, limit=1000)

    async def history(
        self, *, task_id: int | None = None, name: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        return await self.store.list_runs(task_id=task_id, name=name, limit=limit)

    async def nodes(self, *, live_only: bool = True) -> list[NodeRecord]:
        nodes = await self.store.list_nodes()
        if not live_only:
            return nodes
        now = self.clock.now()
        return [n for n in nodes if self._alive(n, now)]

    def _alive(self, node: NodeRecord, now: datetime) -> bool:
        if node.host == self.ctx.host:
            return local_process_alive(node)
        return is_fresh(node, now)

    async def service_alive(self) -> bool:
        """Whether a live ``service`` process shares this database."""
        now = self.clock.now()
        for node in await self.store.list_nodes():
            if (
                node.role == Role.SERVICE.value
                and node.id != self.ctx.node_id
                and (self._alive(node, now) and is_fresh(node, now))
            ):
                return True
        return False

    # -- waiting and runner mode --------------------------------------------------------
    async def wait(self, task_id: int, *, poll: float = 0.5) -> TaskRecord:
        """Until the task is finished (events from this process, polling for others)."""
        done = asyncio.Event()

        def on_event(event: Event) -> None:
            if event.data.get("task_id") == task_id and event.kind == "task.finished":
                done.set()

        unsubscribe = self.ctx.events.subscribe(on_event, "task.")
        try:
            while True:
                record = await self.get(task_id)
                if record.state.finished:
                    return record
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), poll)
        finally:
            unsubscribe()

    async def run_here(self, task_id: int) -> TaskRecord:
        """Runner mode: run this one task in this process and return its final record."""
        pool = self.pool or await self.start_workers(only_ids={task_id})
        if pool.only_ids is not None:
            pool.only_ids.add(task_id)
        pool.wake()
        return await self.wait(task_id)


def _pending_record(task_id: int, new: NewTask) -> TaskRecord:
    """The record of a task just inserted (as the store holds it, without reading it back)."""
    return TaskRecord(
        id=task_id,
        name=new.name,
        params=new.params,
        priority=new.priority,
        origin=new.origin,
        state=TaskState.PENDING,
        unique_key=new.unique_key,
        attempts=0,
        failures=0,
        interruptions=0,
        max_attempts=new.max_attempts,
        submitted_at=new.submitted_at,
        not_before=new.not_before,
        started_at=None,
        finished_at=None,
        progress=None,
        progress_message=None,
        result=None,
        error=None,
        traceback=None,
        node_id=None,
        host=None,
        pid=None,
        lease_expires=None,
        cancel_requested=False,
        run_id=None,
    )
