"""Logging to stderr and to a log file that several processes and threads share.

Which processes write the file: the long-running ones, i.e. the ``service`` role (``ucore
run``, UExplorer) and the ``runner`` role (``--wait`` running a task itself). Short client
commands log to stderr only.

The hand-over with log rotation (DESIGN.md §6.5), without losing a line:

* A writer appends each record with one ``write`` on an ``O_APPEND`` descriptor while holding
  a *shared* ``flock`` on it; threads of one process are serialised by the handler's lock.
* Under that shared lock it first checks that the path still names the file it holds (same
  device and inode); if the file was renamed or deleted it reopens the path and writes there.
* The rotator renames the file, then takes an *exclusive* ``flock`` on the renamed file
  (:func:`detach_for_rotation`). That waits for every write already in flight; any writer
  that locks afterwards sees the rename and reopens, so after the exclusive lock nobody
  writes to the archive again and it can be compressed safely.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_NAME = "ucore.log"
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class SharedFileHandler(logging.Handler):
    """Appends records to ``path``; safe with other processes and with rotation by rename."""

    def __init__(self, path: Path, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.path = Path(path)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None

    def _open(self) -> int:
        fd = os.open(self.path, _OPEN_FLAGS, 0o600)
        st = os.fstat(fd)
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)
        return fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd, self._ident = None, None

    def _current_ident(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            self._write(data)
        except Exception:
            self.handleError(record)

    def _write(self, data: bytes) -> None:
        # Called with self.lock held (logging.Handler.handle), so threads do not interleave.
        for _ in range(10):
            fd = self._fd if self._fd is not None else self._open()
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                if self._current_ident() != self._ident:
                    # renamed or deleted under us: write to the file the path names now
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    self._close_fd()
                    continue
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                return
            finally:
                if self._fd == fd:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        raise OSError(f"log file {self.path} keeps changing under the writer")

    def close(self) -> None:
        self.acquire()
        try:
            self._close_fd()
        finally:
            self.release()
            super().close()


def detach_for_rotation(path: Path, archive: Path) -> None:
    """Rename ``path`` to ``archive`` and wait until no writer is still writing to it.

    When this returns, every write that started before the rename has finished and every
    later write goes to a new file at ``path``; ``archive`` can be compressed or deleted.
    """
    os.rename(path, archive)
    fd = os.open(archive, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def setup_logging(
    level: int | str = logging.INFO,
    log_file: Path | None = None,
    stream: TextIO | None = None,
    *,
    file_level: int | str | None = None,
) -> None:
    """Send UCore's logs to ``stream`` (stderr) and, for long-running processes, a file.

    ``file_level`` (default: ``level``) lets the file keep more than the terminal shows.

    Replaces handlers this function installed before, so it can be called again (for example
    once the config is known).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ucore", False):
            root.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter(LOG_FORMAT)
    level = logging.getLevelName(level) if isinstance(level, str) else level
    file_level = level if file_level is None else file_level
    file_level = logging.getLevelName(file_level) if isinstance(file_level, str) else file_level
    console = logging.StreamHandler(stream if stream is not None else sys.stderr)
    console.setLevel(level)
    console.setFormatter(formatter)
    console._ucore = True  # type: ignore[attr-defined]
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        file_handler = SharedFileHandler(log_file, file_level)
        file_handler.setFormatter(formatter)
        file_handler._ucore = True  # type: ignore[attr-defined]
        root.addHandler(file_handler)
        level = min(level, file_level)
    root.setLevel(level)
