"""Scanning one online root: walk it, compare with its records, write the differences.

Breadth first, one :meth:`~ucore.fs.filter.LibraryFilter.list_dir` (one ``os.scandir``)
per directory. Each listing is compared with the directory's records:

* **Fast path.** Every directory record keeps a digest of the listing its records were
  last made equal to (:func:`listing_digest`). A directory listed with the same identity
  and the same digest is unchanged: its file records are not even read.
* Otherwise its records are fetched, with those of the other differing directories, a few
  hundred directories per query (no per-file, no per-directory round trip), and compared:
  a file without a record is **new**; one whose size or mtime_ns differ is **changed**;
  the others are **unchanged** and not written at all;
* a record whose file is no longer listed has **vanished** and is removed, and so are the
  records below a recorded subdirectory that is no longer there; only ever for a directory
  that was listed successfully, on the root's file system;
* an entry that could not be examined (``lstat`` failed other than "no such file") or a
  subdirectory that is now a mount point keeps its records: unknown is not gone;
* a directory that cannot be listed is reported and its records (and everything below it)
  are left alone;
* a directory that is now **another, empty** directory (another device or inode) where we
  had records, a folder replaced by an empty one or an unmounted mount point, is reported
  and its records kept; another directory *with* entries is adopted (its identity recorded)
  and compared as usual.

Changes go to the store in batches of about :data:`BATCH_ROWS` rows, one transaction each;
a directory's new digest is written with its last change.
"""

from __future__ import annotations

import hashlib
import marshal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ucore.fs.filter import DirectoryError, LibraryFilter, Listing, Skipped
from ucore.fs.kinds import kind_of
from ucore.fs.pipeline import BatchWriter, LoopBridge
from ucore.fs.thumbnails import delete_thumbnails
from ucore.stores.records import (
    DirIdentity,
    DirRecord,
    FileStates,
    NewFile,
    RootRecord,
    ScanBatch,
    ScanBatchResult,
)
from ucore.tasks.errors import TaskCancelled

#: rows per write transaction: a few ms of the write lock each; 2,000 rather than 1,000 halves
#: the commits (each an fsync of the WAL): 7-10 % of a first scan (docs/performance.md)
BATCH_ROWS = 2000
#: differing directories whose records one query fetches
FETCH_DIRS = 256
#: problems listed one by one in a result (the rest are counted)
MAX_REPORTED = 50
#: seconds between two progress reports
PROGRESS_EVERY = 0.25


def listing_digest(listing: Listing) -> str | None:
    """The digest of a listing (its files' names, sizes, mtimes and its subdirectories'
    names, in listing order), or None when part of it is unknown (entries it could not
    examine, mounts).

    ``marshal`` is the fastest exact serializer of these plain values (the digest is most of
    what a rescan costs above the bare walk: 0.025 s per 200,000 files, 0.04 s with
    ``pickle``); its bytes are only hashed, never loaded. Equal bytes mean equal values, so
    a digest match is never wrong; bytes that differ for equal values (marshal's
    back-references follow reference counts, the listing order may change) only send that
    directory down the slow path once.
    """
    if listing.errors or listing.mounts:
        return None
    data = marshal.dumps((listing.files, listing.dirs), 4)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class ScanStopped(Exception):
    """Raised by the ``check`` hook to end a scan early (time budget)."""


@dataclass
class RootScan:
    """What one scan found in one root."""

    id: int
    path: str
    status: str
    reason: str | None = None
    new: int = 0
    changed: int = 0
    vanished: int = 0
    unchanged: int = 0
    directories: int = 0
    directories_removed: int = 0
    thumbnails_removed: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    errors_total: int = 0
    kept: list[dict[str, str]] = field(default_factory=list)
    skipped: Skipped = field(default_factory=Skipped)
    complete: bool = False

    def error(self, path: str, reason: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append({"path": path, "error": reason})

    def keep(self, path: str, reason: str) -> None:
        if len(self.kept) < MAX_REPORTED:
            self.kept.append({"path": path, "reason": reason})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
            "complete": self.complete,
            "new": self.new,
            "changed": self.changed,
            "vanished": self.vanished,
            "unchanged": self.unchanged,
            "directories": self.directories,
            "directories_removed": self.directories_removed,
            "thumbnails_removed": self.thumbnails_removed,
            "errors": self.errors,
            "errors_total": self.errors_total,
            "kept": self.kept,
            "skipped": self.skipped.as_dict(),
        }


@dataclass
class ScanHooks:
    """How a scan talks to its task: cancel/time checks and progress."""

    #: raises to stop (TaskCancelled for a cancel, ScanStopped for the time budget)
    check: Callable[[], None] = lambda: None
    #: (done, total, message); total None = a fraction in ``done``
    progress: Callable[[float, float | None, str], None] = lambda d, t, m: None


class RootScanner:
    def __init__(
        self,
        bridge: LoopBridge,
        root: RootRecord,
        device: int,
        *,
        cache_dir: Path,
        now: Callable[[], datetime],
        hooks: ScanHooks,
        batch_rows: int | None = None,
        in_flight: int = 1,
    ) -> None:
        self.bridge = bridge
        self.root = root
        self.filter = LibraryFilter(root.path, root.ignore, device=device)
        self.cache_dir = cache_dir
        self.now = now
        self.hooks = hooks
        self.batch_rows = BATCH_ROWS if batch_rows is None else batch_rows
        self.result = RootScan(root.id, root.path, "online")
        self.writer = BatchWriter(bridge, self._written, in_flight=in_flight)
        self.fetches = 0
        self._dirs: dict[str, DirRecord] = {}
        self._children: dict[str, list[str]] = {}
        self._path_of: dict[int, str] = {}
        self._differing: list[tuple[Listing, DirRecord, str | None]] = []
        self._batch = self._new_batch()
        self._seen = 0
        self._last_progress = 0.0

    # -- the walk -----------------------------------------------------------------------
    def run(self) -> RootScan:
        self._load_dirs()
        queue: deque[str] = deque([""])
        try:
            while queue:
                self.hooks.check()
                queue.extend(self._visit(queue.popleft()))
                self._report(len(queue))
            self._compare_differing()
        except (TaskCancelled, ScanStopped):
            # asked to stop: what was compared is consistent, keep it
            self._flush()
            self.writer.finish()
            raise
        # (after any other error, a failed write above all, nothing more is written)
        self._flush()
        self.writer.finish()
        self.result.complete = True
        self._report(0, final=True)
        return self.result

    def _visit(self, rel: str) -> list[str]:
        """List one directory; returns the subdirectories to list next."""
        try:
            listing = self.filter.list_dir(rel)
        except DirectoryError as exc:
            self.result.error(rel or ".", exc.reason)
            if not rel:
                self.result.status, self.result.reason = "unavailable", exc.reason
            return []
        r = self.result
        r.directories += 1
        r.skipped.add(listing.skipped)
        self._seen += len(listing.files)
        digest = listing_digest(listing)
        rec = self._dirs.get(rel)
        if rec is None:
            self._batch.dirs.append(DirIdentity(rel, listing.device, listing.inode))
            self._compare(listing, {}, [], digest, None)
        elif (
            digest is not None
            and digest == rec.digest
            and rec.device == listing.device
            and rec.inode == listing.inode
            and self._children_present(listing)
        ):
            r.unchanged += len(listing.files)
        else:
            self._differing.append((listing, rec, digest))
            if len(self._differing) >= FETCH_DIRS:
                self._compare_differing()
        return [listing.path_of(name) for name in listing.dirs]

    def _children_present(self, listing: Listing) -> bool:
        children = self._children.get(listing.rel)
        if not children:
            return True
        present = set(listing.dirs)
        return all(child.rsplit("/", 1)[-1] in present for child in children)

    def _compare_differing(self) -> None:
        """Fetch the records of the differing directories in one query and compare them."""
        if not self._differing:
            return
        group, self._differing = self._differing, []
        self.fetches += 1
        states = self.bridge.call(self.bridge.store.file_states([rec.id for _, rec, _ in group]))
        for listing, rec, digest in group:
            old = states.get(rec.id, {})
            children = self._children.get(listing.rel, [])
            if (rec.device, rec.inode) != (listing.device, listing.inode):
                if listing.entries == 0 and (old or children):
                    self.result.keep(listing.rel or ".", "another, empty folder is here now")
                    continue
                self._batch.dirs.append(DirIdentity(listing.rel, listing.device, listing.inode))
            self._compare(listing, old, children, digest, rec)

    def _compare(
        self,
        listing: Listing,
        old: FileStates,
        children: list[str],
        digest: str | None,
        rec: DirRecord | None,
    ) -> None:
        batch = self._batch
        if rec is not None and rec.digest is not None:
            batch.digests.append((listing.rel, None))  # until all its changes are written
        new: list[NewFile] = []
        changed = batch.changed
        n_changed = len(changed)
        pop = old.pop
        for name, size, mtime_ns in listing.files:
            known = pop(name, None)
            if known is None:
                new.append((name, size, mtime_ns, kind_of(name)))
            elif known[1] != size or known[2] != mtime_ns:
                changed.append((known[0], size, mtime_ns))
        r = self.result
        r.new += len(new)
        r.changed += len(changed) - n_changed
        r.unchanged += len(listing.files) - len(new) - (len(changed) - n_changed)
        for name, reason in listing.errors:
            r.error(listing.path_of(name), reason)
            old.pop(name, None)  # unknown: keep its record
        for name in listing.mounts:
            old.pop(name, None)
            if listing.path_of(name) in self._dirs:
                r.keep(listing.path_of(name), "another file system is mounted here")
        batch.gone_files.extend(known[0] for known in old.values())
        if children:
            present = {*listing.dirs, *listing.mounts, *(n for n, _ in listing.errors)}
            for child in children:
                if child.rsplit("/", 1)[-1] not in present:
                    self._drop_subtree(child)
        step = self.batch_rows
        for i in range(0, len(new), step):  # a huge folder spreads over several batches
            self._batch.new_files.setdefault(listing.rel, []).extend(new[i : i + step])
            if i + step < len(new):
                self._maybe_flush()
        if digest is not None or (rec is not None and rec.digest is not None):
            self._batch.digests.append((listing.rel, digest))
        self._maybe_flush()

    def _drop_subtree(self, rel: str) -> None:
        stack = [rel]
        while stack:
            path = stack.pop()
            rec = self._dirs.get(path)
            if rec is not None:
                self._batch.gone_dirs.append(rec.id)
                self.result.directories_removed += 1
            stack.extend(self._children.get(path, []))

    # -- records and batches ------------------------------------------------------------
    def _load_dirs(self) -> None:
        for rec in self.bridge.call(self.bridge.store.list_dirs(self.root.id)):
            self._dirs[rec.path] = rec
            self._path_of[rec.id] = rec.path
            if rec.path:
                parent = rec.path.rsplit("/", 1)[0] if "/" in rec.path else ""
                self._children.setdefault(parent, []).append(rec.path)

    def _new_batch(self) -> ScanBatch:
        return ScanBatch(root_id=self.root.id, at=self.now())

    def _maybe_flush(self) -> None:
        if self._batch.rows >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._batch.rows or self._batch.digests:
            self.writer.submit(self._batch)
        self._batch = self._new_batch()

    def _written(self, res: ScanBatchResult) -> None:
        self.result.vanished += res.removed
        if res.removed_images:
            paths = [
                f"{d}/{name}" if (d := self._path_of.get(dir_id, "")) else name
                for dir_id, name in res.removed_images
            ]
            self.result.thumbnails_removed += delete_thumbnails(self.cache_dir, self.root.id, paths)

    def _report(self, queued: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY and not final:
            return
        self._last_progress = now
        r = self.result
        message = f"root {r.id}: {self._seen:,} files in {r.directories:,} folders"
        # folders listed of those recorded (a rescan), or of those seen so far (a first scan)
        total = r.directories if final else max(len(self._dirs), r.directories + queued)
        self.hooks.progress(r.directories, total, message)
