"""The async :class:`Store` interface: everything the layers above keep in the database.

One database holds everything (DESIGN.md §2). Each backend implements this interface and
passes the one contract suite (tests/stores/). Methods take the current time from the caller;
a store never reads a clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from ucore.foundation.errors import UCoreError
from ucore.stores.records import (
    FireResult,
    NewTask,
    NodeRecord,
    Outcome,
    Priority,
    Recovered,
    RunRecord,
    ScheduleState,
    TaskFilter,
    TaskRecord,
    TaskState,
)


class StoreError(UCoreError):
    """The database cannot be used: damaged, unreadable, not ours, too new, …"""


class StoreLockedError(StoreError):
    """Another process holds the database lock for longer than the busy timeout."""


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

    @abstractmethod
    async def change_token(self) -> int:
        """A cheap number that changes when another connection commits (the wake-up check)."""

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

    @abstractmethod
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
        """Atomically take the next due pending task (highest priority, then oldest).

        Marks it running under this node's lease and opens its run-history row. Two claims
        never take the same task. ``task_id`` claims only that task (runner mode); ``names``
        only tasks of those names (the handlers this process has).
        """

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
    ) -> bool:
        """Close the attempt ``run_id`` and move the task to ``next_state``.

        Applies only while the task is still running under that attempt (returns False
        otherwise, e.g. when its lease expired and another node took it).
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
