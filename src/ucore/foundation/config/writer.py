"""Writing changes back to config.json: validated first, atomic, keeping the rest as written.

The file is read as JSON, changed in place (so every other key keeps its value and order),
validated by the same models as at load — an invalid result raises ConfigError and leaves
the file untouched — then written to a temp file in the same folder, fsynced and renamed over
the original. A lock file serialises two writers. A file that does not exist is created.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ucore.foundation.errors import ConfigError

T = TypeVar("T")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError([f"cannot be read: {exc.strerror or exc}"], source=str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"],
            source=str(path),
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(["must be a JSON object"], source=str(path))
    return data


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def update_config_file(
    path: Path,
    change: Callable[[dict[str, Any]], None],
    validate: Callable[[dict[str, Any]], T],
) -> T:
    """Apply ``change`` to the document, validate it, write it; returns what validate gave."""
    with _locked(path):
        current = read_document(path)
        document = copy.deepcopy(current)
        change(document)
        result = validate(document)  # raises ConfigError: nothing written
        if document != current or not path.exists():
            write_atomically(path, document)
        return result
