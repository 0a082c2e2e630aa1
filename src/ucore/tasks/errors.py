"""Errors of the TaskSystem."""

from __future__ import annotations

from ucore.foundation.errors import NotFoundError, UCoreError, UsageError


class TaskError(UCoreError):
    """A task could not be submitted, run or changed."""


class UnknownTaskError(UsageError):
    """No handler of that name is registered."""


class InvalidParamsError(UsageError):
    """The task's parameter model rejected the parameters."""


class TaskNotFoundError(NotFoundError):
    pass


class TaskCancelled(Exception):
    """Raised inside a handler by ``ctx.check_cancelled()`` once a stop was asked.

    ``reason`` is ``"cancel"`` (a user), ``"timeout"``, ``"shutdown"`` or ``"lease"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
