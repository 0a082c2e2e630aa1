"""The records a store reads and writes, as plain immutable values.

Times are aware UTC datetimes here; stores keep them as Unix seconds (a float), which every
backend compares the same way and which the caller always passes in (SQL never calls now()).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
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
            "node": None
            if self.node_id is None
            else {"id": self.node_id, "host": self.host, "pid": self.pid},
        }


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
            "node": None
            if self.node_id is None
            else {"id": self.node_id, "host": self.host, "pid": self.pid},
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
