"""What a running handler gets: its parameters, progress, cancellation, a logger.

The same context serves async handlers (on the event loop) and sync handlers (in a thread of
their own). Everything here may be called from either.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ucore.tasks.errors import TaskCancelled

if TYPE_CHECKING:
    from ucore.foundation.context import Context

T = TypeVar("T")
#: guards the stop flag against a waiter's first wait (one lock for all: held for an instant)
_STOP_LOCK = threading.Lock()
ProgressSink = Callable[[float | None, str | None], None]


class TaskContext:
    def __init__(
        self,
        *,
        task_id: int,
        name: str,
        attempt: int,
        params: Any,
        origin: str,
        app: Context,
        loop: asyncio.AbstractEventLoop,
        on_progress: ProgressSink,
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.attempt = attempt
        self.params = params
        self.origin = origin
        #: The process's shared context: config, clock, systems (``app.system("store")``).
        self.app = app
        self._log: logging.Logger | None = None
        self._loop = loop
        self._on_progress = on_progress
        self._stopped = False
        #: made when a sync handler first waits (most tasks never do)
        self._stop_event: threading.Event | None = None
        self._reason: str | None = None

    @property
    def log(self) -> logging.Logger:
        """The handler's logger, ``ucore.task.<name>``."""
        if self._log is None:
            self._log = logging.getLogger(f"ucore.task.{self.name}")
        return self._log

    # -- progress -----------------------------------------------------------------------
    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress: ``done`` of ``total`` units (fraction = done / total).

        Without ``total``, ``done`` is taken as a fraction in [0, 1]. Subscribers in this
        process see it at once; the store gets it at a bounded rate.
        """
        fraction = (done / total if total > 0 else 1.0) if total is not None else done
        fraction = min(1.0, max(0.0, float(fraction)))
        self._on_progress(fraction, message)

    def message(self, text: str) -> None:
        """Report what is happening without a fraction."""
        self._on_progress(None, text)

    # -- cancellation -------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return self._stopped

    @property
    def stop_reason(self) -> str | None:
        """``cancel``, ``timeout``, ``shutdown`` or ``lease``; None while nobody asked."""
        return self._reason

    def request_stop(self, reason: str) -> None:
        with _STOP_LOCK:
            if self._stopped:
                return
            self._reason = reason
            self._stopped = True
            event = self._stop_event
        if event is not None:
            event.set()

    def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` when a stop was asked; call it often (< 1 s apart)."""
        if self._stopped:
            raise TaskCancelled(self._reason or "cancel")

    def wait(self, seconds: float) -> None:
        """Sleep in a sync handler, waking at once (with TaskCancelled) on a stop request."""
        with _STOP_LOCK:
            event = self._stop_event
            if event is None:
                event = self._stop_event = threading.Event()
            if self._stopped:
                event.set()
        if event.wait(max(0.0, seconds)):
            raise TaskCancelled(self._reason or "cancel")

    async def sleep(self, seconds: float) -> None:
        """Sleep in an async handler; a stop request cancels the handler's coroutine."""
        self.check_cancelled()
        await asyncio.sleep(seconds)
        self.check_cancelled()

    # -- reaching the event loop from a thread ------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """From a sync handler's thread: run ``coro`` on the event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
