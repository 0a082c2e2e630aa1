"""The live view of ``ucore run`` on a terminal: running tasks with progress, recent results.

It redraws when a task event arrives, and once a second for elapsed times, never faster than
4 times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ucore.app import App
from ucore.foundation.events import Event
from ucore.stores.records import TaskRecord

MIN_REDRAW_SECONDS = 0.25


class LiveView:
    def __init__(self, app: App) -> None:
        self.app = app
        self.running: dict[int, tuple[TaskRecord, float | None, str | None]] = {}
        self.recent: deque[TaskRecord] = deque(maxlen=8)
        self._live = Live(console=Console(stderr=True), auto_refresh=False, transient=False)
        self._dirty = asyncio.Event()
        self._unsub: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._unsub = self.app.ctx.events.subscribe(self._on_event, "task.")
        self._live.start()
        self._task = asyncio.create_task(self._loop())

    def stop(self) -> None:
        self._unsub()
        if self._task is not None:
            self._task.cancel()
        self._live.update(self._render(), refresh=True)
        self._live.stop()

    def _on_event(self, event: Event) -> None:
        record = event.data.get("record")
        if not isinstance(record, TaskRecord):
            return
        if event.kind == "task.started":
            self.running[record.id] = (record, 0.0, None)
        elif event.kind == "task.progress" and record.id in self.running:
            self.running[record.id] = (
                record,
                event.data.get("fraction"),
                event.data.get("message"),
            )
        elif event.kind == "task.finished":
            self.running.pop(record.id, None)
            self.recent.appendleft(record)
        self._dirty.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), 1.0)
            self._dirty.clear()
            self._live.update(self._render(), refresh=True)
            await asyncio.sleep(MIN_REDRAW_SECONDS)

    def _render(self) -> Group:
        now = datetime.now(UTC)
        running = Table(title="Running", expand=True, title_justify="left")
        for col in ("id", "task", "progress", "", "elapsed", "message"):
            running.add_column(col)
        for record, fraction, message in self.running.values():
            elapsed = (now - record.started_at).total_seconds() if record.started_at else 0.0
            bar = ProgressBar(total=1.0, completed=fraction or 0.0, width=20)
            pct = "" if fraction is None else f"{fraction * 100:.0f}%"
            running.add_row(str(record.id), record.name, bar, pct, f"{elapsed:.0f}s", message or "")
        recent = Table(title="Recent", expand=True, title_justify="left")
        for col in ("id", "task", "outcome", "finished", "detail"):
            recent.add_column(col)
        for record in self.recent:
            when = (
                record.finished_at.astimezone().strftime("%H:%M:%S") if record.finished_at else ""
            )
            detail = record.error or ("" if record.result is None else str(record.result))[:60]
            recent.add_row(str(record.id), record.name, record.state.value, when, detail)
        header = Text(
            f"ucore service · pid {self.app.ctx.pid} · {self.app.tasks.store.display_url}"
            "  (Ctrl+C stops)",
            style="bold",
        )
        return Group(header, running, recent)
