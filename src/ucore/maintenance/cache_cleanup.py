"""cache_cleanup: delete old and orphaned thumbnails and stale temp files from the cache dir.

**What it may delete.** Only inside the cache dir, only in ``thumbnails/<size>/`` (``<size>``
all ASCII digits), only regular files whose name our naming function produces
(:data:`~ucore.fs.thumbnails.NAME_RE`, ``<sha256 hex>.png``) and our temp files
(:data:`~ucore.fs.thumbnails.TEMP_RE`, ``.<sha256 hex>.png.tmp-<pid>``). Anything else —
another name (even a near miss, or one with a newline or bytes that are not UTF-8), another
folder, a symlink, a FIFO, a socket, a device, a folder with a thumbnail's name, a file on
another file system — is never touched and is counted in ``skipped`` by reason. The rest of
the cache dir is not even listed.

**Which of ours go.** The *age* of a thumbnail is the newer of its atime and mtime (from
``lstat``: the scan never reads a file, so it never moves an atime), against the app clock's
now. Four rules, each a count in the result:

1. ``temp_files``: temp files whose mtime is more than a day old (a writer crashed; a younger
   one may be being written now: ``skipped.young_temp``);
2. ``orphans``: thumbnails that no record with a ``done`` thumbnail names (the record is gone,
   or its thumbnail is pending, failed, none or evicted), whatever their age — but only when
   their age is over :data:`ORPHAN_GRACE` (one hour). ``thumbnails_generate`` writes a
   thumbnail, then marks its record ``done`` up to a few hundred images later, so a thumbnail
   made or used in the last hour whose record is not ``done`` is kept
   (``skipped.young_orphan``); if its record is still not ``done`` an hour later, it goes;
3. ``expired``: older than ``max_age_days`` (null: no age limit);
4. ``over_size``: then, oldest first, until the total of what remains is at most
   ``max_cache_size_gb`` (GB = 2^30 bytes; null: no size cap). The total counts every file of
   ours in the inventory (thumbnails and temp files, kept or not), by ``st_size``. The size cap
   applies whether or not the age limit is on.

The thumbnails a record owns are found by streaming the ``done`` records in pages
(``thumbnail_sources``) and hashing them with :func:`~ucore.fs.thumbnails.thumbnail_name`;
only names present in the cache are kept (name → record id), so memory follows the cache's
inventory (about 260 bytes per thumbnail at the peak: :class:`Inventory` keeps columns, not
objects), not the number of records. When a live record's thumbnail is deleted (expired, over
size), the record is set ``evicted`` *before* its file goes (:data:`CHUNK` files at a time,
their evictions committed together): if the run stops in between, the record says evicted
while its file is still there — an orphan the next run deletes — never ``done`` without it.

**Refused** (the run fails, nothing touched): a cache dir that is ``/``, a home dir (of this
user or of any account in the password database) or a folder holding one, a library root,
inside a library root, or holding one (all compared after ``realpath``).

**How it deletes.** Relative to open directory descriptors: the cache dir (its real path),
``thumbnails`` and each size folder are opened with ``O_DIRECTORY | O_NOFOLLOW`` relative to
their parent and must be on the cache dir's file system (``st_dev``); entries are listed with
``os.scandir(fd)`` and ``lstat``-ed. Just before an unlink the name is ``lstat``-ed again and
must still be a regular file with the same inode and device; then ``unlinkat`` (which never
follows a symlink: a file swapped for a symlink after the check loses the symlink, never the
target). A file that vanished meanwhile counts as done (``vanished``); one that changed is
left (``skipped.changed``); any other error is a warning (the first :data:`MAX_LISTED` name
their file) and the run goes on. Afterwards empty size folders, then an empty
``thumbnails``, are removed (``rmdir`` fails harmlessly when something is in them).

The chosen thumbnails are deleted in inode order, as GNU ``find`` visits a big folder: on
ext4 several times faster than by age or by name; so a run cut short has not necessarily
deleted the oldest first.

Cancel and ``time_budget_seconds`` take effect every :data:`SCAN_STEP` entries listed and every
:data:`DELETE_STEP` files deleted (a run cut short while listing deletes nothing; the next one
starts over). A dry run takes the same decisions and changes nothing. A missing cache dir or
``thumbnails`` folder: nothing to do (``nothing_to_do: true``). Result: ``scanned`` (entries
listed), ``deleted`` (files), ``bytes_freed``, ``bytes_remaining``, ``skipped`` (counts by
reason: ``foreign``, ``symlinks``, ``special``, ``other_device``, ``young_temp``,
``young_orphan``, ``changed``), ``temp_files``, ``orphans``, ``expired``, ``over_size``,
``evicted`` (records reset), ``vanished``, ``errors``, ``cache_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import pwd
import re
import stat
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Any, TypeVar

from ucore.foundation.config.params import CacheCleanupParams
from ucore.fs.system import library_of
from ucore.fs.thumbnails import NAME_RE, TEMP_RE, THUMBNAILS_DIR, thumbnail_name
from ucore.maintenance.run import MaintenanceRun, human_bytes, shown

NAME = "cache_cleanup"
DAY = 86400.0
GB = 1024**3
#: temp files younger than this (by mtime) may be being written: kept
TEMP_MIN_AGE = DAY
#: thumbnails of no ``done`` record younger than this (by age) may be being made: kept
ORPHAN_GRACE = 3600.0
#: entries listed between two checks of cancel and budget
SCAN_STEP = 1000
#: files deleted between two checks of cancel and budget
DELETE_STEP = 200
#: files deleted per chunk (their records are evicted first, together)
CHUNK = 10_000
#: record ids per ``evict_thumbnails`` call; a chunk's calls are made at once, so that the
#: store's writer commits them together (one fsync instead of one per call)
EVICT_BATCH = 500
#: records per ``thumbnail_sources`` page
SOURCES_PAGE = 5000
#: warnings that name a file; further errors are only counted
MAX_LISTED = 10
SIZE_DIR_RE = re.compile(r"[0-9]+")
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: the reasons of ``skipped``, in the order the result lists them
SKIP_REASONS = (
    "foreign",
    "symlinks",
    "special",
    "other_device",
    "young_temp",
    "young_orphan",
    "changed",
)
#: why a file of ours goes (each a count in the result)
REASONS = ("temp_files", "orphans", "expired", "over_size")

#: Called with (folder fd, name) just before each file's last check and unlink: the tests'
#: hook to swap a file for a symlink at the worst moment. None in normal use.
_before_delete: Callable[[int, str], None] | None = None


T = TypeVar("T")


class UnsafeCacheDir(Exception):
    """The cache dir is a place where nothing may be deleted: the run is refused."""


# -- the inventory --------------------------------------------------------------------------
@dataclass
class Folder:
    """A size folder, open (``fd``) for the whole run."""

    name: str
    fd: int


#: an old temp file of ours: (folder index, name, inode, size)
Temp = tuple[int, str, int, int]


@dataclass
class Inventory:
    """What the scan found. Our thumbnails are kept in columns, in the order they were
    listed (thumbnail ``i`` is ``digests[i]``, ``ages[i]``, ...): about 100 bytes each, a
    third of a tuple of Python objects, so that a cache of a million thumbnails fits."""

    device: int
    now: float
    folders: list[Folder] = field(default_factory=list)
    #: the name's 32 bytes (the name is their hex and ``.png``)
    digests: list[bytes] = field(default_factory=list)
    #: the newer of atime and mtime (epoch seconds)
    ages: array[float] = field(default_factory=lambda: array("d"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    inodes: array[int] = field(default_factory=lambda: array("Q"))
    #: index of the folder in ``folders``
    where: array[int] = field(default_factory=lambda: array("I"))
    old_temps: list[Temp] = field(default_factory=list)
    scanned: int = 0
    total_bytes: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    errors: list[str] = field(default_factory=list)

    def name(self, i: int) -> str:
        return self.digests[i].hex() + ".png"


def open_dir(name: str, parent_fd: int | None, device: int | None) -> int | str:
    """Open a folder without following a symlink; its fd, or the skip reason (or raises
    FileNotFoundError when it is not there, OSError when it cannot be opened)."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        return "symlinks" if stat.S_ISLNK(st.st_mode) else "special"
    if device is not None and os.fstat(fd).st_dev != device:
        os.close(fd)
        return "other_device"
    return fd


def scan(run: MaintenanceRun, thumbs_fd: int, inv: Inventory) -> None:
    """List ``thumbnails`` and each size folder (in a thread); fills ``inv``."""
    with os.scandir(thumbs_fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it]
    for name, is_dir, is_link in entries:
        inv.scanned += 1
        if SIZE_DIR_RE.fullmatch(name) is None:
            inv.skipped["foreign"] += 1
            continue
        if is_link or not is_dir:
            inv.skipped["symlinks" if is_link else "special"] += 1
            continue
        try:
            opened = open_dir(name, thumbs_fd, inv.device)
        except FileNotFoundError:
            continue
        except OSError as exc:
            inv.errors.append(f"cannot open {shown(THUMBNAILS_DIR, name)}: {exc.strerror}")
            continue
        if isinstance(opened, str):
            inv.skipped[opened] += 1
            continue
        inv.folders.append(Folder(name, opened))
        scan_folder(run, inv, len(inv.folders) - 1)


def scan_folder(run: MaintenanceRun, inv: Inventory, index: int) -> None:
    """List one size folder: our files with their facts, the rest counted by reason."""
    folder = inv.folders[index]
    device, skipped = inv.device, inv.skipped
    add_digest, add_age, add_size = inv.digests.append, inv.ages.append, inv.sizes.append
    add_inode, add_where = inv.inodes.append, inv.where.append
    temp_cutoff = inv.now - TEMP_MIN_AGE
    name_match, temp_match = NAME_RE.fullmatch, TEMP_RE.fullmatch
    with os.scandir(folder.fd) as it:
        for entry in it:
            inv.scanned += 1
            if inv.scanned % SCAN_STEP == 0:
                run.step()
                run.ctx.message(f"listed {inv.scanned:,} cache entries")
            name = entry.name
            is_thumb = name_match(name) is not None
            if not is_thumb and temp_match(name) is None:
                skipped["foreign"] += 1
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished since the listing
            except OSError as exc:
                where = shown(THUMBNAILS_DIR, folder.name, name)
                inv.errors.append(f"cannot stat {where}: {exc.strerror}")
                continue
            mode = st.st_mode
            if not stat.S_ISREG(mode):
                skipped["symlinks" if stat.S_ISLNK(mode) else "special"] += 1
                continue
            if st.st_dev != device:
                skipped["other_device"] += 1
                continue
            inv.total_bytes += st.st_size
            if is_thumb:
                add_digest(bytes.fromhex(name[:64]))
                add_age(st.st_atime if st.st_atime > st.st_mtime else st.st_mtime)
                add_size(st.st_size)
                add_inode(st.st_ino)
                add_where(index)
            elif st.st_mtime < temp_cutoff:
                inv.old_temps.append((index, name, st.st_ino, st.st_size))
            else:
                skipped["young_temp"] += 1


# -- ownership and the plan -----------------------------------------------------------------
async def owners_of(run: MaintenanceRun, inv: Inventory) -> dict[bytes, int]:
    """digest → id of the ``done`` record that owns it (0: none), for the thumbnails in the
    cache only: the records are streamed in pages and hashed, never all held."""
    owners = dict.fromkeys(inv.digests, 0)
    missing = len(owners)
    after = 0
    seen = 0
    while missing:
        run.step()
        page = await run.store.thumbnail_sources(after_id=after, limit=SOURCES_PAGE)
        for file_id, root_id, rel_path in page:
            digest = bytes.fromhex(thumbnail_name(root_id, rel_path)[:64])
            if owners.get(digest) == 0:
                owners[digest] = file_id
                missing -= 1
        seen += len(page)
        run.ctx.message(f"checked {seen:,} thumbnail records")
        if len(page) < SOURCES_PAGE:
            break
        after = page[-1][0]
    return owners


KEEP, ORPHAN, EXPIRED, OVER_SIZE = 0, 1, 2, 3
REASON_OF = {ORPHAN: "orphans", EXPIRED: "expired", OVER_SIZE: "over_size"}


@dataclass
class Plan:
    """What goes: old temp files, and thumbnails by index with a decision each."""

    temps: list[Temp]
    #: per thumbnail: KEEP, ORPHAN, EXPIRED or OVER_SIZE
    decisions: bytearray
    #: the thumbnails that go, in inode order
    doomed: array[int]
    #: thumbnails of no ``done`` record, kept because they are younger than ORPHAN_GRACE
    young_orphans: int
    bytes: int


def plan(inv: Inventory, owners: dict[bytes, int], params: CacheCleanupParams) -> Plan:
    """Temp files, orphans, expired, then oldest first down to the size cap. The thumbnails go
    in inode order (inode tables are read and written in sequence: on ext4 several times
    faster than by age or by name; GNU ``find`` sorts big folders by inode for this too)."""
    ages, sizes, digests = inv.ages, inv.sizes, inv.digests
    decisions = bytearray(len(digests))
    grace_cutoff = inv.now - ORPHAN_GRACE
    age_cutoff = -math.inf if params.max_age_days is None else inv.now - params.max_age_days * DAY
    freed = sum(t[3] for t in inv.old_temps)
    young_orphans = 0
    kept = array("q")
    for i, digest in enumerate(digests):
        if not owners[digest]:
            if ages[i] < grace_cutoff:
                decisions[i] = ORPHAN
                freed += sizes[i]
            else:
                young_orphans += 1
        elif ages[i] < age_cutoff:
            decisions[i] = EXPIRED
            freed += sizes[i]
        else:
            kept.append(i)
    if params.max_cache_size_gb is not None:
        cap = params.max_cache_size_gb * GB
        remaining = inv.total_bytes - freed
        if remaining > cap:
            for i in sorted(kept, key=ages.__getitem__):  # oldest first
                if remaining <= cap:
                    break
                decisions[i] = OVER_SIZE
                remaining -= sizes[i]
                freed += sizes[i]
    chosen = compress(range(len(decisions)), decisions)
    doomed = array("q", sorted(chosen, key=inv.inodes.__getitem__))
    return Plan(inv.old_temps, decisions, doomed, young_orphans, freed)


# -- deleting -------------------------------------------------------------------------------
#: one file to delete: (folder index, name, inode, size, reason)
Target = tuple[int, str, int, int, str]
#: the files of a chunk, and the records to evict before they go
Chunk = tuple[list[Target], list[int]]


def chunks(inv: Inventory, todo: Plan, owners: dict[bytes, int]) -> Iterator[Chunk]:
    """The files to delete, CHUNK at a time, each chunk with the records to evict first."""
    if todo.temps:
        yield [(f, name, ino, size, "temp_files") for f, name, ino, size in todo.temps], []
    for start in range(0, len(todo.doomed), CHUNK):
        part = todo.doomed[start : start + CHUNK]
        targets = [
            (inv.where[i], inv.name(i), inv.inodes[i], inv.sizes[i], REASON_OF[todo.decisions[i]])
            for i in part
        ]
        file_ids = [owners[inv.digests[i]] for i in part if todo.decisions[i] != ORPHAN]
        yield targets, file_ids


@dataclass
class Tally:
    deleted: int = 0
    bytes_freed: int = 0
    vanished: int = 0
    vanished_bytes: int = 0
    changed: int = 0
    done: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    errors: list[str] = field(default_factory=list)


def delete_file(fd: int, name: str, inode: int, device: int) -> str:
    """Unlink ``name`` in folder ``fd`` if it is still the regular file the scan saw:
    ``deleted``, ``vanished`` or ``changed`` (other OSErrors propagate)."""
    if _before_delete is not None:
        _before_delete(fd, name)
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return "vanished"
    if not stat.S_ISREG(st.st_mode) or st.st_ino != inode or st.st_dev != device:
        return "changed"
    try:
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        return "vanished"
    return "deleted"


def delete_chunk(
    run: MaintenanceRun, inv: Inventory, targets: list[Target], tally: Tally, total: int
) -> None:
    """Delete a chunk of files (in a thread); cancel and budget every DELETE_STEP files."""
    for index, name, inode, size, reason in targets:
        if tally.done and tally.done % DELETE_STEP == 0:
            run.step()
            run.ctx.progress(tally.done, total, f"deleted {tally.deleted:,} of {total:,} files")
        tally.done += 1
        folder = inv.folders[index]
        try:
            outcome = delete_file(folder.fd, name, inode, inv.device)
        except OSError as exc:
            where = shown(THUMBNAILS_DIR, folder.name, name)
            tally.errors.append(f"cannot delete {where}: {exc.strerror}")
            continue
        if outcome == "deleted":
            tally.deleted += 1
            tally.bytes_freed += size
            tally.by_reason[reason] += 1
        elif outcome == "vanished":
            tally.vanished += 1
            tally.vanished_bytes += size
        else:
            tally.changed += 1


def remove_empty_folders(inv: Inventory, cache_fd: int, thumbs_fd: int) -> int:
    """rmdir each size folder, then ``thumbnails``; a folder not empty stays. Returns how
    many went."""
    removed = 0
    for folder in inv.folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder.name, dir_fd=thumbs_fd)
            removed += 1
    with contextlib.suppress(OSError):
        os.rmdir(THUMBNAILS_DIR, dir_fd=cache_fd)
        removed += 1
    return removed


# -- safety ---------------------------------------------------------------------------------
def home_dirs() -> set[str]:
    """Every home dir this machine knows: the user's own and the password database's."""
    homes: set[str] = set()
    with contextlib.suppress(RuntimeError, KeyError, OSError):
        homes.add(str(Path.home()))
    with contextlib.suppress(OSError):
        homes.update(p.pw_dir for p in pwd.getpwall() if p.pw_dir)
    return {os.path.realpath(h) for h in homes}


def within(inner: str, outer: str) -> bool:
    """``inner`` is ``outer`` or below it (both real, absolute paths)."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def check_cache_dir(real: str, roots: Iterable[tuple[int, str]], homes: Iterable[str]) -> None:
    """Raise UnsafeCacheDir if ``real`` (the cache dir's real path) may not be cleaned."""
    why = None
    if real == "/":
        why = "it is the file system's root /"
    else:
        for home in sorted(homes):
            if within(home, real):
                shown_home = shown(home)
                why = (
                    f"it is the home dir {shown_home}" if home == real else f"it holds {shown_home}"
                )
                break
    if why is None:
        for root_id, path in roots:
            root = os.path.realpath(path)
            if within(real, root):
                where = "is" if real == root else "is inside"
                why = f"it {where} library root {root_id} ({shown(root)})"
                break
            if within(root, real):
                why = f"it holds library root {root_id} ({shown(root)})"
                break
    if why is not None:
        raise UnsafeCacheDir(f"refusing to clean the cache dir {shown(real)}: {why}")


# -- the task -------------------------------------------------------------------------------
async def in_thread(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a thread; when this coroutine is cancelled, it still waits for the
    thread to end (it stops at its next ``run.step()``: a cancel sets the stop request
    first), so that no folder fd is closed while the thread works relative to it."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


def _start_result(run: MaintenanceRun, real: str) -> None:
    run.result.update(
        cache_dir=real,
        scanned=0,
        deleted=0,
        bytes_freed=0,
        bytes_remaining=0,
        skipped=dict.fromkeys(SKIP_REASONS, 0),
        **dict.fromkeys(REASONS, 0),
        evicted=0,
        vanished=0,
        errors=0,
    )


@dataclass(frozen=True)
class OpenCache:
    """The cache dir and its ``thumbnails``, open for the run."""

    cache_fd: int
    thumbs_fd: int
    device: int


def _open_cache(real: str, run: MaintenanceRun, stack: contextlib.ExitStack) -> OpenCache | None:
    """Open the cache dir and ``thumbnails`` (closed with ``stack``); None when there is
    nothing to clean (either is missing, or ``thumbnails`` is not a folder of its own)."""
    try:
        cache_fd = os.open(real, DIR_FLAGS)
    except FileNotFoundError:
        return None
    stack.callback(os.close, cache_fd)
    device = os.fstat(cache_fd).st_dev
    try:
        opened = open_dir(THUMBNAILS_DIR, cache_fd, device)
    except FileNotFoundError:
        return None
    if isinstance(opened, str):
        run.result["skipped"][opened] += 1
        what = {
            "symlinks": "a symlink",
            "special": "not a folder",
            "other_device": "on another file system",
        }[opened]
        run.warn(f"{shown(real, THUMBNAILS_DIR)} is {what}: left alone")
        return None
    stack.callback(os.close, opened)
    return OpenCache(cache_fd, opened, device)


async def body(run: MaintenanceRun) -> None:
    params: CacheCleanupParams = run.ctx.params
    real = await in_thread(os.path.realpath, library_of(run.ctx.app).cache_dir)
    _start_result(run, real)
    roots = [(r.id, r.path) for r in await run.store.list_roots()]
    check_cache_dir(real, roots, await in_thread(home_dirs))
    with contextlib.ExitStack() as stack:
        cache = await in_thread(_open_cache, real, run, stack)
        if cache is None:
            run.result["nothing_to_do"] = True
            return
        inv = Inventory(device=cache.device, now=run.ctx.app.clock.now().timestamp())
        stack.callback(_close_folders, inv)
        try:
            await in_thread(scan, run, cache.thumbs_fd, inv)
        finally:
            _report_scan(run, inv)
        owners = await owners_of(run, inv)
        todo = plan(inv, owners, params)
        run.result["skipped"]["young_orphan"] += todo.young_orphans
        if run.dry_run:
            _report_plan(run, inv, todo, owners)
            return
        tally = Tally()
        try:
            await _delete(run, inv, todo, owners, tally)
        finally:
            _report_tally(run, inv, tally)
        await in_thread(remove_empty_folders, inv, cache.cache_fd, cache.thumbs_fd)


def _close_folders(inv: Inventory) -> None:
    for folder in inv.folders:
        with contextlib.suppress(OSError):
            os.close(folder.fd)


async def _delete(
    run: MaintenanceRun, inv: Inventory, todo: Plan, owners: dict[bytes, int], tally: Tally
) -> None:
    total = len(todo.temps) + len(todo.doomed)
    run.ctx.progress(0, total or 1, f"deleting {total:,} files")
    for targets, file_ids in chunks(inv, todo, owners):
        if file_ids:  # evicted before the files go: never `done` without its thumbnail
            run.result["evicted"] += await evict(run, file_ids)
        await in_thread(delete_chunk, run, inv, targets, tally, total)
        run.step()
    run.ctx.progress(total, total or 1, f"deleted {tally.deleted:,} files")


async def evict(run: MaintenanceRun, file_ids: list[int]) -> int:
    """Set these records' thumbnails ``evicted``: concurrent calls of EVICT_BATCH ids, which
    the store's single writer runs in as few transactions as it can (group commit)."""
    parts = [file_ids[i : i + EVICT_BATCH] for i in range(0, len(file_ids), EVICT_BATCH)]
    return sum(await asyncio.gather(*(run.store.evict_thumbnails(part) for part in parts)))


def _warn_errors(run: MaintenanceRun, errors: list[str]) -> None:
    for text in errors[:MAX_LISTED]:
        run.warn(text)
    if len(errors) > MAX_LISTED:
        run.warn(f"... and {len(errors) - MAX_LISTED:,} more errors like these")


def _report_scan(run: MaintenanceRun, inv: Inventory) -> None:
    result = run.result
    result["scanned"] = inv.scanned
    result["errors"] += len(inv.errors)
    for reason, count in inv.skipped.items():
        result["skipped"][reason] += count
    result["bytes_remaining"] = inv.total_bytes
    _warn_errors(run, inv.errors)


def _report_plan(run: MaintenanceRun, inv: Inventory, todo: Plan, owners: dict[bytes, int]) -> None:
    """A dry run's result: what the plan would delete."""
    result = run.result
    result["temp_files"] = len(todo.temps)
    for code, reason in REASON_OF.items():
        result[reason] = todo.decisions.count(code)
    result["deleted"] = len(todo.temps) + len(todo.doomed)
    result["bytes_freed"] = todo.bytes
    result["bytes_remaining"] = inv.total_bytes - todo.bytes
    live = {owners[inv.digests[i]] for i in todo.doomed if todo.decisions[i] != ORPHAN}
    result["evicted"] = len(live)


def _report_tally(run: MaintenanceRun, inv: Inventory, tally: Tally) -> None:
    """A real run's result: what happened (also when it stopped early)."""
    result = run.result
    result.update(tally.by_reason)
    result["deleted"] = tally.deleted
    result["bytes_freed"] = tally.bytes_freed
    result["vanished"] = tally.vanished
    result["bytes_remaining"] = inv.total_bytes - tally.bytes_freed - tally.vanished_bytes
    result["skipped"]["changed"] += tally.changed
    result["errors"] += len(tally.errors)
    _warn_errors(run, tally.errors)


def summary(result: dict[str, Any]) -> str:
    if result.get("nothing_to_do"):
        return "no thumbnails in the cache: nothing to do"
    dry = bool(result.get("dry_run"))
    deleted = int(result.get("deleted", 0))
    temps = int(result.get("temp_files", 0))
    what = f"{deleted - temps:,} thumbnails" + (f" and {temps:,} temp files" if temps else "")
    text = (
        f"{'would delete' if dry else 'deleted'} {what}, "
        f"{'would free' if dry else 'freed'} {human_bytes(result.get('bytes_freed', 0))}; "
        f"{human_bytes(result.get('bytes_remaining', 0))} remain"
    )
    skipped = result.get("skipped")
    if isinstance(skipped, dict) and (count := sum(skipped.values())):
        text += f"; {count:,} entries skipped"
    return text
