"""``LibrarySystem``: UCoreFS as a system of the app (``app.library``).

It registers the ``library_scan`` and ``thumbnails_generate`` tasks in every role (a client
must know a task to submit it, a runner to run it) and offers the library's API: roots
(add, remove, list with live status and counts), scans, thumbnails, file records, and the
journal. Blocking file-system work runs in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ucore.foundation.clock import Clock, iso
from ucore.foundation.config.params import LibraryScanParams, ThumbnailsGenerateParams
from ucore.foundation.context import Context
from ucore.foundation.system import BaseSystem
from ucore.fs import journal
from ucore.fs.journal import Journal
from ucore.fs.pipeline import LoopBridge
from ucore.fs.roots import RootCheck, check_root, normalize, prepare_root
from ucore.fs.scan import TASK_NAME as SCAN_TASK
from ucore.fs.scan import library_scan
from ucore.fs.thumbnail_task import TASK_NAME as THUMBNAILS_TASK
from ucore.fs.thumbnail_task import thumbnails_generate
from ucore.fs.thumbnails import DEFAULT_SIZE, delete_thumbnails, thumbnail_path
from ucore.stores.base import MissingRootError, Store
from ucore.stores.records import FileRecord, Priority, RootRecord, RootStats, ThumbState
from ucore.stores.system import StoreSystem
from ucore.tasks.system import TaskSystem


@dataclass(frozen=True)
class RootInfo:
    """A root as ``library list`` shows it: record, live status and what the index holds."""

    root: RootRecord
    check: RootCheck
    stats: RootStats

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "id": self.root.id,
            "path": self.root.path,
            "status": self.check.status.value,
            "reason": self.check.reason,
            "files": s.files,
            "bytes": s.bytes,
            "thumbnails": {
                state.value: s.thumbnail_count(state)
                for state in (
                    ThumbState.DONE,
                    ThumbState.PENDING,
                    ThumbState.FAILED,
                    ThumbState.EVICTED,
                )
            },
            "ignore": list(self.root.ignore),
            "last_scan": iso(self.root.last_scan_at),
            "added_at": iso(self.root.added_at),
        }


class LibrarySystem(BaseSystem):
    name = "library"
    depends_on = ("tasks",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._journal: Journal | None = None

    async def initialize(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.tasks.register(SCAN_TASK, library_scan, params=LibraryScanParams)
        self.tasks.register(THUMBNAILS_TASK, thumbnails_generate, params=ThumbnailsGenerateParams)
        if self.tasks.pool is not None:
            # workers started before these handlers existed: let them claim queued scans now
            self.tasks.pool.wake()

    async def shutdown(self) -> None:
        return None

    # -- what it stands on --------------------------------------------------------------
    @property
    def tasks(self) -> TaskSystem:
        return self.ctx.typed("tasks", TaskSystem)

    @property
    def store(self) -> Store:
        return self.ctx.typed("store", StoreSystem).store

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def cache_dir(self) -> Path:
        return self.ctx.locations.cache_dir

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.store, self.clock)
        return self._journal

    def bridge(self) -> LoopBridge:
        """For a task's thread: the store's coroutines run on this system's event loop."""
        assert self._loop is not None, "the library system is not initialized"
        return LoopBridge(self._loop, self.store)

    # -- roots --------------------------------------------------------------------------
    async def add_root(
        self, path: str | os.PathLike[str], ignore: Sequence[str] = ()
    ) -> tuple[RootRecord, bool]:
        """Make a folder a library root; returns (root, created).

        Adding a root again with the same ignore globs returns the existing one. Raises
        RootPathError for a folder that cannot be a root. It does not scan: call :meth:`scan`.
        """
        existing = await self.store.list_roots()
        new, found = await asyncio.to_thread(
            prepare_root, path, list(ignore), existing, self.clock.now()
        )
        if new is None:
            assert found is not None
            return found, False
        root, created = await self.store.insert_root(new)
        if created:
            identity = (
                "marker"
                if root.marker
                else ("file system UUID" if root.fs_uuid else "device id only")
            )
            await self.journal.write(
                journal.ROOT_ADDED,
                f"added library root {root.id}: {root.path} (identity: {identity})",
                {
                    "root": root.id,
                    "path": root.path,
                    "ignore": list(root.ignore),
                    "marker": root.marker,
                    "fs_uuid": root.fs_uuid,
                    "device": root.device,
                },
            )
        return root, created

    async def remove_root(self, root_id: int) -> dict[str, Any]:
        """Forget a root: its thumbnails, then its records. Never touches its files."""
        root = await self.get_root(root_id)
        thumbs = 0
        after = 0
        while True:
            files = await self.store.list_files(root.id, after_id=after, limit=2000)
            if not files:
                break
            after = files[-1].id
            images = [f.rel_path for f in files if f.kind == "image"]
            thumbs += await asyncio.to_thread(delete_thumbnails, self.cache_dir, root.id, images)
        removed = await self.store.delete_root(root.id)
        await self.journal.write(
            journal.ROOT_REMOVED,
            f"removed library root {root.id}: {root.path} ({removed:,} file records, "
            f"{thumbs:,} thumbnails; no file of the folder was touched)",
            {
                "root": root.id,
                "path": root.path,
                "files_removed": removed,
                "thumbnails_removed": thumbs,
            },
        )
        return {
            "id": root.id,
            "path": root.path,
            "files_removed": removed,
            "thumbnails_removed": thumbs,
        }

    async def get_root(self, root_id: int) -> RootRecord:
        root = await self.store.get_root(root_id)
        if root is None:
            raise MissingRootError(f"no library root with id {root_id}")
        return root

    async def root_for_path(self, path: str | os.PathLike[str]) -> RootRecord | None:
        """The root whose folder is ``path`` (symlinks resolved), or None."""
        real = normalize(path)
        for root in await self.store.list_roots():
            if root.path == real:
                return root
        return None

    async def roots(self) -> list[RootInfo]:
        """Every root with its live status and what the index holds for it."""
        records = await self.store.list_roots()
        stats = await self.store.root_stats()
        checks = await asyncio.gather(*(asyncio.to_thread(check_root, r) for r in records))
        empty = RootStats()
        return [
            RootInfo(r, c, stats.get(r.id, empty)) for r, c in zip(records, checks, strict=True)
        ]

    async def check(self, root_id: int) -> RootCheck:
        return await asyncio.to_thread(check_root, await self.get_root(root_id))

    # -- tasks --------------------------------------------------------------------------
    async def scan(
        self,
        root_id: int | None = None,
        *,
        origin: str = "api",
        priority: Priority | str = Priority.NORMAL,
    ) -> int:
        """Queue a scan of one root (or all); returns the task id (the queued one if a scan
        of the same target is pending or running)."""
        if root_id is not None:
            await self.get_root(root_id)
        params = {} if root_id is None else {"root": root_id}
        key = f"{SCAN_TASK}:{'all' if root_id is None else root_id}"
        return await self.tasks.submit(
            SCAN_TASK, params, priority=priority, unique_key=key, origin=origin
        )

    async def generate_thumbnails(self, *, origin: str = "api") -> int:
        """Queue ``thumbnails_generate`` (LOW) for every root; returns the task id."""
        return await self.tasks.submit(
            THUMBNAILS_TASK, {}, priority=Priority.LOW, unique_key=THUMBNAILS_TASK, origin=origin
        )

    # -- records ------------------------------------------------------------------------
    async def files(
        self, root_id: int, *, after_id: int = 0, limit: int = 1000
    ) -> list[FileRecord]:
        return await self.store.list_files(root_id, after_id=after_id, limit=limit)

    def thumbnail_path(self, root_id: int, rel_path: str, size: int = DEFAULT_SIZE) -> Path:
        return thumbnail_path(self.cache_dir, root_id, rel_path, size)


def library_of(ctx: Context) -> LibrarySystem:
    return ctx.typed("library", LibrarySystem)
