"""orphaned_cleanup: remove file records (and their thumbnails) whose files are gone.

Never a file on disk: only records, and the thumbnails of the records removed. The rules
(DESIGN.md §6.4), the ones that keep an offline drive from emptying a library:

* **Roots skipped whole**: missing, unreadable, replaced (marker missing or another one),
  on another device than recorded (:func:`ucore.fs.roots.check_root`), or empty (no entry
  but hidden ones) while it has records.
* **Directories skipped** (their records are unknown, neither present nor gone): see
  :mod:`ucore.fs.presence` — unreadable, another file system, empty where it had records (an
  unmounted mount point), a symlink in its place, I/O errors. Only "no such file" in a
  readable, non-empty parent counts as gone.
* **Two phases**: a record first seen gone gets ``missing_since`` = now; it is removed by a
  later run once ``grace_hours`` have passed (0: at once). A marked record whose file is
  back has its mark cleared (``restored``).
* **Breaker**: when more than ``max_missing_fraction`` of the records in a root's checked
  directories look gone, nothing is marked or removed in that root and the result says
  why; ``force: true`` overrides it for one run.

One listing per directory (names only), a few hundred directories' records per query,
streaming; memory is bounded by the directories of one root and the ids of the records that
look gone. Result: ``checked``, ``marked``, ``removed``, ``restored``, ``roots_skipped:
[{root, path, reason}]`` and, besides, ``waiting`` (marked, within the grace period),
``unknown`` (records in skipped directories), ``dirs_skipped`` (the first few, with the
reason), ``thumbnails_removed``.
"""

from __future__ import annotations

import asyncio
import functools
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ucore.foundation.config.params import OrphanedCleanupParams
from ucore.fs.presence import GONE, LISTED, DirLook, PresenceProbe
from ucore.fs.roots import check_root
from ucore.fs.system import library_of
from ucore.fs.thumbnails import delete_thumbnails
from ucore.maintenance.run import BudgetExhausted, MaintenanceRun
from ucore.stores.base import PresenceRows
from ucore.stores.records import DirRecord, RootRecord

NAME = "orphaned_cleanup"
#: directories whose records one query fetches (and one thread hop lists)
DIRS_PER_STEP = 256
#: ids per store write when marking or removing (each write is a short transaction)
WRITE_CHUNK = 2000
#: skipped directories listed one by one in the result (the rest are counted)
MAX_REPORTED = 50


@dataclass
class RootFindings:
    """What checking one root found, before anything is written."""

    checked: int = 0
    unknown: int = 0
    #: gone, not marked yet
    to_mark: array[int] = field(default_factory=lambda: array("q"))
    #: gone, marked longer ago than the grace period
    to_remove: array[int] = field(default_factory=lambda: array("q"))
    #: gone, marked within the grace period
    waiting: int = 0
    #: marked, but the file is there again
    to_restore: array[int] = field(default_factory=lambda: array("q"))
    dirs_skipped: list[dict[str, Any]] = field(default_factory=list)
    dirs_skipped_total: int = 0

    @property
    def gone(self) -> int:
        return len(self.to_mark) + len(self.to_remove) + self.waiting


def sort_records(
    look: DirLook, records: PresenceRows, cutoff: datetime, found: RootFindings
) -> None:
    """Sort one directory's records into present, gone (by phase) and unknown. A directory
    that is gone is one that holds no names."""
    by_name, marked = records
    if look.status not in (LISTED, GONE):
        found.unknown += len(by_name)
        found.dirs_skipped_total += 1
        if len(found.dirs_skipped) < MAX_REPORTED:
            found.dirs_skipped.append({"path": look.rel or ".", "reason": look.reason})
        return
    names = look.names or frozenset()
    gone = by_name.keys() - names  # in C: a present record costs no bytecode
    for fid, name, missing in marked:
        if name in names:
            found.to_restore.append(fid)
            continue
        gone.discard(name)
        if missing <= cutoff:
            found.to_remove.append(fid)
        else:
            found.waiting += 1
    if gone:
        found.to_mark.extend([by_name[n] for n in gone])
    found.checked += len(by_name)


def check_dirs(
    run: MaintenanceRun,
    probe: PresenceProbe,
    dirs: list[DirRecord],
    rows: dict[int, PresenceRows],
    *,
    cutoff: datetime,
    found: RootFindings,
) -> None:
    """List these directories (in a worker thread) and sort their records."""
    for d in dirs:
        records = rows.get(d.id)
        if records is None:
            continue
        run.step()
        sort_records(probe.look(d.path, d.inode), records, cutoff, found)


class OrphanCheck:
    def __init__(self, run: MaintenanceRun) -> None:
        self.run = run
        self.params: OrphanedCleanupParams = run.ctx.params
        self.now = run.ctx.app.clock.now()
        self.grace = timedelta(hours=self.params.grace_hours)
        self.cache_dir = library_of(run.ctx.app).cache_dir
        self.result = run.result
        self.result.update(
            checked=0,
            marked=0,
            removed=0,
            restored=0,
            waiting=0,
            unknown=0,
            thumbnails_removed=0,
            roots_skipped=[],
            dirs_skipped=[],
            dirs_skipped_total=0,
        )
        self.total_dirs = 0
        self.done_dirs = 0

    async def all_roots(self) -> None:
        roots = await self.run.store.list_roots()
        plans: list[tuple[RootRecord, list[DirRecord]]] = []
        for root in roots:
            dirs = await self.run.store.list_dirs(root.id)
            dirs.sort(key=lambda d: d.path)  # parents before their children
            plans.append((root, dirs))
            self.total_dirs += len(dirs)
        for root, dirs in plans:
            self.run.step()
            await self.one_root(root, dirs)
        self.run.ctx.progress(self.total_dirs, max(self.total_dirs, 1), "done")

    def skip_root(self, root: RootRecord, reason: str) -> None:
        self.result["roots_skipped"].append({"root": root.id, "path": root.path, "reason": reason})

    async def one_root(self, root: RootRecord, dirs: list[DirRecord]) -> None:
        if not dirs:
            return
        check = await asyncio.to_thread(check_root, root)
        if not check.online:
            self.done_dirs += len(dirs)
            self.skip_root(root, check.reason or check.status.value)
            return
        device = root.device if check.device is None else check.device
        probe = PresenceProbe(root.path, device)
        top = await asyncio.to_thread(probe.look, "")
        if top.status != LISTED or not any(n[0] != "." for n in top.names or ()):
            self.done_dirs += len(dirs)
            self.skip_root(root, top.reason or "the root is empty: not mounted, or emptied?")
            return
        found = RootFindings()
        cutoff = self.now - self.grace
        stopped: BudgetExhausted | None = None
        try:
            await self.check_root_dirs(probe, dirs, cutoff, found)
        except BudgetExhausted as exc:  # act on what was checked, then stop
            stopped = exc
        await self.apply(root, found)
        if stopped is not None:
            raise stopped

    async def check_root_dirs(
        self, probe: PresenceProbe, dirs: list[DirRecord], cutoff: datetime, found: RootFindings
    ) -> None:
        # One part after the other: fetching the next part's records while this one is
        # listed made the two threads fight for the GIL (each row fetched hands it over) and
        # cost 1.4x (docs/performance.md, "Maintenance: orphan check").
        store = self.run.store
        for i in range(0, len(dirs), DIRS_PER_STEP):
            part = dirs[i : i + DIRS_PER_STEP]
            rows = await store.presence_rows([d.id for d in part])
            await asyncio.to_thread(
                functools.partial(check_dirs, cutoff=cutoff, found=found),
                self.run,
                probe,
                part,
                rows,
            )
            self.done_dirs += len(part)
            self.run.ctx.progress(
                self.done_dirs,
                max(self.total_dirs, 1),
                f"{self.result['checked'] + found.checked:,} records checked",
            )

    async def apply(self, root: RootRecord, found: RootFindings) -> None:
        result = self.result
        result["checked"] += found.checked
        result["unknown"] += found.unknown
        result["dirs_skipped_total"] += found.dirs_skipped_total
        room = MAX_REPORTED - len(result["dirs_skipped"])
        result["dirs_skipped"] += [{"root": root.id, **d} for d in found.dirs_skipped[:room]]
        limit = self.params.max_missing_fraction
        if found.checked and found.gone / found.checked > limit and not self.params.force:
            self.skip_root(
                root,
                f"{found.gone:,} of {found.checked:,} records look gone "
                f"({found.gone / found.checked:.0%}, more than {limit:.0%}): nothing removed; "
                "a drive or share only partly there? Run with force=true if they really are "
                "gone",
            )
            found.to_mark, found.to_remove, found.waiting = array("q"), array("q"), 0
        result["restored"] += len(found.to_restore)
        if self.params.grace_hours == 0:
            found.to_remove.extend(found.to_mark)
            found.to_mark = array("q")
        result["marked"] += len(found.to_mark)
        result["waiting"] += found.waiting + len(found.to_mark)
        result["removed"] += len(found.to_remove)
        if self.run.dry_run:
            return
        store = self.run.store
        for i in range(0, len(found.to_restore), WRITE_CHUNK):
            self.run.ctx.check_cancelled()
            await store.mark_missing(list(found.to_restore[i : i + WRITE_CHUNK]), None)
        for i in range(0, len(found.to_mark), WRITE_CHUNK):
            self.run.ctx.check_cancelled()
            await store.mark_missing(list(found.to_mark[i : i + WRITE_CHUNK]), self.now)
        for i in range(0, len(found.to_remove), WRITE_CHUNK):
            self.run.ctx.check_cancelled()
            removed = await store.delete_files(list(found.to_remove[i : i + WRITE_CHUNK]))
            images = [rel for _root, rel, kind in removed if kind == "image"]
            if images:
                result["thumbnails_removed"] += await asyncio.to_thread(
                    delete_thumbnails, self.cache_dir, root.id, images
                )


async def body(run: MaintenanceRun) -> None:
    await OrphanCheck(run).all_roots()


def summary(result: dict[str, Any]) -> str:
    dry = bool(result.get("dry_run"))
    removed = result.get("removed", 0)
    marked = result.get("marked", 0)
    parts = [
        f"{'would remove' if dry else 'removed'} {removed:,} record(s) of gone files",
        f"{'would mark' if dry else 'marked'} {marked:,} newly missing",
        f"checked {result.get('checked', 0):,}",
    ]
    if result.get("restored"):
        parts.append(f"{result['restored']:,} back again")
    skipped = result.get("roots_skipped") or []
    if skipped:
        parts.append(f"{len(skipped)} root(s) skipped")
    return ", ".join(parts)
