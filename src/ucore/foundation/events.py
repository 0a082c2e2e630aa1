"""An in-process event bus: every system publishes, the panel and the CLI subscribe.

Subscribers are called on the event loop's thread, in order, right when an event is
published (a thread publishes through :meth:`EventBus.publish_threadsafe`). A subscriber
that raises is logged and does not disturb the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ucore.events")


@dataclass(frozen=True)
class Event:
    """``kind`` names what happened, e.g. ``task.started`` or ``schedule.fired``."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[str | None, Subscriber]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        #: kind -> whether a subscriber takes it (cleared when the subscribers change)
        self._wanted: dict[str, bool] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that subscribers run on (threads publish into it)."""
        self._loop = loop

    def subscribe(self, callback: Subscriber, prefix: str | None = None) -> Callable[[], None]:
        """Call ``callback`` for every event (whose kind starts with ``prefix``).

        Returns a function that unsubscribes.
        """
        entry = (prefix, callback)
        self._subscribers.append(entry)
        self._wanted.clear()

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
                self._wanted.clear()

        return unsubscribe

    def wants(self, kind: str) -> bool:
        """Whether an event of ``kind`` would reach a subscriber now (a publisher whose event
        is costly to build may skip it when not)."""
        wanted = self._wanted.get(kind)
        if wanted is None:
            wanted = self._wanted[kind] = any(
                prefix is None or kind.startswith(prefix) for prefix, _ in self._subscribers
            )
        return wanted

    def publish(self, event: Event) -> None:
        for prefix, callback in list(self._subscribers):
            if prefix is not None and not event.kind.startswith(prefix):
                continue
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", event.kind)

    def publish_threadsafe(self, event: Event) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.publish(event)
        else:
            loop.call_soon_threadsafe(self.publish, event)

    @asynccontextmanager
    async def stream(self, prefix: str | None = None) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue that receives the events while the ``async with`` block runs."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait, prefix)
        try:
            yield queue
        finally:
            unsubscribe()
