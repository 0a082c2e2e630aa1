"""What every maintenance run shares: dry run, time budget, cancel, warnings, the result,
the journal entry.

A maintenance handler is ``async def handler(run: MaintenanceRun) -> None``: it does its work
in steps, calls ``run.step()`` between them (cancel and budget take effect there, so steps
are kept well under a second), fills ``run.result`` and adds ``run.warn(...)``. The wrapper
makes the result dict that history, CLI and panel show — the task's own keys plus
``dry_run``, ``partial`` (the time budget ran out), ``warnings`` and, for work skipped for
safety, ``skipped`` with the reason — and writes one journal entry per run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from ucore.foundation.config.params import MaintenanceParams
from ucore.fs.journal import Journal
from ucore.stores.base import Store
from ucore.tasks.context import TaskContext

JOURNAL_KIND = "maintenance"


class BudgetExhausted(Exception):
    """The run's time budget is used up: stop cleanly, the result says partial."""


class MaintenanceRun:
    def __init__(self, ctx: TaskContext, store: Store) -> None:
        self.ctx = ctx
        self.store = store
        self.params: MaintenanceParams = ctx.params
        self.dry_run = self.params.dry_run
        self.result: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.partial = False
        self._started = time.monotonic()
        budget = self.params.time_budget_seconds
        self._deadline = None if budget is None else self._started + budget

    def warn(self, text: str) -> None:
        self.ctx.log.warning(text)
        self.warnings.append(text)

    def skip(self, reason: str) -> None:
        """Record that work was skipped for safety (the run still completes)."""
        self.result.setdefault("skipped", []).append(reason)

    def step(self) -> None:
        """Between two steps: honour a cancel, and stop when the budget is used up."""
        self.ctx.check_cancelled()
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise BudgetExhausted

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def final(self) -> dict[str, Any]:
        out = dict(self.result)
        out["dry_run"] = self.dry_run
        out["partial"] = self.partial
        out["warnings"] = list(self.warnings)
        out["duration"] = round(self.elapsed, 3)
        return out


Handler = Callable[[MaintenanceRun], Awaitable[None]]
Summary = Callable[[dict[str, Any]], str]


def maintenance_task(
    name: str,
    body: Handler,
    summary: Summary,
    store: Callable[[], Store],
    journal: Callable[[], Journal],
) -> Callable[[TaskContext], Awaitable[dict[str, Any]]]:
    """Wrap a maintenance body into a task handler with the shared behaviour."""

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        run = MaintenanceRun(ctx, store())
        try:
            await body(run)
        except BudgetExhausted:
            run.partial = True
            run.warn(
                f"time budget of {run.params.time_budget_seconds:g} s used up: "
                "stopped early; the next run continues"
            )
        except BaseException as exc:
            # one journal entry per run, whatever its end (failed, cancelled, shut down)
            result = run.final()
            result["error"] = str(exc) or type(exc).__name__
            await journal().write(
                f"{JOURNAL_KIND}.{name}",
                f"{name} stopped: {result['error']}",
                result,
                task_id=ctx.task_id,
            )
            raise
        result = run.final()
        words = summary(result)
        prefix = "dry run: " if run.dry_run else ""
        await journal().write(f"{JOURNAL_KIND}.{name}", prefix + words, result, task_id=ctx.task_id)
        return result

    return handler


def shown(*parts: str) -> str:
    """A path (joined with ``/``) for a one-line message or a result: undecodable bytes as
    ``\\xNN``, line breaks and tabs escaped, everything else as it is."""
    text = "/".join(parts).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"  # pragma: no cover
