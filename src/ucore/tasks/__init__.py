"""The TaskSystem: a persistent queue with priorities, workers, leases, crash recovery,
progress, cancel, run history and events (DESIGN.md §3)."""

from ucore.stores.records import Outcome, Priority, TaskRecord, TaskState
from ucore.tasks.context import TaskContext
from ucore.tasks.errors import TaskCancelled, TaskError, UnknownTaskError
from ucore.tasks.system import TaskSystem

__all__ = [
    "Outcome",
    "Priority",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "TaskRecord",
    "TaskState",
    "TaskSystem",
    "UnknownTaskError",
]
