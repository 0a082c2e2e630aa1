"""THE library-file filter (DESIGN.md §6): one definition for the scan, the verification and
the orphan check.

A **library file** is a regular file under a root, none of whose path components below the
root starts with ``.``, reached without following symlinks and without crossing into another
file system (the ``st_dev`` of every directory and file equals the root's), not matching the
root's ignore globs (:mod:`ucore.fs.ignore`).

The unit of work is one directory: :meth:`LibraryFilter.list_dir` opens it without following
a symlink (``O_NOFOLLOW``), takes its identity from the open descriptor (``fstat``), lists it
with **one** ``os.scandir`` and ``lstat``\\ s its entries relative to that descriptor, so
what it reports is exactly that directory even if the path changes meanwhile. It returns the
library files (name, size, mtime_ns), the subdirectories to descend into, and what it
skipped or could not examine. :meth:`LibraryFilter.walk` chains listings over a whole tree.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ucore.fs.ignore import IgnoreRules

#: One library file of a listing: (name, size, mtime_ns).
FileStat = tuple[str, int, int]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK: opening a FIFO that replaced a file must not block; regular files ignore it
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_S_IFMT = 0o170000
_S_IFREG = stat.S_IFREG
_S_IFDIR = stat.S_IFDIR
_S_IFLNK = stat.S_IFLNK


class DirectoryError(Exception):
    """A directory that cannot be listed: its records must be left alone."""

    def __init__(self, rel: str, reason: str, code: int | None = None) -> None:
        super().__init__(f"{rel or '.'}: {reason}")
        self.rel = rel
        self.reason = reason
        self.errno = code

    @property
    def vanished(self) -> bool:
        """The directory no longer exists (removed, or replaced by a file or a symlink)."""
        return self.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


class NotALibraryFile(Exception):
    """A path that exists but is not a library file (hidden, ignored, a symlink, …)."""


def describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass
class Skipped:
    """Entries of a listing that are not library files, by reason."""

    hidden: int = 0
    ignored: int = 0
    symlinks: int = 0
    #: FIFOs, sockets, devices
    special: int = 0
    #: mount points (and bind-mounted files) of another file system
    other_device: int = 0
    #: listed, then gone before they could be examined
    vanished: int = 0

    def add(self, other: Skipped) -> None:
        self.hidden += other.hidden
        self.ignored += other.ignored
        self.symlinks += other.symlinks
        self.special += other.special
        self.other_device += other.other_device
        self.vanished += other.vanished

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class Listing:
    """One directory as the filter sees it."""

    rel: str
    device: int
    inode: int
    #: the library files: (name, size, mtime_ns)
    files: list[FileStat]
    #: names of the subdirectories that belong to the library
    dirs: list[str]
    #: every entry the directory holds (hidden and skipped ones included): 0 = empty
    entries: int
    #: (name, reason) of entries that could not be examined: unknown, neither here nor gone
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: names of entries on another file system (mount points): not followed, not gone
    mounts: list[str] = field(default_factory=list)
    skipped: Skipped = field(default_factory=Skipped)

    def path_of(self, name: str) -> str:
        return f"{self.rel}/{name}" if self.rel else name


class LibraryFilter:
    """The library files under one root (with its ignore globs, on its device)."""

    def __init__(
        self, root: str | os.PathLike[str], ignore: Sequence[str] = (), *, device: int | None = None
    ) -> None:
        self.root = os.fspath(root)
        self.ignore = IgnoreRules(ignore)
        #: the root's file system; None: the one the root is on now
        self.device = os.stat(self.root, follow_symlinks=False).st_dev if device is None else device

    def abspath(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    # -- one directory ------------------------------------------------------------------
    def list_dir(self, rel: str = "") -> Listing:
        """List the directory ``rel`` (relative to the root; "" = the root).

        Raises :class:`DirectoryError` when it cannot be opened or read, is a symlink now,
        or is on another file system.
        """
        try:
            fd = os.open(self.abspath(rel), _DIR_FLAGS)
        except OSError as exc:
            raise DirectoryError(rel, describe(exc), exc.errno) from None
        try:
            st = os.fstat(fd)
            if st.st_dev != self.device:
                raise DirectoryError(rel, "on another file system", errno.EXDEV)
            listing = Listing(rel, st.st_dev, st.st_ino, [], [], 0)
            try:
                self._read(fd, listing)
            except OSError as exc:  # reading the directory itself failed midway
                raise DirectoryError(rel, describe(exc), exc.errno) from None
            return listing
        finally:
            os.close(fd)

    def _read(self, fd: int, listing: Listing) -> None:
        rel, dev = listing.rel, self.device
        files, dirs, errors, mounts = listing.files, listing.dirs, listing.errors, listing.mounts
        ignore = self.ignore.matches if self.ignore else None
        entries = hidden = ignored = links = special = vanished = 0
        with os.scandir(fd) as it:
            for entry in it:
                entries += 1
                name = entry.name
                if name[0] == ".":
                    hidden += 1
                    continue
                if ignore is not None and ignore(rel, name):
                    ignored += 1
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    vanished += 1
                    continue
                except OSError as exc:
                    errors.append((name, describe(exc)))
                    continue
                fmt = st.st_mode & _S_IFMT
                if fmt == _S_IFREG:
                    if st.st_dev == dev:
                        files.append((name, st.st_size, st.st_mtime_ns))
                    else:
                        mounts.append(name)
                elif fmt == _S_IFDIR:
                    if st.st_dev == dev:
                        dirs.append(name)
                    else:
                        mounts.append(name)
                elif fmt == _S_IFLNK:
                    links += 1
                else:
                    special += 1
        listing.entries = entries
        skipped = listing.skipped
        skipped.hidden += hidden
        skipped.ignored += ignored
        skipped.symlinks += links
        skipped.special += special
        skipped.other_device += len(mounts)
        skipped.vanished += vanished

    # -- a whole tree -------------------------------------------------------------------
    def walk(self, rel: str = "") -> Iterator[Listing | DirectoryError]:
        """Every directory from ``rel`` down, breadth first: its Listing, or the
        DirectoryError that kept it from being listed (the walk goes on)."""
        queue: deque[str] = deque([rel])
        while queue:
            current = queue.popleft()
            try:
                listing = self.list_dir(current)
            except DirectoryError as exc:
                yield exc
                continue
            queue.extend(listing.path_of(name) for name in listing.dirs)
            yield listing

    def count(self) -> tuple[int, int, list[DirectoryError]]:
        """(library files, their bytes, directories that could not be listed)."""
        files = size = 0
        errors: list[DirectoryError] = []
        for item in self.walk():
            if isinstance(item, DirectoryError):
                errors.append(item)
            else:
                files += len(item.files)
                size += sum(f[1] for f in item.files)
        return files, size, errors

    def count_files(
        self, step: Callable[[], None] | None = None
    ) -> tuple[int, list[DirectoryError]]:
        """(library files, directories that could not be listed): :meth:`count`'s number
        without a ``stat`` per file.

        The same rules, decided from the directory entry's type (``d_type``: no system call
        where the file system fills it in, as ext4, xfs and btrfs do; an ``lstat`` where it
        does not). A ``stat`` is only needed to see another file system, and that can only
        be a mount point: the mount points under the root are read from
        ``/proc/self/mountinfo`` once and those entries alone are ``lstat``-ed; a directory
        mounted after that is recognised when it is opened. Without ``/proc`` every entry is
        ``lstat``-ed, as in :meth:`count`. ``step`` is called once per directory (cancel,
        time budget).
        """
        mounts = mount_points_under(self.root)
        if mounts is None:
            files = 0
            errors: list[DirectoryError] = []
            for item in self.walk():
                if step is not None:
                    step()
                if isinstance(item, DirectoryError):
                    errors.append(item)
                else:
                    files += len(item.files)
            return files, errors
        return self._count_by_type(mounts, step)

    def _count_by_type(
        self, mounts: frozenset[str], step: Callable[[], None] | None
    ) -> tuple[int, list[DirectoryError]]:
        ignore = self.ignore.matches if self.ignore else None
        dev = self.device
        files = 0
        errors: list[DirectoryError] = []
        queue: deque[str] = deque([""])
        while queue:
            rel = queue.popleft()
            if step is not None:
                step()
            try:
                fd = os.open(self.abspath(rel), _DIR_FLAGS)
            except OSError as exc:
                errors.append(DirectoryError(rel, describe(exc), exc.errno))
                continue
            try:
                if os.fstat(fd).st_dev != dev:
                    if not rel:  # the root itself: as list_dir says
                        errors.append(DirectoryError(rel, "on another file system", errno.EXDEV))
                    continue  # a folder mounted since mountinfo was read: a mount point
                prefix = f"{rel}/" if rel else ""
                with os.scandir(fd) as it:
                    for entry in it:
                        name = entry.name
                        if name[0] == ".":
                            continue
                        if ignore is not None and ignore(rel, name):
                            continue
                        try:
                            if (
                                mounts
                                and os.path.join(self.root, prefix + name) in mounts
                                and os.stat(name, dir_fd=fd, follow_symlinks=False).st_dev != dev
                            ):
                                continue
                            if entry.is_file(follow_symlinks=False):
                                files += 1
                            elif entry.is_dir(follow_symlinks=False):
                                queue.append(prefix + name)
                        except OSError:
                            continue  # vanished or unexaminable: not counted, as in count()
            except OSError as exc:
                errors.append(DirectoryError(rel, describe(exc), exc.errno))
            finally:
                os.close(fd)
        return files, errors

    # -- one file -----------------------------------------------------------------------
    def excluded(self, rel_path: str) -> str | None:
        """Why the path is not a library path by its name alone ("hidden", "ignored"), or None."""
        parts = rel_path.split("/")
        for i, part in enumerate(parts):
            if not part or part[0] == "." or part == "..":
                return "hidden"
            if self.ignore and self.ignore.matches("/".join(parts[:i]), part):
                return "ignored"
        return None

    def open_file(self, rel_path: str) -> tuple[int, os.stat_result]:
        """Open a library file for reading: (descriptor, its stat). The caller closes it.

        Every component is opened relative to the one before without following a symlink
        and checked to be on the root's file system, so the file read is the one the filter
        accepts. Raises :class:`NotALibraryFile`, or OSError (FileNotFoundError: it is gone).
        """
        why = self.excluded(rel_path)
        if why is not None:
            raise NotALibraryFile(f"{rel_path}: {why}")
        parts = rel_path.split("/")
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts[:-1]:
                _check_device(fd, self.device, rel_path)
                nxt = _open_at(part, _DIR_FLAGS, fd, rel_path)
                os.close(fd)
                fd = nxt
            _check_device(fd, self.device, rel_path)
            ffd = _open_at(parts[-1], _FILE_FLAGS, fd, rel_path)
        finally:
            os.close(fd)
        st = os.fstat(ffd)
        if not stat.S_ISREG(st.st_mode) or st.st_dev != self.device:
            os.close(ffd)
            raise NotALibraryFile(f"{rel_path}: not a regular file on the root's file system")
        return ffd, st


def mount_points_under(root: str, mountinfo: str = "/proc/self/mountinfo") -> frozenset[str] | None:
    """The mount points strictly below ``root`` (absolute paths), or None when the mount
    table cannot be read."""
    try:
        with open(mountinfo, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    prefix = root.rstrip("/") + "/"
    found: set[str] = set()
    for line in lines:
        fields = line.split(b" ")
        if len(fields) < 5:
            continue
        point = os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), fields[4]))
        if point.startswith(prefix):
            found.add(point)
    return frozenset(found)


_OCTAL = re.compile(rb"\\([0-7]{3})")


def _open_at(name: str, flags: int, dir_fd: int, rel_path: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            why = "reached through a symlink, or not a folder"
            raise NotALibraryFile(f"{rel_path}: {why}") from None
        raise


def _check_device(fd: int, device: int, rel_path: str) -> None:
    if os.fstat(fd).st_dev != device:
        raise NotALibraryFile(f"{rel_path}: on another file system")
