"""Showing a task's progress on stderr while the CLI waits for it.

On a terminal: a rich progress bar. Otherwise: a plain line when the progress changes, at
most once a second, so that logs stay readable.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ucore.stores.records import TaskRecord


class ProgressView:
    def __init__(self, title: str) -> None:
        self.title = title
        self.tty = sys.stderr.isatty()
        self._progress: Progress | None = None
        self._bar: TaskID | None = None
        self._last_line = 0.0
        self._last_text = ""

    def __enter__(self) -> ProgressView:
        if self.tty:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[message]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._bar = self._progress.add_task(self.title, total=1.0, message="waiting")
        return self

    def update(self, fraction: float | None, message: str | None, state: str = "running") -> None:
        text = message or state
        if self._progress is not None and self._bar is not None:
            kwargs: dict[str, object] = {"message": text}
            if fraction is not None:
                kwargs["completed"] = fraction
            self._progress.update(self._bar, **kwargs)  # type: ignore[arg-type]
            return
        now = time.monotonic()
        line = f"{self.title}: {state}"
        if fraction is not None:
            line += f" {fraction * 100:.0f}%"
        if message:
            line += f" {message}"
        if line != self._last_text and now - self._last_line >= 1.0:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            self._last_line, self._last_text = now, line

    def show(self, record: TaskRecord) -> None:
        self.update(record.progress, record.progress_message, record.state.value)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
