"""Human-readable output of task objects and history rows (the ``--json`` forms are the
records' ``to_json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ucore.stores.records import RunRecord, TaskRecord


def when(value: datetime | None) -> str:
    """A time for human-readable output: ISO 8601 UTC to the second (DESIGN.md §7)."""
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def task_lines(task: TaskRecord) -> list[str]:
    doc = task.to_json()
    lines = [
        f"id:           {task.id}",
        f"name:         {task.name}",
        f"state:        {task.state.value}",
        f"priority:     {task.priority.label}",
        f"origin:       {task.origin}",
        f"params:       {json.dumps(task.params, ensure_ascii=False)}",
        f"attempts:     {task.attempts} (failures {task.failures}, "
        f"interruptions {task.interruptions}, max attempts {task.max_attempts})",
        f"submitted:    {when(task.submitted_at)}",
        f"started:      {when(task.started_at)}",
        f"finished:     {when(task.finished_at)}",
    ]
    if task.not_before is not None:
        lines.append(f"not before:   {when(task.not_before)}")
    if doc["progress"] is not None:
        frac = task.progress
        pct = "-" if frac is None else f"{frac * 100:.0f}%"
        lines.append(f"progress:     {pct} {task.progress_message or ''}".rstrip())
    if task.node_id:
        lines.append(f"ran on:       {task.host} pid {task.pid}")
    if task.result is not None:
        lines.append(f"result:       {json.dumps(task.result, ensure_ascii=False)}")
    if task.error:
        lines.append(f"error:        {task.error}")
    if task.cancel_requested:
        lines.append("cancel:       requested")
    return lines


def task_table(tasks: list[TaskRecord]) -> list[str]:
    rows = [("ID", "STATE", "PRIORITY", "NAME", "SUBMITTED", "DETAIL")]
    for t in tasks:
        if t.state.value == "running":
            pct = "" if t.progress is None else f"{t.progress * 100:.0f}% "
            detail = pct + (t.progress_message or "")
        elif t.error:
            detail = t.error
        elif t.result is not None:
            detail = _short(t.result)
        else:
            detail = ""
        rows.append(
            (
                str(t.id),
                t.state.value,
                t.priority.label,
                t.name,
                when(t.submitted_at),
                _short(detail),
            )
        )
    return columns(rows)


def history_table(runs: list[RunRecord]) -> list[str]:
    rows = [("RUN", "TASK", "NAME", "ATTEMPT", "STARTED", "DURATION", "OUTCOME", "DETAIL")]
    for r in runs:
        duration = "-" if r.duration is None else f"{r.duration:.2f}s"
        detail = r.error or ("" if r.result_summary is None else _short(r.result_summary))
        rows.append(
            (
                str(r.id),
                str(r.task_id),
                r.task_name,
                str(r.attempt),
                when(r.started_at),
                duration,
                r.outcome.value if r.outcome else "running",
                _short(detail),
            )
        )
    return columns(rows)


def columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
