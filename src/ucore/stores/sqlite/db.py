"""SQLite connections: quick writes on the event loop, a writer thread, a reader thread.

* **Quick writes** (:meth:`Database.write_quick`: the task queue's and the scheduler's
  writes, a few indexed statements each) are gathered while the event loop runs what is
  ready and run in one transaction from the loop's own thread (:mod:`.quick`).
* **One writer thread** for everything else (bulk writes, migrations, VACUUM), in
  ``BEGIN IMMEDIATE`` transactions. Writes that arrive while a transaction is busy queue up
  and the next transaction runs them all (**group commit**: one commit, so one fsync with
  ``synchronous=FULL``, for many small writes), each inside its own savepoint so that one
  failing write does not undo the others.
* **Readers** use a second connection in its own thread; WAL lets them read while a write
  is in progress.
* Errors of SQLite become :class:`StoreError` with one clear line (damaged file, not a
  database, locked for longer than the busy timeout, read-only, disk full).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ucore.stores.base import StoreError
from ucore.stores.sqlite import checkpoint
from ucore.stores.sqlite.errors import is_lock_error, translate
from ucore.stores.sqlite.quick import QuickWriter

log = logging.getLogger("ucore.stores.sqlite")

T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    fn: Callable[[sqlite3.Connection], Any]
    fut: concurrent.futures.Future[Any]
    #: run outside the group-commit transaction (migrations, VACUUM, checkpoints)
    raw: bool = False


#: The most writes one group commit takes.
MAX_GROUP = 256
#: The writer waits for the write lock itself (its connection's busy timeout is 0): it tries
#: again after these pauses, the last one repeated, for up to 3x the busy timeout. SQLite's
#: own busy handler backs off to 100 ms between tries: beside another process writing in
#: back-to-back short transactions (a purge in batches) it kept missing the gaps and waited
#: up to 2 s; trying every millisecond catches the first gap (docs/performance.md,
#: "Maintenance"). Both ucore processes then poll alike, so neither starves the other.
LOCK_PAUSES = (0.0002, 0.0005, 0.001)
LOCK_WAIT_FACTOR = 3
#: WAL pages after which a commit checkpoints (SQLite's default is 1,000).
AUTOCHECKPOINT_PAGES = 250


def connect(path: Path, *, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    """A connection with UCore's pragmas (WAL, synchronous, busy timeout)."""
    new = not path.exists()
    if new:
        # create it 0600 ourselves; SQLite gives its -wal and -shm files the same mode
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if new or path.stat().st_size == 0:
            # an empty file: let database_optimization give free pages back later
            # (incremental_vacuum); SQLite only takes this before the first table and the
            # switch to WAL
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = _journal_mode_wal(conn, busy_timeout)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode={mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        # ANALYZE (run by PRAGMA optimize, at open and by database_optimization) samples at
        # most this many index rows: a bounded few ms instead of a scan of every table, which
        # held the write lock ~190 ms at open on a 1M-row database (SQLite's recommendation)
        conn.execute("PRAGMA analysis_limit = 400")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _journal_mode_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """``PRAGMA journal_mode = WAL``, tried again for up to the busy timeout.

    Switching a database to WAL, or opening one while another connection is switching it or
    cleaning up its -wal file, can fail with SQLITE_BUSY at once, without the busy handler:
    two processes opening a fresh database together would otherwise fail.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class _Worker(threading.Thread):
    """A thread that owns one connection and runs jobs on it."""

    def __init__(self, name: str, path: Path, opener: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(name=name, daemon=True)
        self.path = path
        self._opener = opener
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.conn: sqlite3.Connection | None = None
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run(self) -> None:
        try:
            self.conn = self._opener()
        except BaseException as exc:
            self.ready.set_exception(exc)
            return
        self.ready.set_result(None)
        try:
            self.serve(self.conn)
        finally:
            self.conn.close()

    def serve(self, conn: sqlite3.Connection) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            _run_alone(conn, job)


def _run_alone(conn: sqlite3.Connection, job: Job) -> None:
    if not job.fut.set_running_or_notify_cancel():
        return
    try:
        job.fut.set_result(job.fn(conn))
    except BaseException as exc:
        job.fut.set_exception(exc)


class _Writer(_Worker):
    """The one writing connection: group commit, and its own wait for the write lock."""

    def __init__(
        self, name: str, path: Path, opener: Callable[[], sqlite3.Connection], busy_timeout: float
    ) -> None:
        super().__init__(name, path, opener)
        self.busy_timeout = busy_timeout
        #: called on this thread with the connection after each commit
        self.on_commit: Callable[[sqlite3.Connection], None] | None = None

    def serve(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA busy_timeout = 0")
        # Checkpoints of 1 MB instead of SQLite's 4 MB: the commit that runs one (and any
        # other process's commit meanwhile) waited up to 300 ms for its fsync beside a purge
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        while True:
            job: Job | None = self.jobs.get()
            if job is None:
                return
            batch: list[Job] = []
            stop = False
            while True:
                if job.raw:
                    self._run_batch(conn, batch)
                    batch = []
                    self._run_raw(conn, job)
                elif job.fut.set_running_or_notify_cancel():
                    batch.append(job)
                if len(batch) >= MAX_GROUP:
                    break
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
            self._run_batch(conn, batch)
            if stop:
                return

    def _begin(self, conn: sqlite3.Connection) -> None:
        self._retrying(conn, lambda c: c.execute("BEGIN IMMEDIATE"))

    def _retrying(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(conn)``, tried again while another connection holds the lock."""
        deadline = time.monotonic() + self.busy_timeout * LOCK_WAIT_FACTOR
        tries = 0
        while True:
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                if not is_lock_error(exc) or time.monotonic() >= deadline:
                    raise
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            time.sleep(LOCK_PAUSES[min(tries, len(LOCK_PAUSES) - 1)])
            tries += 1

    def _run_raw(self, conn: sqlite3.Connection, job: Job) -> None:
        """A job outside the group commit (VACUUM, checkpoints, migrations, ANALYZE): each
        is atomic or resumable, so one that met a lock is simply run again."""
        if not job.fut.set_running_or_notify_cancel():
            return
        try:
            result = self._retrying(conn, job.fn)
        except BaseException as exc:
            job.fut.set_exception(exc)
            return
        self._committed(conn)
        job.fut.set_result(result)

    def _committed(self, conn: sqlite3.Connection) -> None:
        """After a commit: tell the other processes (see :mod:`.wakeup`)."""
        hook = self.on_commit
        if hook is not None:
            try:
                hook(conn)
            except Exception:  # a wake-up is best effort; the data is committed
                log.warning("after-commit hook failed", exc_info=True)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Job]) -> None:
        if not batch:
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            self._begin(conn)
        except BaseException as exc:
            for job in batch:
                job.fut.set_exception(exc)
            return
        single = len(batch) == 1
        try:
            for i, job in enumerate(batch):
                if single:
                    try:
                        outcomes.append((True, job.fn(conn)))
                    except Exception as exc:
                        outcomes.append((False, exc))
                    continue
                conn.execute(f"SAVEPOINT w{i}")
                try:
                    outcomes.append((True, job.fn(conn)))
                except Exception as exc:
                    conn.execute(f"ROLLBACK TO w{i}")
                    outcomes.append((False, exc))
                conn.execute(f"RELEASE w{i}")
            if single and not outcomes[0][0]:
                # a failed write alone: keep nothing of it (as its savepoint would in a group)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")
                self._committed(conn)
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for job in batch:
                job.fut.set_exception(exc)
            return
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                job.fut.set_result(value)
            else:
                job.fut.set_exception(value)


class Database:
    """The connections of one SQLite file. Use from any thread or event loop."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", busy_timeout: float = 5.0) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._writer: _Writer | None = None
        self._reader: _Worker | None = None
        #: the quick writes' checkpoints, at synchronous=NORMAL (:mod:`.checkpoint`)
        self.checkpointer: checkpoint.Checkpointer | None = None
        self._open = False
        self._poll_fallback = -1
        #: data_version as last seen, and how often it changed other than by our own writes
        self._seen_version: int | None = None
        self._foreign = 0
        self.quick = QuickWriter(
            open_conn=self._open_conn,
            to_writer=lambda fn: self._submit(self._writer, fn),
            after_commit=self._after_quick_commit,
            translate=lambda exc: translate(exc, self.path),
        )
        self.on_commit: Callable[[sqlite3.Connection], None] | None = None

    def _open_conn(self) -> sqlite3.Connection:
        return connect(self.path, synchronous=self.synchronous, busy_timeout=self.busy_timeout)

    async def start(self) -> None:
        self._writer = _Writer("ucore-sqlite-writer", self.path, self._open_conn, self.busy_timeout)
        self._writer.on_commit = self._on_commit
        self._writer.start()
        await self._ready(self._writer)
        self._reader = _Worker("ucore-sqlite-reader", self.path, self._open_conn)
        self._reader.start()
        await self._ready(self._reader)
        if checkpoint.wanted(self.synchronous):
            self.checkpointer = checkpoint.Checkpointer("ucore-sqlite-checkpoint", self._open_conn)
            self.checkpointer.start()
            self.quick.autocheckpoint = checkpoint.QUICK_AUTOCHECKPOINT_PAGES
        try:
            self.quick.connection()
        except sqlite3.Error as exc:
            await self.stop()
            raise translate(exc, self.path) from None
        self._open = True

    async def _ready(self, worker: _Worker) -> None:
        try:
            await asyncio.wrap_future(worker.ready)
        except sqlite3.Error as exc:
            await self.stop()
            raise translate(exc, self.path) from None
        except OSError as exc:  # creating the file or its directory (connect())
            await self.stop()
            raise StoreError(f"cannot open database {self.path} ({exc.strerror or exc})") from None

    def data_version(self) -> int:
        """``PRAGMA data_version`` of the quick writes' connection, read on the loop's thread.

        It changes when another connection commits (this process's writer thread
        included), never for that connection's own commits, so the quick writes need no
        note. It is a read of the shared-memory WAL index, microseconds, no disk: cheap
        enough for the event loop's once-a-second check, where a thread hop would cost three
        wake-ups.
        """
        conn = self.quick.conn
        if conn is None or not self._open:
            raise StoreError(f"database {self.path} is closed")
        try:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            # busy in a rare recovery: report "changed" so the caller looks again
            self._poll_fallback -= 1
            return self._poll_fallback

    async def stop(self) -> None:
        self._open = False
        await self.quick.close()  # commits the quick writes still gathering
        if self.checkpointer is not None:
            self.checkpointer.stop()
            if self.checkpointer.is_alive():
                await asyncio.to_thread(self.checkpointer.join)
            self.checkpointer = None
        for worker in (self._reader, self._writer):
            if worker is not None and worker.is_alive():
                worker.jobs.put(None)
                await asyncio.to_thread(worker.join)
        self._reader = self._writer = None

    def _submit(
        self, worker: _Worker | None, fn: Callable[[sqlite3.Connection], T], raw: bool = False
    ) -> concurrent.futures.Future[T]:
        if worker is None:
            raise StoreError(f"database {self.path} is closed")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        worker.jobs.put(Job(fn, fut, raw))
        return fut

    def _on_commit(self, conn: sqlite3.Connection) -> None:
        hook = self.on_commit
        if hook is not None:
            hook(conn)

    def foreign_changes(self) -> int:
        """A counter that moves when another process commits (read inline, microseconds).

        :meth:`data_version` does not move for the quick writes' own commits; after each
        write of the writer thread the value is noted (:meth:`_own_write`) so that those
        do not look foreign either. A foreign commit that lands in the instant between such
        a write and its note is missed here, but a ucore process also sends a wake-up
        datagram (:mod:`.wakeup`), which is not.
        """
        version = self.data_version()
        if version != self._seen_version:
            if self._seen_version is not None:
                self._foreign += 1
            self._seen_version = version
        return self._foreign

    def _own_write(self) -> None:
        if self._open:
            with contextlib.suppress(StoreError):
                self._seen_version = self.data_version()

    # -- quick writes ---------------------------------------------------------------------
    def write_quick(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """A small write (a few indexed statements): await the returned future for its result.

        Gathered with the other quick writes of the moment and committed with them from the
        event loop's thread (see :mod:`.quick`). ``fn`` may run twice (see
        :func:`~.quick.run_group`): it must change nothing but the database.
        """
        if not self._open:
            raise StoreError(f"database {self.path} is closed")
        return self.quick.submit(fn)

    def quick_connection(self) -> sqlite3.Connection:
        """The connection of the quick writes (opened on first use)."""
        return self.quick.connection()

    def _after_quick_commit(self, conn: sqlite3.Connection, own: bool) -> None:
        if not own:  # a group the writer thread committed (it woke the others itself)
            self._own_write()
            return
        if self.checkpointer is not None:
            self.checkpointer.note_commit()
        with contextlib.suppress(Exception):  # a wake-up is best effort
            self._on_commit(conn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside a write transaction (grouped with other writes)."""
        try:
            return await asyncio.wrap_future(self._submit(self._writer, fn))
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        finally:
            self._own_write()

    async def write_raw(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the writer connection outside any transaction of ours.

        For statements that must not run in a transaction (VACUUM, wal_checkpoint) and for
        code that manages its own (migrations).
        """
        try:
            return await asyncio.wrap_future(self._submit(self._writer, fn, raw=True))
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        finally:
            self._own_write()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the reader connection (autocommit: each statement is a snapshot)."""
        try:
            return await asyncio.wrap_future(self._submit(self._reader, fn))
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`write` for a thread that is not the event loop's (blocking)."""
        try:
            return self._submit(self._writer, fn).result()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return self._submit(self._reader, fn).result()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
