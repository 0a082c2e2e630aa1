"""One attempt of one task: run the handler, watch time and stop requests, record the outcome.

Async handlers run as asyncio tasks on the loop; sync handlers run in a thread of their own
(never a shared pool, so a handler that ignores a stop cannot starve the others).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import traceback as tb
from collections.abc import Callable, Coroutine
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


#: what a handler's ``ended`` future holds when its timeout came first
_TIMED_OUT = object()


def _settle(waiter: asyncio.Future[Any], value: Any) -> None:
    if not waiter.done():
        waiter.set_result(value)


def _never_started(
    coro: Coroutine[Any, Any, Any], ended: asyncio.Future[Any], _: asyncio.Future[Any]
) -> None:
    """A handler's task cancelled before its first step never ran :func:`_guarded`: its
    end is that cancellation (and the handler's coroutine is closed, never awaited)."""
    if not ended.done():
        coro.close()
        ended.set_result((False, asyncio.CancelledError()))


async def _guarded(coro: Coroutine[Any, Any, Any], ended: asyncio.Future[Any]) -> None:
    """An async handler's task: runs it and settles ``ended`` with its outcome.

    The task itself ends without an exception (a stop's cancellation included), so a
    handler abandoned after its timeout leaves nothing unretrieved behind.
    """
    try:
        outcome: tuple[bool, Any] = (True, await coro)
    except (Exception, asyncio.CancelledError) as exc:
        outcome = (False, exc)
    _settle(ended, outcome)


async def _ended(
    loop: asyncio.AbstractEventLoop, task: asyncio.Future[Any], seconds: float | None
) -> bool:
    """Wait until ``task`` ends (True) or ``seconds`` pass (False); never cancels it (the
    grace a handler gets after its timeout)."""
    if task.done():
        return True
    waiter: asyncio.Future[bool] = loop.create_future()

    def on_done(_: asyncio.Future[Any]) -> None:
        _settle(waiter, True)

    task.add_done_callback(on_done)
    timer = None if seconds is None else loop.call_later(seconds, _settle, waiter, False)
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()
        task.remove_done_callback(on_done)


class Execution:
    def __init__(
        self,
        system: TaskSystem,
        record: TaskRecord,
        reg: Registration,
        *,
        on_returned: Callable[[], None] | None = None,
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
        #: set once the outcome is written (or given up): later results are ignored
        self.settled = False
        self.final: TaskRecord | None = None
        self._handler_task: asyncio.Future[Any] | None = None
        self._latest: tuple[float | None, str | None] = (None, None)
        self._last_write = float("-inf")
        self._flush_handle: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()

    # -- stop requests --------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Ask the handler to stop (cooperative for threads, task.cancel() for coroutines)."""
        self.ctx.request_stop(reason)
        task = self._handler_task
        if task is not None and not task.done() and self.reg.is_async:
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
        rec = self.record
        events = self.system.ctx.events
        if events.wants("task.started"):
            events.publish(task_event("task.started", rec))
        log.info("task %s %s started (attempt %s)", rec.id, rec.name, rec.attempts)
        outcome = Outcome.COMPLETED
        state = TaskState.COMPLETED
        result: Any = None
        error: str | None = None
        trace: str | None = None
        add_failure = False
        not_before = None
        try:
            self.ctx.params = self.reg.validate(rec.params)
            result = to_json(await self._call())
        except TaskCancelled as stop:
            outcome, state, error = self._stopped(stop.reason)
            add_failure = outcome is Outcome.TIMED_OUT
        except asyncio.CancelledError:
            if not self.ctx.stop_requested:
                raise  # the worker itself is being torn down
            outcome, state, error = self._stopped(self.ctx.stop_reason or "cancel")
            add_failure = outcome is Outcome.TIMED_OUT
        except Exception as exc:
            outcome, state = Outcome.FAILED, TaskState.FAILED
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            trace = "".join(tb.format_exception(exc))
            add_failure = True
        self.returned = True
        if self._on_returned is not None:
            self._on_returned()
        if add_failure and rec.failures + 1 < rec.max_attempts:
            state = TaskState.PENDING
            delay = self.reg.backoff(rec.failures + 1)
            not_before = self.system.clock.now() + timedelta(seconds=delay)
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

    async def _call(self) -> Any:
        """Run the handler; its result, or its exception raised here."""
        loop = self.loop
        #: the handler's end, (True, result) or (False, exception); or _TIMED_OUT
        ended: asyncio.Future[Any] = loop.create_future()
        if self.reg.is_async:
            # the handler's own task settles ``ended`` as it ends: one hop back to this
            # execution, where waiting on the task would take two (its done callbacks)
            coro = self.reg.fn(self.ctx)
            started = asyncio.ensure_future(_guarded(coro, ended))
            started.add_done_callback(functools.partial(_never_started, coro, ended))
            self._handler_task = started
        else:
            self._handler_task = self._start_thread(ended)
        if self.ctx.stop_requested:  # asked before it started
            self.stop(self.ctx.stop_reason or "cancel")
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
        task = self._handler_task
        await _ended(loop, task, STOP_GRACE_SECONDS)
        if not task.done():
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
