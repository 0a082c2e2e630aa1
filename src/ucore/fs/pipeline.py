"""The scan's traffic with the store, from its worker thread.

A scan walks the disk in a thread of its own; the store is async and lives on the event
loop. :class:`LoopBridge` runs the store's coroutines there. :class:`BatchWriter` sends the
scan's batches in order, each one transaction, keeping **one batch in flight**: the walk goes
on while the previous batch commits, and waits only when the next one is ready to go.

That overlap pays only because the store inserts new records with multi-row statements
(``ucore.stores.sqlite.library``): with one ``executemany`` row at a time, the database
thread dropped and retook the GIL at every row while the walk did the same at every
``lstat``, and the two threads handing the GIL back and forth made a 200,000-file first
scan slower than waiting for each batch (docs/performance.md, "Library scan").
``in_flight=0`` waits for each batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ucore.stores.base import Store
from ucore.stores.records import ScanBatch, ScanBatchResult

T = TypeVar("T")


class LoopBridge:
    """Runs the store's coroutines on the event loop from a worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store: Store) -> None:
        self.loop = loop
        self.store = store

    def start(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.start(coro).result()


class BatchWriter:
    """Writes scan batches in order; ``on_result`` gets each one's result in the scan's
    thread. With ``in_flight=1`` the walk goes on while the previous batch commits; a batch
    that failed raises at the next ``submit`` or ``finish``, before anything else is sent."""

    def __init__(
        self,
        bridge: LoopBridge,
        on_result: Callable[[ScanBatchResult], None],
        *,
        in_flight: int = 1,
    ) -> None:
        self.bridge = bridge
        self.on_result = on_result
        self.in_flight = in_flight
        self._pending: concurrent.futures.Future[ScanBatchResult] | None = None
        self.batches = 0

    def submit(self, batch: ScanBatch) -> None:
        self.finish()
        self.batches += 1
        future = self.bridge.start(self.bridge.store.apply_scan_batch(batch))
        if self.in_flight:
            self._pending = future
        else:
            self.on_result(future.result())

    def finish(self) -> None:
        if self._pending is not None:
            future, self._pending = self._pending, None
            self.on_result(future.result())
