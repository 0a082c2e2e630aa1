"""The async :class:`Store` interface: everything the layers above keep in the database.

One database holds everything (DESIGN.md §2). Each backend implements this interface and
passes the one contract suite (tests/stores/). Methods take the current time from the caller;
a store never reads a clock.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from ucore.foundation.errors import UCoreError
from ucore.stores.records import (
    Claimed,
    ClaimRequest,
    DbStats,
    DirRecord,
    FileRecord,
    FileStates,
    FireResult,
    JournalEntry,
    JournalFilter,
    NewJournalEntry,
    NewRoot,
    NewTask,
    NodeRecord,
    Outcome,
    Priority,
    PurgeBatch,
    Recovered,
    RootRecord,
    RootStats,
    RunRecord,
    ScanBatch,
    ScanBatchResult,
    ScheduleState,
    TaskFilter,
    TaskRecord,
    TaskState,
    ThumbnailJob,
    ThumbnailUpdate,
)

#: One directory's records for the orphan check: {name: file id} of all of them, and
#: (file id, name, missing_since) of those marked missing.
PresenceRows = tuple[dict[str, int], list[tuple[int, str, datetime]]]


class StoreError(UCoreError):
    """The database cannot be used: damaged, unreadable, not ours, too new, …"""


class StoreLockedError(StoreError):
    """Another process holds the database lock for longer than the busy timeout."""


class MissingRootError(UCoreError):
    """A library root id that is not (or no longer) in the database."""


class Store(ABC):
    """A connection to the one database of a UCore installation."""

    #: "sqlite" or "postgresql"
    kind: str = ""

    @property
    @abstractmethod
    def display_url(self) -> str:
        """The URL with any password redacted."""

    # -- lifecycle ----------------------------------------------------------------------
    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations under a lock)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def schema_version(self) -> int: ...

    #: How long after :meth:`listen` other processes may still send this one no wake-up
    #: (they learn of a new node at their next look at the nodes): poll meanwhile.
    listen_warmup_seconds: float = 0.0

    def listen(self, node_id: str, callback: Callable[[], None]) -> bool:
        """Call ``callback`` on the running loop when another process commits (a push
        wake-up: SQLite's datagrams, PostgreSQL's LISTEN). False: not available, poll
        :meth:`change_token` instead."""
        return False

    @abstractmethod
    async def change_token(self) -> int:
        """A cheap number that changes when another process commits (the fallback wake-up
        check; this process's own commits do not change it)."""

    @abstractmethod
    async def integrity_check(self) -> list[str]:
        """Problems found by the backend's own consistency check; empty when ok."""

    # -- tasks --------------------------------------------------------------------------
    @abstractmethod
    async def insert_task(self, task: NewTask) -> tuple[int, bool]:
        """Store a new pending task; returns (id, created).

        With a ``unique_key``, when a task with that key is pending or running, nothing is
        inserted and its id is returned with ``created`` False.
        """

    @abstractmethod
    async def get_task(self, task_id: int) -> TaskRecord | None: ...

    @abstractmethod
    async def list_tasks(self, flt: TaskFilter) -> list[TaskRecord]:
        """Newest first."""

    def insert_and_claim(
        self, task: NewTask, request: ClaimRequest
    ) -> Awaitable[tuple[int, bool, TaskRecord | None]]:
        """:meth:`insert_task`, and the new task claimed under ``request``'s lease when it is
        due now: ``(id, created, the claimed record or None)``. Nothing else is claimed.

        For a worker pool that knows no other task is due for it (the submit's fast path):
        one transaction where a backend can (this default takes two).
        """
        return self._insert_then_claim(task, request)

    async def _insert_then_claim(
        self, task: NewTask, request: ClaimRequest
    ) -> tuple[int, bool, TaskRecord | None]:
        task_id, created = await self.insert_task(task)
        if not created:
            return task_id, False, None
        claimed = await self.claim_tasks(dataclasses.replace(request, task_id=task_id, limit=1))
        return task_id, True, claimed.records[0] if claimed.records else None

    @abstractmethod
    async def claim_tasks(self, request: ClaimRequest) -> Claimed:
        """Atomically take up to ``request.limit`` due pending tasks (highest priority, then
        oldest), each marked running under the node's lease with its run-history row open.

        Two claims never take the same task. When fewer than the limit were due, says when
        the next delayed task comes due (so the caller sleeps until then).
        """

    async def claim_task(
        self,
        *,
        node_id: str,
        host: str,
        pid: int,
        now: datetime,
        lease_until: datetime,
        min_priority: Priority = Priority.LOW,
        task_id: int | None = None,
        names: frozenset[str] | None = None,
    ) -> TaskRecord | None:
        """:meth:`claim_tasks` for one task: the task, or None when none is due."""
        claimed = await self.claim_tasks(
            ClaimRequest(
                node_id=node_id,
                host=host,
                pid=pid,
                now=now,
                lease_until=lease_until,
                min_priority=min_priority,
                task_id=task_id,
                names=names,
            )
        )
        return claimed.records[0] if claimed.records else None

    @abstractmethod
    async def renew_leases(self, node_id: str, task_ids: list[int], until: datetime) -> set[int]:
        """Extend the leases this node holds; returns the ids it still holds."""

    @abstractmethod
    async def set_progress(
        self, task_id: int, run_id: int, fraction: float | None, message: str | None
    ) -> None: ...

    @abstractmethod
    async def finish_run(
        self,
        task_id: int,
        run_id: int,
        *,
        outcome: Outcome,
        now: datetime,
        next_state: TaskState,
        not_before: datetime | None = None,
        result: Any = None,
        error: str | None = None,
        traceback: str | None = None,
        add_failure: bool = False,
        add_interruption: bool = False,
        claimed: TaskRecord | None = None,
        progress: tuple[float | None, str | None] | None = None,
    ) -> TaskRecord | None:
        """Close the attempt ``run_id`` and move the task to ``next_state``.

        Returns the task as it is now. Applies only while the task is still running under
        that attempt (None otherwise, e.g. when its lease expired and another node took it).
        ``claimed``: the record of this attempt as its claim returned it; the store may then
        build the answer from it and the few columns that change while a task runs instead
        of reading the whole row back (the same record either way). ``progress``: the
        attempt's last report (fraction, message), stored with the outcome; None keeps the
        stored one. A re-queued task's progress is cleared either way.
        """

    @abstractmethod
    async def request_cancel(self, task_id: int, now: datetime) -> TaskRecord | None:
        """Cancel a pending task at once, or flag a running one; the task, or None (no such id)."""

    @abstractmethod
    async def cancel_requests(self, task_ids: list[int]) -> set[int]:
        """Which of these running tasks have a cancel request."""

    @abstractmethod
    async def recover_expired(self, now: datetime, max_interruptions: int) -> list[Recovered]:
        """Running tasks whose lease expired: record the attempt interrupted and re-queue."""

    @abstractmethod
    async def recover_nodes(
        self, node_ids: list[str], now: datetime, max_interruptions: int
    ) -> list[Recovered]:
        """Like :meth:`recover_expired` for the tasks of nodes known to be dead."""

    @abstractmethod
    async def promote_task(self, task_id: int, priority: Priority) -> bool:
        """Raise a pending task's priority (never lowers it); False if not pending."""

    @abstractmethod
    async def next_due(self, now: datetime) -> datetime | None:
        """The earliest ``not_before`` of a pending task that is not due yet."""

    @abstractmethod
    async def list_runs(
        self, *, task_id: int | None = None, name: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Run history, newest first."""

    # -- nodes --------------------------------------------------------------------------
    @abstractmethod
    async def register_node(self, node: NodeRecord) -> None: ...

    @abstractmethod
    async def heartbeat(self, node_id: str, now: datetime) -> None: ...

    @abstractmethod
    async def remove_nodes(self, node_ids: list[str]) -> None: ...

    @abstractmethod
    async def list_nodes(self) -> list[NodeRecord]: ...

    # -- schedule state -----------------------------------------------------------------
    @abstractmethod
    async def schedule_states(self) -> dict[str, ScheduleState]: ...

    @abstractmethod
    async def init_schedule(
        self,
        name: str,
        *,
        nominal_next: datetime | None,
        next_fire: datetime | None,
        definition_hash: str,
    ) -> ScheduleState:
        """Create the state of a schedule seen for the first time; return the stored state.

        When a state exists already it is returned unchanged (another process was first).
        """

    @abstractmethod
    async def fire_schedule(
        self,
        name: str,
        *,
        expected_next: datetime | None,
        nominal_next: datetime | None,
        next_fire: datetime | None,
        now: datetime,
        task: NewTask,
    ) -> FireResult:
        """Fire one due time, atomically: exactly one caller per stored ``next_fire`` wins.

        In one transaction: if the stored next fire is not ``expected_next``, another
        process fired it (``reason="taken"``); if a task with ``task.unique_key`` is pending
        or running, the due time is skipped and the skip recorded (no overlap); otherwise
        the task is inserted and the state advanced to the new times.
        """

    @abstractmethod
    async def advance_schedule(
        self,
        name: str,
        *,
        expected_next: datetime | None,
        nominal_next: datetime | None,
        next_fire: datetime | None,
        skip_at: datetime | None = None,
        skip_reason: str | None = None,
    ) -> bool:
        """Move the next fire without firing (compare-and-set), recording a skip if given."""

    @abstractmethod
    async def reschedule(
        self,
        name: str,
        *,
        nominal_next: datetime | None,
        next_fire: datetime | None,
        definition_hash: str,
    ) -> None:
        """Set the next fire unconditionally (the schedule's definition changed)."""

    @abstractmethod
    async def record_schedule_skip(self, name: str, at: datetime, reason: str) -> None: ...

    # ====================================================================================
    # Library (UCoreFS): roots, directories, file records, thumbnails, and the journal.
    # Paths are relative to their root ("/" separators, "" = the root); names are the OS's
    # str form and round-trip exactly, undecodable bytes included (ucore.stores.names).
    # ====================================================================================

    # -- library: roots -----------------------------------------------------------------
    @abstractmethod
    async def insert_root(self, root: NewRoot) -> tuple[RootRecord, bool]:
        """Store a new root; returns (record, created). A root with the same path is
        returned unchanged with ``created`` False."""

    @abstractmethod
    async def get_root(self, root_id: int) -> RootRecord | None: ...

    @abstractmethod
    async def list_roots(self) -> list[RootRecord]:
        """Oldest first."""

    @abstractmethod
    async def set_root_device(self, root_id: int, old_device: int, new_device: int) -> None:
        """The root's volume got another device number (a reboot renumbered it): move the
        root and the directories recorded on ``old_device`` to ``new_device``."""

    @abstractmethod
    async def set_root_scanned(self, root_id: int, at: datetime, task_id: int | None) -> None:
        """Record a finished scan of the root."""

    @abstractmethod
    async def delete_root(self, root_id: int, *, batch: int = 5000) -> int:
        """Remove the root with its directories and file records, in short transactions of
        at most ``batch`` rows (the root's row goes last, so a retry finishes the job).
        Returns the number of file records removed; raises MissingRootError for an unknown id.
        """

    @abstractmethod
    async def root_stats(self) -> dict[int, RootStats]:
        """Per root id: file records, their bytes, and thumbnails by state."""

    @abstractmethod
    async def file_counts(self) -> dict[int, int]:
        """Per root id: the number of file records, all roots in one snapshot (cheaper than
        :meth:`root_stats`: an index count, no sort); a root without records may be absent."""

    # -- library: directories and file records ------------------------------------------
    @abstractmethod
    async def list_dirs(self, root_id: int) -> list[DirRecord]:
        """Every indexed directory of the root."""

    @abstractmethod
    async def file_states(self, dir_ids: list[int]) -> dict[int, FileStates]:
        """The file records of these directories as a scan compares them, by directory id
        (a directory without records is absent)."""

    @abstractmethod
    async def apply_scan_batch(self, batch: ScanBatch) -> ScanBatchResult:
        """Write one batch of a scan (see :class:`ScanBatch`). New files are upserted, so two
        scans of one root running at once do not fail. Raises MissingRootError when the root
        was removed meanwhile."""

    @abstractmethod
    async def list_files(
        self, root_id: int, *, after_id: int = 0, limit: int = 1000
    ) -> list[FileRecord]:
        """The root's file records in id order, from ``after_id`` (exclusive)."""

    @abstractmethod
    async def presence_rows(self, dir_ids: list[int]) -> dict[int, PresenceRows]:
        """The file records of these directories as the orphan check needs them: by
        directory id, ``({name: file id} of every record, [(file id, name, missing_since)]
        of the marked ones)`` (a directory without records is absent)."""

    # Writes of file records outside a scan batch must clear the digest of their
    # directories (see DirRecord): these two do; use them (the orphan check) rather than
    # new SQL, or clear the digests in the same transaction.
    @abstractmethod
    async def mark_missing(self, file_ids: list[int], at: datetime | None) -> int:
        """Set ``missing_since`` to ``at`` on these records where it is not set yet (``at``
        None: clear it); returns how many records changed."""

    @abstractmethod
    async def delete_files(self, file_ids: list[int]) -> list[tuple[int, str, str]]:
        """Remove these file records (a few hundred per transaction); returns (root id,
        relative path, kind) of each one removed, for its thumbnails."""

    # -- library: thumbnails ------------------------------------------------------------
    @abstractmethod
    async def thumbnail_jobs(
        self, root_id: int, *, after_id: int = 0, limit: int = 256
    ) -> list[ThumbnailJob]:
        """Pending thumbnails of the root in id order, from ``after_id`` (exclusive)."""

    @abstractmethod
    async def set_thumbnail_states(self, updates: list[ThumbnailUpdate]) -> None: ...

    @abstractmethod
    async def thumbnail_sources(
        self, *, after_id: int = 0, limit: int = 5000
    ) -> list[tuple[int, int, str]]:
        """(file id, root id, relative path) of records whose thumbnail is ``done``, in id
        order from ``after_id`` (exclusive): what the cache cleanup recognises as owned."""

    @abstractmethod
    async def evict_thumbnails(self, file_ids: list[int]) -> int:
        """Set these records' thumbnails from ``done`` to ``evicted`` (their files were
        deleted by the cache cleanup); returns how many changed."""

    # -- journal ------------------------------------------------------------------------
    @abstractmethod
    async def add_journal(self, entry: NewJournalEntry) -> int:
        """Append an entry (entries are never changed); returns its id."""

    @abstractmethod
    async def list_journal(self, flt: JournalFilter) -> list[JournalEntry]:
        """Newest first."""

    @abstractmethod
    async def delete_journal_before(self, before: datetime, *, batch: int = 5000) -> int:
        """Remove entries older than ``before`` in short transactions; returns how many."""

    # -- database maintenance -----------------------------------------------------------
    @abstractmethod
    async def db_stats(self) -> DbStats: ...

    @abstractmethod
    async def optimize(self) -> None:
        """Refresh the planner's statistics (SQLite ``PRAGMA optimize``; PG ``ANALYZE``)."""

    @abstractmethod
    async def checkpoint(self) -> bool:
        """Move the write-ahead log into the database and truncate it; False when busy."""

    @abstractmethod
    async def quick_check(self) -> list[str]:
        """Problems found by a quick consistency check; empty when ok."""

    @abstractmethod
    async def reclaim_free_pages(self) -> int:
        """Give free pages back to the file system (incremental vacuum); pages freed."""

    @abstractmethod
    async def vacuum(self) -> None:
        """Rebuild the whole database (needs free disk space about its size)."""

    @abstractmethod
    async def count_purgeable(self, kind: str, before: datetime) -> int:
        """How many rows ``purge_batch`` would delete (``kind`` in PURGE_KINDS)."""

    @abstractmethod
    async def purge_batch(self, kind: str, before: datetime, limit: int) -> PurgeBatch:
        """Delete up to ``limit`` rows older than ``before`` in one short transaction.

        ``tasks``: finished tasks (by finish time; never pending or running);
        ``history``: finished run-history rows, after adding them to the daily summaries;
        ``journal``: journal entries.
        """

    @abstractmethod
    async def history_daily(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Daily per-task summaries of purged run history (trend charts)."""
