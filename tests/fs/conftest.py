"""Fixtures of the UCoreFS tests: an app on a temporary database, real files in tmp_path.

* ``app``: a client app (the library registers its tasks in every role); ``run_task`` runs
  a queued task in this process (runner mode) and returns its final record.
* ``lib``: helpers to scan, read records and make files.

Tests run as root (CI does): root ignores permissions, so unreadable folders are simulated
by making ``os.open`` fail for one path (``deny``), and by a real non-root child where
``setuid`` works.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fs_helpers import Lib

import ucore.app
from ucore.app import App
from ucore.foundation.config import parse_config


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    config = parse_config({}, data_dir=tmp_path / "data", env={})
    started = await ucore.app.bootstrap(config, role="client")
    try:
        yield started
    finally:
        await started.shutdown()


@pytest.fixture
def lib(app: App, tmp_path: Path) -> Lib:
    return Lib(app, tmp_path)


Deny = Callable[[Path, int], None]


@pytest.fixture
def deny(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deny]:
    """``deny(path, errno)``: opening that path fails as if unreadable (root ignores modes)."""
    denied: dict[str, int] = {}
    real_open = os.open

    def fake_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is None and os.fspath(path) in denied:
            code = denied[os.fspath(path)]
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", fake_open)

    def add(path: Path, code: int = errno.EACCES) -> None:
        denied[os.fspath(path)] = code

    yield add
