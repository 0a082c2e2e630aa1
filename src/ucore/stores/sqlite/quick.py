"""Quick writes: the task queue's and the scheduler's small writes, in groups, from the loop.

A quick write is a few indexed statements (submit, claim, finish, a heartbeat, a schedule's
fire). Handing each to the writer thread and back cost more than the write itself: a wake-up
of that thread, the GIL, a wake-up of the loop, per write. So instead:

* **Gathered.** The quick writes of one moment form a group: the group waits while the
  event loop runs the callbacks that are ready (up to :data:`DEFERRALS` rounds), so the
  writes those callbacks make (a finished task's outcome, the claim of its successor, the
  next submit) join it.
* **Run on the loop's thread.** The group's statements run right there, in one
  ``BEGIN IMMEDIATE`` transaction taken without waiting; only when one of them fails is
  the group run again, each write under a savepoint of its own
  (:meth:`QuickWriter._begin_and_run`).
* **Committed once**, right there too (at ``synchronous=FULL`` one fsync, during which the
  loop waits; other threads run). Callers learn their result only after the commit.
  Committing on another thread instead, so that the loop could go on meanwhile, made the
  task queue 1.8x slower: every write of the queue depends on the commit before it, so
  nothing overlapped, and each commit paid two thread wake-ups (docs/performance.md).
* **Lock taken?** When another connection holds the write lock (another process, or this
  one's writer thread in a bulk write), the group goes to the writer thread, which waits
  for the lock; later groups follow it there until it is done, so quick writes are
  committed in the order they were made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ucore.stores.base import StoreError
from ucore.stores.sqlite.errors import is_lock_error

T = TypeVar("T")

#: How many times a group waits for the loop to run the callbacks that are ready.
DEFERRALS = 2

Outcome = tuple[bool, Any]  # (True, result) or (False, exception)
WriteFn = Callable[[sqlite3.Connection], Any]
Jobs = list[tuple[WriteFn, "asyncio.Future[Any]"]]


def run_group(conn: sqlite3.Connection, fns: Sequence[WriteFn]) -> list[Outcome]:
    """Run ``fns`` in the open transaction; one that fails leaves none of its writes.

    Optimistic: they run one after the other under one savepoint. Only when one fails is the
    group undone and run again, each in a savepoint of its own, so the others still land.
    So each ``fn`` may run twice and must change nothing but the database.
    """
    conn.execute("SAVEPOINT q")
    try:
        return [(True, fn(conn)) for fn in fns]
    except Exception as exc:
        conn.execute("ROLLBACK TO q")
        if len(fns) == 1:
            return [(False, exc)]
    return run_each(conn, fns)


def run_each(conn: sqlite3.Connection, fns: Sequence[WriteFn]) -> list[Outcome]:
    """Run ``fns`` in the open transaction, each in a savepoint of its own."""
    outcomes: list[Outcome] = []
    for i, fn in enumerate(fns):
        conn.execute(f"SAVEPOINT q{i}")
        try:
            outcomes.append((True, fn(conn)))
        except Exception as exc:
            conn.execute(f"ROLLBACK TO q{i}")
            outcomes.append((False, exc))
        conn.execute(f"RELEASE q{i}")
    return outcomes


class QuickWriter:
    """The quick writes of one database file (see the module's description)."""

    def __init__(
        self,
        *,
        open_conn: Callable[[], sqlite3.Connection],
        to_writer: Callable[[WriteFn], concurrent.futures.Future[Any]],
        after_commit: Callable[[sqlite3.Connection, bool], None],
        translate: Callable[[sqlite3.Error], StoreError],
    ) -> None:
        self._open_conn = open_conn
        #: hands a write to the writer thread
        self._to_writer = to_writer
        #: on the loop after each commit of quick writes (``True``: this connection's own)
        self._after_commit = after_commit
        self._translate = translate
        self.conn: sqlite3.Connection | None = None
        #: this connection's ``wal_autocheckpoint`` (None: SQLite's)
        self.autocheckpoint: int | None = None
        self._pending: Jobs = []
        self._handle: asyncio.Handle | None = None
        self._rounds = 0
        #: groups handed to the writer thread and not yet done
        self._on_writer: set[asyncio.Future[None]] = set()
        self.closed = False

    def connection(self) -> sqlite3.Connection:
        """The quick writes' connection (opened on first use)."""
        if self.conn is None:
            conn = self._open_conn()
            conn.execute("PRAGMA busy_timeout = 0")  # never wait on the loop
            if self.autocheckpoint is not None:
                conn.execute(f"PRAGMA wal_autocheckpoint = {int(self.autocheckpoint)}")
            self.conn = conn
        return self.conn

    # -- submitting --------------------------------------------------------------------
    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self.closed:
            raise StoreError("database is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, fut))
        if self._handle is None:
            self._handle = loop.call_soon(self._flush, loop)
        return fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        # asyncio's own loops keep the callbacks ready to run in ``_ready``; on a loop
        # without it (qasync) the group goes at once
        ready = getattr(loop, "_ready", None)
        if ready and self._rounds < DEFERRALS:
            self._rounds += 1
            self._handle = loop.call_soon(self._flush, loop)
            return
        self._handle = None
        self._rounds = 0
        jobs = [(fn, fut) for fn, fut in self._pending if not fut.cancelled()]
        self._pending = []
        if not jobs:
            return
        fns = [fn for fn, _ in jobs]
        if not self._on_writer:
            try:
                outcomes = self._begin_and_run(fns)
            except sqlite3.Error as exc:
                self._deliver(jobs, [(False, exc)] * len(jobs))
                return
            if outcomes is not None:
                self._commit(jobs, outcomes)
                return
        self._hand_to_writer(loop, jobs, fns)

    def _begin_and_run(self, fns: list[WriteFn]) -> list[Outcome] | None:
        """Open the transaction and run the group; None (nothing done) if the lock is taken.

        Optimistic, like :func:`run_group`, but without its savepoint: the transaction is
        the group's own, so when a write fails it is rolled back and the group run again
        in a new one, each write in a savepoint of its own (:func:`run_each`).
        """
        conn = self.connection()
        if not self._begin(conn):
            return None
        try:
            return [(True, fn(conn)) for fn in fns]
        except Exception:
            self._rollback()
        except BaseException:
            self._rollback()
            raise
        if not self._begin(conn):
            return None
        try:
            return run_each(conn, fns)
        except BaseException:
            self._rollback()
            raise

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> bool:
        """``BEGIN IMMEDIATE`` without waiting: False when another connection holds the lock."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_lock_error(exc):
                return False
            raise
        return True

    def _rollback(self) -> None:
        conn = self.conn
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    # -- committing --------------------------------------------------------------------
    def _commit(self, jobs: Jobs, outcomes: list[Outcome]) -> None:
        assert self.conn is not None
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._deliver(jobs, [(False, exc)] * len(jobs))
            return
        self._deliver(jobs, outcomes)
        self._after_commit(self.conn, True)

    def _hand_to_writer(
        self, loop: asyncio.AbstractEventLoop, jobs: Jobs, fns: list[WriteFn]
    ) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._on_writer.add(waiter)

        def done(f: concurrent.futures.Future[Any]) -> None:  # on the writer thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._writer_done, waiter, jobs, f)

        try:
            handed = self._to_writer(lambda conn: run_group(conn, fns))
        except StoreError as exc:  # the writer thread is gone (closing)
            self._on_writer.discard(waiter)
            waiter.set_result(None)
            self._deliver(jobs, [(False, exc)] * len(jobs))
            return
        handed.add_done_callback(done)

    def _writer_done(
        self, waiter: asyncio.Future[None], jobs: Jobs, f: concurrent.futures.Future[Any]
    ) -> None:
        self._on_writer.discard(waiter)
        waiter.set_result(None)
        exc = f.exception()
        self._deliver(jobs, [(False, exc)] * len(jobs) if exc else f.result())
        if self.conn is not None:
            self._after_commit(self.conn, False)

    def _deliver(self, jobs: Jobs, outcomes: list[Outcome]) -> None:
        for (_, fut), (ok, value) in zip(jobs, outcomes, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            elif isinstance(value, sqlite3.Error):
                fut.set_exception(self._translate(value))
            else:
                fut.set_exception(value)

    # -- closing -----------------------------------------------------------------------
    async def close(self) -> None:
        """Commit what is gathering, wait for groups on the writer thread, close."""
        loop = asyncio.get_running_loop()
        while True:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
                self._rounds = DEFERRALS
                self._flush(loop)
            if not self._on_writer:
                break
            await asyncio.wait(self._on_writer)
        self.closed = True
        if self.conn is not None:
            self.conn.close()
            self.conn = None
