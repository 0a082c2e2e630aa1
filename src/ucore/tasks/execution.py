"""One attempt of one task: run the handler, watch time and stop requests, record the outcome.

An async handler runs in its execution's own asyncio task, which then writes the outcome: a
stop (cancel, timeout, shutdown, lost lease) cancels that task while the handler runs. One
that ignores the cancellation of its timeout for :data:`STOP_GRACE_SECONDS` is abandoned:
its attempt is recorded as timed out at once and whatever it returns later is ignored.
Sync handlers run in a thread of their own (never a shared pool, so a handler that ignores a
stop cannot starve the others).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import traceback as tb
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ucore.foundation.events import Event
from ucore.stores.records import Outcome, TaskRecord, TaskState
from ucore.tasks.context import TaskContext
from ucore.tasks.errors import TaskCancelled
from ucore.tasks.handlers import Registration

if TYPE_CHECKING:
    from ucore.tasks.system import TaskSystem

log = logging.getLogger("ucore.tasks")

#: How long a handler that was asked to stop (timeout) gets before it is abandoned.
STOP_GRACE_SECONDS = 1.0


#: checks that a result is JSON data (one encoder: ``json.dumps`` builds one per call)
_CHECK = json.JSONEncoder(ensure_ascii=False)


def to_json(value: Any) -> Any:
    """A handler's result as JSON data (pydantic models dumped); raises TypeError otherwise."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    _CHECK.encode(value)
    return value


def task_event(kind: str, record: TaskRecord, **extra: Any) -> Event:
    data: dict[str, Any] = {
        "task_id": record.id,
        "name": record.name,
        "state": record.state.value,
        "origin": record.origin,
        "record": record,
    }
    data.update(extra)
    return Event(kind, data)


#: what a sync handler's ``ended`` future holds when its timeout came first
_TIMED_OUT = object()


def _settle(waiter: asyncio.Future[Any], value: Any) -> None:
    if not waiter.done():
        waiter.set_result(value)


class Execution:
    def __init__(
        self,
        system: TaskSystem,
        record: TaskRecord,
        reg: Registration,
        *,
        on_returned: Callable[[bool], None] | None = None,
        on_abandoned: Callable[[Execution], None] | None = None,
    ) -> None:
        self.system = system
        self.record = record
        self.reg = reg
        self.run_id = record.run_id or 0
        self.loop = asyncio.get_running_loop()
        self.ctx = TaskContext(
            task_id=record.id,
            name=record.name,
            attempt=record.attempts,
            params=record.params,
            origin=record.origin,
            app=system.ctx,
            loop=self.loop,
            on_progress=self._progress,
        )
        self.finished = asyncio.Event()
        #: the handler has returned (or given up): only the outcome is left to write
        self.returned = False
        self._on_returned = on_returned
        #: called when an async handler that ignored its timeout is left behind
        self._on_abandoned = on_abandoned
        #: set once the outcome is written (or given up): later results are ignored
        self.settled = False
        self.final: TaskRecord | None = None
        #: the task an async handler runs in, while it runs (a stop cancels it)
        self._task: asyncio.Task[Any] | None = None
        #: the cancellations this execution asked of that task
        self._cancels = 0
        #: an async handler's timeout, then its grace
        self._timer: asyncio.TimerHandle | None = None
        #: an async handler ignored its timeout: the attempt was recorded without it
        self.abandoned = False
        self._latest: tuple[float | None, str | None] = (None, None)
        self._last_write = float("-inf")
        self._flush_handle: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()

    # -- stop requests --------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Ask the handler to stop (cooperative for threads, a cancel for coroutines)."""
        self.ctx.request_stop(reason)
        task = self._task
        if task is not None:
            self._cancels += 1
            task.cancel()

    # -- progress -------------------------------------------------------------------------
    def _progress(self, fraction: float | None, message: str | None) -> None:
        # any thread
        if self.settled:
            return
        self._latest = (fraction, message)
        events = self.system.ctx.events
        if events.wants("task.progress"):
            events.publish_threadsafe(
                task_event("task.progress", self.record, fraction=fraction, message=message)
            )
        try:
            self.loop.call_soon_threadsafe(self._schedule_flush)
        except RuntimeError:  # loop closed
            pass

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None or self.settled:
            return
        interval = self.system.progress_interval
        delay = max(0.0, self._last_write + interval - self.loop.time())
        self._flush_handle = self.loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self.settled:
            return
        self._last_write = self.loop.time()
        fraction, message = self._latest
        write = asyncio.ensure_future(
            self.system.store.set_progress(self.record.id, self.run_id, fraction, message)
        )
        self._writes.add(write)
        write.add_done_callback(self._write_done)

    def _write_done(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("progress of task %s not stored: %s", self.record.id, task.exception())

    # -- running --------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the handler in the current task and record the attempt's outcome."""
        rec = self.record
        events = self.system.ctx.events
        if events.wants("task.started"):
            events.publish(task_event("task.started", rec))
        log.info("task %s %s started (attempt %s)", rec.id, rec.name, rec.attempts)
        end: tuple[bool, Any]
        try:
            self.ctx.params = self.reg.validate(rec.params)
            if self.reg.is_async:
                value = await self._call_async()
            else:
                value = await self._call_thread()
            end = (True, to_json(value))
        except asyncio.CancelledError as exc:
            if not self.ctx.stop_requested:
                raise  # the worker itself is being torn down
            end = (False, exc)
        except Exception as exc:
            end = (False, exc)
        if not self.abandoned:  # else recorded when it was abandoned
            await self._conclude(end)

    async def _conclude(self, end: tuple[bool, Any]) -> None:
        """Record the handler's end: ``(True, result)`` or ``(False, exception)``."""
        rec = self.record
        ok, value = end
        outcome, state = Outcome.COMPLETED, TaskState.COMPLETED
        result: Any = value if ok else None
        error: str | None = None
        trace: str | None = None
        add_failure = False
        not_before = None
        if not ok and isinstance(value, (TaskCancelled, asyncio.CancelledError)):
            reason = value.reason if isinstance(value, TaskCancelled) else None
            outcome, state, error = self._stopped(reason or self.ctx.stop_reason or "cancel")
            add_failure = outcome is Outcome.TIMED_OUT
        elif not ok:
            outcome, state = Outcome.FAILED, TaskState.FAILED
            error = f"{type(value).__name__}: {value}" if str(value) else type(value).__name__
            trace = "".join(tb.format_exception(value))
            add_failure = True
        if add_failure and rec.failures + 1 < rec.max_attempts:
            state = TaskState.PENDING
            delay = self.reg.backoff(rec.failures + 1)
            not_before = self.system.clock.now() + timedelta(seconds=delay)
        self.returned = True
        if self._on_returned is not None:
            self._on_returned(state is TaskState.PENDING)
        if self.ctx.stop_reason == "lease":
            log.warning("task %s lost its lease; its outcome is not recorded here", rec.id)
            self._settle(None)
            return
        await self._record(
            outcome=outcome,
            state=state,
            result=result,
            error=error,
            trace=trace,
            add_failure=add_failure,
            not_before=not_before,
        )

    def _stopped(self, reason: str) -> tuple[Outcome, TaskState, str]:
        if reason == "timeout":
            return Outcome.TIMED_OUT, TaskState.TIMED_OUT, f"timed out after {self.reg.timeout:g} s"
        if reason == "shutdown":
            return Outcome.INTERRUPTED, TaskState.PENDING, "interrupted: the process shut down"
        if reason == "lease":
            return Outcome.INTERRUPTED, TaskState.PENDING, "interrupted: lease lost"
        return Outcome.CANCELLED, TaskState.CANCELLED, "cancelled by user"

    async def _call_async(self) -> Any:
        """Run an async handler in this task (a stop cancels it); its result or exception."""
        if self.ctx.stop_requested:  # asked before it started
            raise TaskCancelled(self.ctx.stop_reason or "cancel")
        coro = self.reg.fn(self.ctx)
        task = asyncio.current_task()
        assert task is not None
        timeout = self.reg.timeout
        if timeout is not None:
            self._timer = self.loop.call_later(timeout, self._timed_out)
        self._task = task
        try:
            return await coro
        finally:
            self._task = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            # the stop's cancellations were handled here: the task goes on to record
            for _ in range(self._cancels):
                task.uncancel()
            self._cancels = 0

    def _timed_out(self) -> None:
        self._timer = self.loop.call_later(STOP_GRACE_SECONDS, self._abandon)
        self.stop("timeout")

    def _abandon(self) -> None:
        """The async handler ignored its timeout's cancellation: record the attempt timed
        out now, in a task of its own; what the handler returns later is ignored."""
        self._timer = None
        if self._task is None or self.returned:
            return
        log.warning("task %s ignored its timeout; abandoned", self.record.id)
        self.abandoned = True
        self._task = None  # no more cancellations: it is on its own
        write = asyncio.ensure_future(self._conclude((False, TaskCancelled("timeout"))))
        self._writes.add(write)
        write.add_done_callback(self._abandoned_written)
        if self._on_abandoned is not None:
            self._on_abandoned(self)

    def _abandoned_written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s: recording its outcome failed: %s", self.record.id, task.exception())

    async def _call_thread(self) -> Any:
        """Run a sync handler in a thread of its own; its result, or its exception raised
        here (TaskCancelled after its timeout and grace, whether or not it stopped)."""
        loop = self.loop
        #: the handler's end, (True, result) or (False, exception); or _TIMED_OUT
        ended: asyncio.Future[Any] = loop.create_future()
        thread_end = self._start_thread(ended)
        timeout = self.reg.timeout
        timer = None if timeout is None else loop.call_later(timeout, _settle, ended, _TIMED_OUT)
        try:
            end = await ended
        finally:
            if timer is not None:
                timer.cancel()
        if end is not _TIMED_OUT:
            ok, value = end
            if ok:
                return value
            raise value
        self.stop("timeout")
        await asyncio.wait({thread_end}, timeout=STOP_GRACE_SECONDS)  # never cancels it
        if not thread_end.done():
            log.warning("task %s ignored its timeout; abandoned", self.record.id)
        raise TaskCancelled("timeout")

    def _start_thread(self, ended: asyncio.Future[Any]) -> asyncio.Future[None]:
        """Run a sync handler in a thread of its own: a future of the thread's end (it also
        settles ``ended`` with the handler's outcome)."""
        done: asyncio.Future[None] = self.loop.create_future()

        def deliver(outcome: tuple[bool, Any]) -> None:
            _settle(done, None)
            _settle(ended, outcome)

        def target() -> None:
            try:
                outcome: tuple[bool, Any] = (True, self.reg.fn(self.ctx))
            except BaseException as exc:
                outcome = (False, exc)
            try:
                self.loop.call_soon_threadsafe(deliver, outcome)
            except RuntimeError:
                pass  # loop closed: the process is going away

        thread = threading.Thread(
            target=target, name=f"task-{self.record.id}-{self.record.name}", daemon=True
        )
        thread.start()
        return done

    async def _record(
        self,
        *,
        outcome: Outcome,
        state: TaskState,
        result: Any,
        error: str | None,
        trace: str | None,
        add_failure: bool,
        not_before: Any,
    ) -> None:
        if self.settled:
            return
        self._cancel_flush()
        rec = self.record
        ok = await self.system.store.finish_run(
            rec.id,
            self.run_id,
            outcome=outcome,
            now=self.system.clock.now(),
            next_state=state,
            not_before=not_before,
            result=result,
            error=error,
            traceback=trace,
            add_failure=add_failure,
            claimed=rec,
            # the last report, even one still waiting for its turn, goes with the outcome
            progress=self._latest,
        )
        final = ok
        self._settle(final)
        level = logging.INFO if outcome is Outcome.COMPLETED else logging.WARNING
        if log.isEnabledFor(level):
            log.log(
                level, "task %s %s %s%s", rec.id, rec.name, outcome, f": {error}" if error else ""
            )
        events = self.system.ctx.events
        if final is not None and events.wants("task.finished"):
            events.publish(task_event("task.finished", final, outcome=outcome.value))

    async def interrupt(self, why: str) -> None:
        """Record this attempt interrupted and re-queue the task (shutdown after the grace)."""
        if self.settled:
            return
        self._cancel_flush()
        ok = await self.system.store.finish_run(
            self.record.id,
            self.run_id,
            outcome=Outcome.INTERRUPTED,
            now=self.system.clock.now(),
            next_state=TaskState.PENDING,
            error=f"interrupted: {why}",
            claimed=self.record,
            progress=self._latest,
        )
        self._settle(ok)
        if ok is not None:
            self.system.ctx.events.publish(
                task_event("task.finished", ok, outcome=Outcome.INTERRUPTED.value)
            )

    def _cancel_flush(self) -> bool:
        """Drop a scheduled progress write; True when one was pending."""
        if self._flush_handle is None:
            return False
        self._flush_handle.cancel()
        self._flush_handle = None
        return True

    def _settle(self, final: TaskRecord | None) -> None:
        self.settled = True
        self.final = final
        self.finished.set()
