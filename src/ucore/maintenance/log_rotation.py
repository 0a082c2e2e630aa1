"""log_rotation: rotate, compress and prune UCore's own log files (DESIGN.md §6.5).

The rules, in the order a run applies them:

* **Our logs only.** A *live log* is a regular file directly in the log dir whose name matches
  ``ucore*.log`` or ``uexplorer*.log`` (case-sensitive). An *archive* is a regular file named
  by our pattern for a live name: ``<live>-YYYYMMDD-HHMMSS`` (the UTC time of the rotation,
  logrotate's ``dateext`` style), with ``-2``, ``-3``, ... when that name was taken, and
  ``.gz`` once compressed; ``<archive>.gz.tmp`` is our temp file while compressing. Nothing
  else is ever opened for writing, renamed or deleted: not another program's log, not a name
  that merely looks similar, not a symlink (every entry is judged by ``lstat``; files are
  opened ``O_NOFOLLOW`` relative to the open log dir, and an unlink never follows a link), not
  a FIFO or a folder, nothing below the top level. The log dir's own path is taken as
  configured (as the log writers take it).
* **One rotator at a time** per log dir: an exclusive, non-blocking ``flock`` on the log dir;
  a second run finds it held and completes with ``skipped`` saying so.
* **Leftovers of a crash** are finished: our stale temp files are removed first, and an
  uncompressed archive is compressed like a new one (below); if its ``.gz`` exists too (the
  crash came after the rename of the temp file), it is written again and replaces it.
* **Rotation**: a live log larger than ``max_log_size_mb`` (MiB, 2^20 bytes; so never an
  empty one) is renamed to its archive name with
  :func:`ucore.foundation.logs.detach_for_rotation`, which then waits (exclusive ``flock``)
  for every write in flight of every process. Every writer reopens the live name at its next
  record, so no line is lost and none lands in a file that is later deleted. Logs at or under
  the limit are left alone.
* **Retention**: per live name, at most ``max_log_files`` archives are kept, the newest by the
  date and number in their names; older ones are deleted (an archive made by this run never
  is, even when the clock went backwards).
* **Compression**: each kept uncompressed archive is gzipped at level 6 (zlib, streamed in
  1 MiB chunks, in a worker thread) into ``<archive>.gz.tmp``, fsynced, renamed to
  ``<archive>.gz`` (the directory fsynced), and only then is the uncompressed archive removed.
  It keeps the archive's modification time.
* **A failure never stops logging and never loses a log**: every file is handled on its own;
  an error (permission, disk full, a vanished file, a compression error) is a warning and the
  run goes on with the next file. The worst case is an uncompressed archive, finished by the
  next run.
* **Cancel and time budget** are checked between files and between compression chunks. A
  compression cut short removes its temp file and leaves the uncompressed archive; the next
  run starts it again from the beginning (so a budget shorter than one archive's compression,
  at roughly 40 MB/s, leaves that archive uncompressed: still counted and pruned).
* **Dry run**: lists the log dir and reports what would be rotated, compressed and deleted;
  changes nothing (``bytes_freed`` then counts only what deletion would free).

Result: ``rotated``, ``compressed``, ``deleted`` (old archives), ``bytes_freed`` (deleted
archives and temp files, plus what compression saved), ``log_dir``, ``files`` (what was done
to which file, at most :data:`MAX_DETAILS` entries), and the shared keys.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import fcntl
import fnmatch
import os
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ucore.foundation.config.params import LogRotationParams
from ucore.foundation.logs import detach_for_rotation
from ucore.maintenance.run import MaintenanceRun, human_bytes, shown

NAME = "log_rotation"
#: The names of live logs: ours, and nothing else.
LIVE_GLOBS = ("ucore*.log", "uexplorer*.log")
#: The date part of an archive name (UTC).
STAMP_FORMAT = "%Y%m%d-%H%M%S"
GZ_SUFFIX = ".gz"
TEMP_SUFFIX = ".gz.tmp"
#: gzip level, as ``gzip -6`` (its default).
LEVEL = 6
#: Bytes read and compressed per step (cancel and budget are checked between chunks).
CHUNK = 1 << 20
#: Progress is reported after every this many bytes compressed (about a quarter second).
PROGRESS_EVERY = 8 * CHUNK
MIB = 1 << 20
#: At most this many entries in the result's ``files``.
MAX_DETAILS = 100

_ARCHIVE = re.compile(
    r"(?P<live>.+\.log)-(?P<date>\d{8}-\d{6})(?:-(?P<seq>[1-9]\d*))?"
    r"(?P<ext>\.gz|\.gz\.tmp)?",
    re.DOTALL,
)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: The errors of one file that make a warning, not a failed run.
FILE_ERRORS = (OSError, zlib.error)

Step = Callable[[], None]


def is_live_log(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in LIVE_GLOBS)


@dataclass
class Archive:
    """One archive of a live log: its uncompressed and/or compressed file."""

    live: str
    stem: str  # the name without .gz
    key: tuple[str, int]  # (date, number): sorts oldest first
    plain: int | None = None  # size of the uncompressed file; None: there is none
    gz: int | None = None  # size of the .gz file; None: there is none
    new: bool = False  # made by this run: never deleted by it

    @property
    def size(self) -> int:
        return (self.plain or 0) + (self.gz or 0)


def parse_archive(name: str) -> tuple[str, str, tuple[str, int], str] | None:
    """``(live, stem, key, ext)`` of a name made by our archive pattern, else None."""
    m = _ARCHIVE.fullmatch(name)
    if m is None or not is_live_log(m["live"]):
        return None
    ext = m["ext"] or ""
    return m["live"], name[: len(name) - len(ext)], (m["date"], int(m["seq"] or 1)), ext


@dataclass
class Listing:
    """Our files in the log dir (regular files only, by lstat)."""

    live: dict[str, int] = field(default_factory=dict)  # name -> size
    archives: dict[str, dict[str, Archive]] = field(default_factory=dict)  # live -> stem ->
    temps: dict[str, int] = field(default_factory=dict)  # name -> size

    def archive(self, live: str, stem: str, key: tuple[str, int]) -> Archive:
        group = self.archives.setdefault(live, {})
        if stem not in group:
            group[stem] = Archive(live, stem, key)
        return group[stem]


def list_logs(dir_fd: int) -> Listing:
    listing = Listing()
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            name = entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if is_live_log(name):
                listing.live[name] = st.st_size
                continue
            parsed = parse_archive(name)
            if parsed is None:
                continue
            live, stem, key, ext = parsed
            if ext == TEMP_SUFFIX:
                listing.temps[name] = st.st_size
            elif ext == GZ_SUFFIX:
                listing.archive(live, stem, key).gz = st.st_size
            else:
                listing.archive(live, stem, key).plain = st.st_size
    return listing


def retention(listing: Listing, keep: int) -> tuple[list[Archive], list[Archive]]:
    """(to delete, to keep) over every live name: the ``keep`` newest per name are kept, and
    every archive made by this run."""
    delete: list[Archive] = []
    kept: list[Archive] = []
    for live in sorted(listing.archives):
        ordered = sorted(listing.archives[live].values(), key=lambda a: a.key, reverse=True)
        for i, archive in enumerate(ordered):
            (kept if i < keep or archive.new else delete).append(archive)
    return delete, kept


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def compress_archive(
    dir_fd: int,
    stem: str,
    step: Step,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Gzip ``stem`` (in the open dir ``dir_fd``) to ``stem.gz``; return (bytes in, bytes out).

    Level 6, streamed in :data:`CHUNK` pieces (``step()`` before each, ``progress(bytes
    read)`` every :data:`PROGRESS_EVERY`); written to
    ``stem.gz.tmp``, fsynced, renamed over ``stem.gz``, the directory fsynced, then ``stem``
    removed. On any error or a stop from ``step`` the temp file is removed and ``stem`` stays.
    """
    src = os.open(stem, _READ_FLAGS, dir_fd=dir_fd)
    temp = stem + TEMP_SUFFIX
    created = False
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", stem)
        # a writer still holding the old file (only after a crash of a rotator) is done after
        # this lock, and writes to the live name from its next record on
        fcntl.flock(src, fcntl.LOCK_EX)
        fcntl.flock(src, fcntl.LOCK_UN)
        out = os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=dir_fd)
        created = True
        try:
            packer = zlib.compressobj(LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            read = written = reported = 0
            while True:
                step()
                n = os.readv(src, [buffer])
                if n == 0:
                    break
                read += n
                written += _write_all(out, packer.compress(view[:n]))
                if progress is not None and read - reported >= PROGRESS_EVERY:
                    progress(read)
                    reported = read
            written += _write_all(out, packer.flush())
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(out)
        finally:
            os.close(out)
        os.rename(temp, stem + GZ_SUFFIX, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        created = False
        os.fsync(dir_fd)
        os.unlink(stem, dir_fd=dir_fd)
        return read, written
    except BaseException:
        if created:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except OSError:
                pass
        raise
    finally:
        os.close(src)


class Rotation:
    """One run over one log dir (in a worker thread): see the module's docstring."""

    def __init__(
        self, run: MaintenanceRun, log_dir: Path, dir_fd: int, *, stamp: str, max_bytes: int
    ) -> None:
        params: LogRotationParams = run.ctx.params
        self.run = run
        self.log_dir = log_dir
        self.fd = dir_fd
        self.stamp = stamp
        self.max_bytes = max_bytes
        self.keep = params.max_log_files
        self.result = run.result
        self.done = 0
        self.total = 1

    # -- bookkeeping ---------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        self.result[key] += n

    def _detail(self, **entry: Any) -> None:
        files: list[dict[str, Any]] = self.result["files"]
        if len(files) < MAX_DETAILS:
            files.append(entry)

    def _progress(self, message: str, part: float = 0.0) -> None:
        self.run.ctx.progress(min(self.done + part, self.total), self.total, message)

    def _next(self, message: str) -> None:
        self.run.step()
        self._progress(f"{self.done + 1}/{self.total}: {message}")

    def _fail(self, what: str, name: str, exc: BaseException) -> None:
        if isinstance(exc, FileNotFoundError):
            self.run.warn(f"{what} {shown(name)}: it vanished during the run")
        else:
            self.run.warn(f"{what} {shown(name)}: {shown(str(exc))}")

    # -- the plan ------------------------------------------------------------------------
    def to_rotate(self, listing: Listing) -> list[str]:
        return sorted(name for name, size in listing.live.items() if size > self.max_bytes)

    def free_stem(self, live: str, listing: Listing) -> str:
        """The archive name for ``live`` now: dated, numbered if taken."""
        n = 1
        while True:
            stem = f"{live}-{self.stamp}" + ("" if n == 1 else f"-{n}")
            taken = stem in listing.archives.get(live, {}) or any(
                _exists(stem + ext, self.fd) for ext in ("", GZ_SUFFIX, TEMP_SUFFIX)
            )
            if not taken:
                return stem
            n += 1

    def simulate(self, listing: Listing) -> tuple[list[str], list[Archive], list[Archive]]:
        """What a run would do: (logs to rotate, archives to delete, archives to compress).
        Adds the archives the rotations would make to ``listing``."""
        rotate = self.to_rotate(listing)
        for live in rotate:
            stem = self.free_stem(live, listing)
            parsed = parse_archive(stem)
            assert parsed is not None
            archive = listing.archive(live, stem, parsed[2])
            archive.plain, archive.new = listing.live[live], True
        delete, kept = retention(listing, self.keep)
        return rotate, delete, [a for a in kept if a.plain is not None]

    # -- the run -------------------------------------------------------------------------
    def dry_run(self) -> None:
        listing = list_logs(self.fd)
        temps = dict(listing.temps)
        rotate, delete, compress = self.simulate(listing)
        self._count("rotated", len(rotate))
        self._count("deleted", len(delete))
        self._count("compressed", len(compress))
        self._count("bytes_freed", sum(temps.values()) + sum(a.size for a in delete))
        for name, size in sorted(temps.items()):
            self._detail(file=shown(name), action="remove_temp", bytes=size)
        for live in rotate:
            self._detail(file=shown(live), action="rotate", bytes=listing.live[live])
        for archive in delete:
            self._detail(file=shown(archive.stem), action="delete", bytes=archive.size)
        for archive in compress:
            self._detail(file=shown(archive.stem), action="compress", bytes=archive.plain)
        self._progress("done", self.total)

    def execute(self) -> None:
        listing = list_logs(self.fd)
        # the progress total: what the run would do if every step succeeds
        rotate, delete, compress = self.simulate(copy.deepcopy(listing))
        self.total = max(1, len(listing.temps) + len(rotate) + len(delete) + len(compress))
        for name in sorted(listing.temps):
            self._next(f"removing the stale temp file {shown(name)}")
            self.remove(name, "remove_temp")
            self.done += 1
        for live in rotate:
            self._next(f"rotating {shown(live)}")
            self.rotate(live, listing)
            self.done += 1
        delete, kept = retention(listing, self.keep)
        for archive in delete:
            self._next(f"deleting the old archive {shown(archive.stem)}")
            self.delete(archive)
            self.done += 1
        for archive in kept:
            if archive.plain is not None:
                self._next(f"compressing {shown(archive.stem)}")
                self.compress(archive)
                self.done += 1
        self._progress("done", self.total)

    def remove(self, name: str, action: str) -> bool:
        """Unlink one of our regular files; a vanished file counts as removed."""
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                self.run.warn(f"left {shown(name)} alone: no longer a regular file")
                return False
            os.unlink(name, dir_fd=self.fd)  # never follows a symlink
            size = st.st_size
        except FileNotFoundError:
            size = 0
        except FILE_ERRORS as exc:
            self._fail("could not delete", name, exc)
            return False
        self._count("bytes_freed", size)
        self._detail(file=shown(name), action=action, bytes=size)
        return True

    def rotate(self, live: str, listing: Listing) -> None:
        stem = live
        try:
            stem = self.free_stem(live, listing)
            detach_for_rotation(self.log_dir / live, self.log_dir / stem)
            st = os.stat(stem, dir_fd=self.fd, follow_symlinks=False)
        except FILE_ERRORS as exc:
            self._fail("could not rotate", live, exc)
            return
        if not stat.S_ISREG(st.st_mode):
            self.run.warn(f"rotated {shown(live)} to {shown(stem)}, no longer a regular file")
            return
        parsed = parse_archive(stem)
        assert parsed is not None
        archive = listing.archive(live, stem, parsed[2])
        archive.plain, archive.new = st.st_size, True
        self._count("rotated")
        self._detail(file=shown(live), action="rotate", to=shown(stem), bytes=st.st_size)

    def delete(self, archive: Archive) -> None:
        removed = True
        for name, size in ((archive.stem + GZ_SUFFIX, archive.gz), (archive.stem, archive.plain)):
            if size is not None:
                removed = self.remove(name, "delete") and removed
        if removed:
            self._count("deleted")

    def compress(self, archive: Archive) -> None:
        size = max(archive.plain or 0, 1)

        message = f"{self.done + 1}/{self.total}: compressing {shown(archive.stem)}"

        def progress(read: int) -> None:
            self._progress(f"{message}, {human_bytes(read)}", min(read / size, 1.0))

        try:
            read, written = compress_archive(self.fd, archive.stem, self.run.step, progress)
        except FILE_ERRORS as exc:
            self._fail("could not compress", archive.stem, exc)
            return
        self._count("compressed")
        # the .gz replaced an older .gz of the same archive (left by a crash) if there was one
        self._count("bytes_freed", read + (archive.gz or 0) - written)
        self._detail(file=shown(archive.stem), action="compress", bytes=read, compressed=written)


def rotate_logs(run: MaintenanceRun, log_dir: Path, stamp: str) -> None:
    """The whole run (blocking: call it in a worker thread)."""
    params: LogRotationParams = run.ctx.params
    run.result["log_dir"] = str(log_dir)
    try:
        dir_fd = os.open(log_dir, _DIR_FLAGS)
    except FileNotFoundError:
        return  # no log dir: no logs
    except OSError as exc:
        run.warn(f"cannot open the log dir {log_dir}: {exc}")
        return
    try:
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            run.skip(f"another log rotation is running in {log_dir}")
            return
        max_bytes = int(params.max_log_size_mb * MIB)
        rotation = Rotation(run, log_dir, dir_fd, stamp=stamp, max_bytes=max_bytes)
        try:
            if run.dry_run:
                rotation.dry_run()
            else:
                rotation.execute()
        except FILE_ERRORS as exc:  # listing the log dir failed
            run.warn(f"cannot list the log dir {log_dir}: {exc}")
    finally:
        os.close(dir_fd)  # releases the lock


async def body(run: MaintenanceRun) -> None:
    run.result.update(rotated=0, compressed=0, deleted=0, bytes_freed=0, files=[])
    log_dir = run.ctx.app.locations.log_dir
    stamp = run.ctx.app.clock.now().strftime(STAMP_FORMAT)  # the clock is UTC
    await asyncio.to_thread(rotate_logs, run, log_dir, stamp)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def summary(result: dict[str, Any]) -> str:
    rotated = int(result.get("rotated", 0))
    compressed = int(result.get("compressed", 0))
    deleted = int(result.get("deleted", 0))
    freed = int(result.get("bytes_freed", 0))
    if not (rotated or compressed or deleted or freed):
        return "no log to rotate, nothing to compress or delete"
    if result.get("dry_run"):
        return (
            f"would rotate {_plural(rotated, 'log')}, compress {compressed:,}, "
            f"delete {_plural(deleted, 'old archive')}, free {human_bytes(freed)} by deleting"
        )
    return (
        f"rotated {_plural(rotated, 'log')}, compressed {compressed:,}, "
        f"deleted {_plural(deleted, 'old archive')}, freed {human_bytes(freed)}"
    )
