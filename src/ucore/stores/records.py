"""The records a store reads and writes, as plain immutable values.

Times are aware UTC datetimes here; stores keep them as Unix seconds (a float), which every
backend compares the same way and which the caller always passes in (SQL never calls now()).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from ucore.foundation.clock import iso as _iso


class Priority(enum.IntEnum):
    """Higher runs first; FIFO inside one priority."""

    LOW = 10
    NORMAL = 20
    HIGH = 30

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        if isinstance(value, Priority):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown priority '{value}' (high, normal or low)") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class TaskState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self not in (TaskState.PENDING, TaskState.RUNNING)


FINISHED_STATES = tuple(s.value for s in TaskState if s.finished)
ACTIVE_STATES = (TaskState.PENDING.value, TaskState.RUNNING.value)


class Outcome(enum.StrEnum):
    """How one attempt (one row of run history) ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    #: The process died (crash, kill, power loss) or shut down while it ran; re-queued.
    INTERRUPTED = "interrupted"


def to_ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def at(value: float) -> datetime:
    """A stored (non-null) time as an aware UTC datetime."""
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class NewTask:
    """What submit() stores."""

    name: str
    params: dict[str, Any]
    priority: Priority
    origin: str
    submitted_at: datetime
    max_attempts: int = 1
    unique_key: str | None = None
    not_before: datetime | None = None


def _node(node_id: str | None, host: str | None, pid: int | None) -> dict[str, Any] | None:
    """Who ran an attempt, as the task object and the history row show it."""
    return None if node_id is None else {"id": node_id, "host": host, "pid": pid}


@dataclass(frozen=True)
class TaskRecord:
    id: int
    name: str
    params: dict[str, Any]
    priority: Priority
    origin: str
    state: TaskState
    unique_key: str | None
    attempts: int
    failures: int
    interruptions: int
    max_attempts: int
    submitted_at: datetime
    not_before: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    progress: float | None
    progress_message: str | None
    result: Any
    error: str | None
    traceback: str | None
    node_id: str | None
    host: str | None
    pid: int | None
    lease_expires: datetime | None
    cancel_requested: bool
    run_id: int | None

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> TaskRecord:
        """A record from its field values in declaration order, as a store reads them.

        The same record as ``TaskRecord(*values)``, built in a quarter of the time: a frozen
        dataclass's ``__init__`` sets each of the 26 fields through ``object.__setattr__``,
        and the task queue builds two records per task (docs/performance.md).
        """
        if len(values) != len(_TASK_FIELDS):
            raise TypeError(f"TaskRecord needs {len(_TASK_FIELDS)} values, got {len(values)}")
        record = object.__new__(cls)
        record.__dict__.update(zip(_TASK_FIELDS, values, strict=True))
        return record

    def changed(self, **changes: Any) -> TaskRecord:
        """This record with some fields changed: :func:`dataclasses.replace` at the cost of
        :meth:`from_values` (no ``__init__``), for the task queue's hot path."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"TaskRecord has no field {', '.join(sorted(unknown))}")
        record = object.__new__(TaskRecord)
        record.__dict__.update(self.__dict__)
        record.__dict__.update(changes)
        return record

    def to_json(self) -> dict[str, Any]:
        """The task object of the CLI and the panel (DESIGN.md §7)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state.value,
            "priority": self.priority.label,
            "origin": self.origin,
            "params": self.params,
            "attempts": self.attempts,
            "failures": self.failures,
            "interruptions": self.interruptions,
            "max_attempts": self.max_attempts,
            "submitted_at": _iso(self.submitted_at),
            "not_before": _iso(self.not_before),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "progress": None
            if self.progress is None and self.progress_message is None
            else {"fraction": self.progress, "message": self.progress_message},
            "result": self.result,
            "error": self.error,
            "traceback": self.traceback,
            "cancel_requested": self.cancel_requested,
            "node": _node(self.node_id, self.host, self.pid),
        }


_TASK_FIELDS = tuple(f.name for f in fields(TaskRecord))


@dataclass(frozen=True)
class RunRecord:
    """One attempt of a task: one row of run history."""

    id: int
    task_id: int
    task_name: str
    attempt: int
    node_id: str | None
    host: str | None
    pid: int | None
    started_at: datetime
    finished_at: datetime | None
    duration: float | None
    outcome: Outcome | None
    result_summary: Any
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "name": self.task_name,
            "attempt": self.attempt,
            "node": _node(self.node_id, self.host, self.pid),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration": self.duration,
            "outcome": self.outcome.value if self.outcome else None,
            "result": self.result_summary,
            "error": self.error,
        }


@dataclass(frozen=True)
class NodeRecord:
    id: str
    host: str
    pid: int
    role: str
    started_at: datetime
    heartbeat_at: datetime
    #: The process's own start time (psutil), so a reused pid is not taken for it.
    proc_started: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "role": self.role,
            "started_at": _iso(self.started_at),
            "heartbeat_at": _iso(self.heartbeat_at),
        }


@dataclass(frozen=True)
class ClaimRequest:
    """Who claims (a node's lease) and what it may take."""

    node_id: str
    host: str
    pid: int
    now: datetime
    lease_until: datetime
    #: the lowest priority it takes (LOW, or NORMAL while its LOW slots are busy)
    min_priority: Priority = Priority.LOW
    #: only this task (runner mode)
    task_id: int | None = None
    #: only tasks of these names (the handlers it has); None: any
    names: frozenset[str] | None = None
    #: how many it takes at most (its free slots)
    limit: int = 1


@dataclass(frozen=True)
class Claimed:
    """The tasks a claim took, oldest of the highest priority first."""

    records: list[TaskRecord]
    #: when fewer than asked for were due: when the next delayed pending task comes due
    next_due: datetime | None = None


@dataclass(frozen=True)
class TaskFilter:
    states: tuple[str, ...] = ()
    name: str | None = None
    limit: int = 50
    ids: tuple[int, ...] = ()
    unique_key: str | None = None


@dataclass(frozen=True)
class Recovered:
    """A task found with a dead lease and what became of it."""

    task_id: int
    name: str
    requeued: bool


@dataclass(frozen=True)
class ScheduleState:
    """What the database remembers of one schedule, shared by every process.

    ``nominal_next`` is the trigger's own due time; ``next_fire`` is when it fires, with
    jitter and window deferral applied (stored so that every process agrees on it).
    """

    name: str
    nominal_next: datetime | None
    next_fire: datetime | None
    last_fire: datetime | None
    last_task_id: int | None
    last_skip_at: datetime | None
    last_skip_reason: str | None
    definition_hash: str | None


@dataclass(frozen=True)
class FireResult:
    """What became of one attempt to fire a schedule."""

    #: a task was queued
    fired: bool
    task_id: int | None = None
    #: why not: "taken" (another process fired this due time) or a skip reason
    reason: str | None = None


# -- library (UCoreFS): roots, directories, file records, thumbnails, journal ---------------
#
# Paths below a root are relative, with "/" separators; "" is the root itself. Names are the
# operating system's ``str`` form (undecodable bytes as surrogate escapes, like os.scandir
# gives them); the store encodes them for the database (see ucore.stores.names).


class ThumbState(enum.StrEnum):
    """The thumbnail of one file record."""

    #: not an image: it gets no thumbnail
    NONE = "none"
    #: an image whose thumbnail is missing or stale (the file changed since)
    PENDING = "pending"
    DONE = "done"
    #: the image could not be read (broken, too big, not an image after all)
    FAILED = "failed"
    #: its thumbnail was removed by the cache cleanup (old or over the size cap); it is made
    #: again on demand or when the file changes, not by the next ``thumbnails_generate``
    EVICTED = "evicted"


@dataclass(frozen=True)
class NewRoot:
    """What ``add_root`` stores: the folder and its volume identity."""

    path: str
    ignore: tuple[str, ...]
    device: int
    inode: int
    #: the UUID in the root's marker file; None when the root is read-only
    marker: str | None
    #: the file system's UUID (the read-only fallback); None when unknown
    fs_uuid: str | None
    added_at: datetime


@dataclass(frozen=True)
class RootRecord:
    id: int
    path: str
    ignore: tuple[str, ...]
    device: int
    inode: int
    marker: str | None
    fs_uuid: str | None
    added_at: datetime
    last_scan_at: datetime | None
    last_scan_task: int | None


@dataclass(frozen=True)
class RootStats:
    """What the index holds for one root: file records, their bytes, thumbnails by state."""

    files: int = 0
    bytes: int = 0
    thumbnails: dict[str, int] = field(default_factory=dict)

    def thumbnail_count(self, state: ThumbState) -> int:
        return self.thumbnails.get(state.value, 0)


@dataclass(frozen=True)
class DirRecord:
    """An indexed directory and the identity it had when it was listed.

    ``digest`` sums up the listing its records were last made equal to (names, sizes and
    mtimes of its files, names of its subdirectories): a scan that lists the same digest
    knows the directory unchanged without reading its file records. None = unknown. Any
    write that adds or removes file records of a directory, or changes their size, mtime or
    ``missing_since``, outside a scan batch must set its digest to None.
    """

    id: int
    root_id: int
    path: str
    device: int
    inode: int
    digest: str | None = None


#: One file as a scan compares it: name -> (record id, size, mtime_ns). A record marked
#: missing (``missing_since`` set) has mtime_ns -1, so a scan that finds the file rewrites it.
FileStates = dict[str, tuple[int, int, int]]


@dataclass(frozen=True)
class FileRecord:
    id: int
    root_id: int
    dir_id: int
    rel_path: str
    size: int
    mtime_ns: int
    kind: str
    thumb_state: ThumbState
    #: the source's mtime_ns when its thumbnail was made (valid while equal to ``mtime_ns``)
    thumb_mtime_ns: int | None
    missing_since: datetime | None
    indexed_at: datetime

    @property
    def thumbnail_valid(self) -> bool:
        return self.thumb_state is ThumbState.DONE and self.thumb_mtime_ns == self.mtime_ns


@dataclass(frozen=True)
class DirIdentity:
    """A directory a scan listed: inserted, or its identity updated."""

    path: str
    device: int
    inode: int


#: A new file of a scan: (name, size, mtime_ns, kind).
NewFile = tuple[str, int, int, str]


@dataclass
class ScanBatch:
    """One write of a scan: everything in it is applied in one transaction.

    ``new_files`` maps a directory's path to its new files; the directory is in ``dirs`` of
    this batch or an earlier one. ``changed`` holds (record id, size, mtime_ns). Records of
    ``gone_dirs`` (ids) and everything recorded below them are removed in short batches.
    ``digests`` (directory path, digest or None) are set last, in order, in the same
    transaction: a directory's digest is written with its last changes.
    """

    root_id: int
    at: datetime
    dirs: list[DirIdentity] = field(default_factory=list)
    new_files: dict[str, list[NewFile]] = field(default_factory=dict)
    changed: list[tuple[int, int, int]] = field(default_factory=list)
    gone_files: list[int] = field(default_factory=list)
    gone_dirs: list[int] = field(default_factory=list)
    digests: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """How many rows this batch writes (directories and files)."""
        return (
            len(self.dirs)
            + sum(len(v) for v in self.new_files.values())
            + len(self.changed)
            + len(self.gone_files)
            + len(self.gone_dirs)
        )


@dataclass(frozen=True)
class ScanBatchResult:
    #: file records removed (gone files and everything under gone directories)
    removed: int
    #: removed image records as (dir id, name): their thumbnails are to be deleted
    removed_images: list[tuple[int, str]]
    #: the ids of the directories this batch inserted, by path
    dir_ids: dict[str, int]


@dataclass(frozen=True)
class ThumbnailJob:
    id: int
    rel_path: str
    mtime_ns: int


@dataclass(frozen=True)
class ThumbnailUpdate:
    id: int
    state: ThumbState
    #: the source's mtime_ns the thumbnail was made from (None when it failed)
    source_mtime_ns: int | None


@dataclass(frozen=True)
class NewJournalEntry:
    at: datetime
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    task_id: int | None = None


@dataclass(frozen=True)
class JournalEntry:
    id: int
    at: datetime
    kind: str
    message: str
    data: dict[str, Any]
    task_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": _iso(self.at),
            "kind": self.kind,
            "message": self.message,
            "data": self.data,
            "task_id": self.task_id,
        }


@dataclass(frozen=True)
class JournalFilter:
    """Entries newest first. ``kind`` matches that kind and its dotted sub-kinds
    (``library`` matches ``library.scan``); ``since`` is inclusive, ``until`` exclusive."""

    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True)
class DbStats:
    """Sizes of the database, for database_optimization's report."""

    file_bytes: int
    wal_bytes: int
    page_size: int
    page_count: int
    freelist_count: int
    #: "none", "full" or "incremental" (SQLite); "" for other stores
    auto_vacuum: str = ""

    @property
    def free_fraction(self) -> float:
        return self.freelist_count / self.page_count if self.page_count else 0.0

    @property
    def total_bytes(self) -> int:
        return self.file_bytes + self.wal_bytes


@dataclass(frozen=True)
class PurgeBatch:
    """One short purge transaction: rows deleted, daily summaries written."""

    deleted: int
    summaries: int = 0


#: What database_cleanup purges: finished tasks, run history rows, journal entries.
PURGE_KINDS = ("tasks", "history", "journal")
