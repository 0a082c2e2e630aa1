"""Helpers of the UCoreFS tests (imported by the tests and by conftest)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ucore.app import App
from ucore.stores.records import FileRecord, TaskRecord


class Lib:
    """What the library tests do over and over."""

    def __init__(self, app: App, tmp_path: Path) -> None:
        self.app = app
        self.tmp = tmp_path

    async def run(self, task_id: int) -> TaskRecord:
        return await self.app.tasks.run_here(task_id)

    async def scan(self, root_id: int | None = None, **params: Any) -> dict[str, Any]:
        """Scan (one root or all) in this process; the task's result."""
        if params:
            payload = dict(params)
            if root_id is not None:
                payload["root"] = root_id
            task_id = await self.app.tasks.submit("library_scan", payload)
        else:
            task_id = await self.app.library.scan(root_id)
        record = await self.run(task_id)
        assert record.state.value == "completed", (record.state, record.error, record.traceback)
        result: dict[str, Any] = record.result
        return result

    async def records(self, root_id: int) -> dict[str, FileRecord]:
        out: dict[str, FileRecord] = {}
        after = 0
        while batch := await self.app.library.files(root_id, after_id=after, limit=500):
            out.update((f.rel_path, f) for f in batch)
            after = batch[-1].id
        return out

    async def add(self, path: Path, ignore: tuple[str, ...] = ()) -> int:
        root, created = await self.app.library.add_root(path, ignore)
        assert created
        return root.id

    async def thumbnails(self) -> dict[str, Any]:
        record = await self.run(await self.app.library.generate_thumbnails())
        assert record.state.value == "completed", (record.error, record.traceback)
        result: dict[str, Any] = record.result
        return result


def write(path: Path, data: bytes = b"x", mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def make_tree(root: Path, spec: dict[str, bytes]) -> Path:
    """Files at relative paths (folders made as needed)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in spec.items():
        write(root / rel, data)
    return root
