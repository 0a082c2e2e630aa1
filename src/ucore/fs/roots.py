"""Library roots on disk: checking a folder, the marker, volume identity, live status.

**Volume identity.** When a root is added we record its device id (``st_dev``) and put a
marker of ours inside it: ``.ucore-root``, holding a UUID (hidden, so never a library file).
The marker tells "this is the folder we indexed" from "an empty folder in its place" (an
unmounted drive's mount point, a deleted and re-created folder). When the root is read-only
the marker cannot be written; we then record the file system's UUID instead
(:mod:`ucore.fs.volumes`), and when that is unknown too, the device id alone.

**Status** of a root, checked live (one ``open`` and one small read):

* ``online``: the folder opens and its marker (or volume) is the recorded one;
* ``unavailable``: missing, unreadable, or the marker is absent and the folder is on another
  device than recorded (a drive that is not mounted);
* ``replaced``: the folder is there but its marker is missing or another one (on the same
  device), or a read-only root's file system has another UUID.

A scan, the verification and the orphan check touch only ``online`` roots; the records of
the others are left alone.
"""

from __future__ import annotations

import enum
import errno
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ucore.fs.errors import RootPathError
from ucore.fs.filter import describe
from ucore.fs.ignore import IgnoreError, check_globs
from ucore.fs.volumes import fs_uuid
from ucore.stores.records import NewRoot, RootRecord

MARKER_NAME = ".ucore-root"
_MARKER_MAX_BYTES = 4096
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: errors that mean "this root is read-only for us": fall back to the file system's UUID
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class RootStatus(enum.StrEnum):
    ONLINE = "online"
    UNAVAILABLE = "unavailable"
    REPLACED = "replaced"


@dataclass(frozen=True)
class RootCheck:
    status: RootStatus
    #: why it is not online (None when it is)
    reason: str | None = None
    #: the root folder's device and inode now (None when it cannot be opened)
    device: int | None = None
    inode: int | None = None

    @property
    def online(self) -> bool:
        return self.status is RootStatus.ONLINE


def normalize(path: str | os.PathLike[str]) -> str:
    """The absolute path with symlinks resolved (a root is stored this way)."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def read_marker(dir_fd: int) -> str | None:
    """The UUID in the marker of the open directory; None when there is no valid marker."""
    try:
        fd = os.open(
            MARKER_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    try:
        data = os.read(fd, _MARKER_MAX_BYTES)
    finally:
        os.close(fd)
    first = data.decode("ascii", "replace").strip().splitlines()
    try:
        return str(uuid.UUID(first[0].strip())) if first else None
    except ValueError:
        return None


def write_marker(path: str, value: str) -> None:
    """Write the marker atomically (temp file + rename); OSError when the root is read-only."""
    tmp = os.path.join(path, f"{MARKER_NAME}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{value}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, os.path.join(path, MARKER_NAME))
    except OSError:
        os.unlink(tmp)
        raise


def prepare_root(
    path: str | os.PathLike[str],
    ignore: Sequence[str],
    existing: Sequence[RootRecord],
    now: datetime,
) -> tuple[NewRoot | None, RootRecord | None]:
    """Check a folder for ``add_root`` and give its identity: (new root, None), or
    (None, the existing root) when it is already one with the same ignore globs.

    Raises :class:`RootPathError` for a folder that cannot be a root (missing, not a
    folder, unreadable, inside another root or holding one).
    """
    real = normalize(path)
    try:
        globs = check_globs(ignore)
    except IgnoreError as exc:
        raise RootPathError(str(exc)) from None
    for root in existing:
        if root.path == real:
            if root.ignore != globs:
                raise RootPathError(
                    f"{real} is already library root {root.id} with other ignore globs "
                    f"({', '.join(root.ignore) or 'none'}); remove it first"
                )
            return None, root
        if _inside(real, root.path):
            raise RootPathError(f"{real} is inside library root {root.id} ({root.path})")
        if _inside(root.path, real):
            raise RootPathError(f"{real} holds library root {root.id} ({root.path})")
    try:
        fd = os.open(real, _DIR_FLAGS)
    except OSError as exc:
        what = "not a folder" if exc.errno == errno.ENOTDIR else describe(exc)
        raise RootPathError(f"cannot use {real} as a library root: {what}") from None
    try:
        st = os.fstat(fd)
        os.listdir(fd)  # readable, not only openable
        try:
            marker: str | None = read_marker(fd)
        except OSError:
            marker = None
    except OSError as exc:
        raise RootPathError(f"cannot read {real}: {describe(exc)}") from None
    finally:
        os.close(fd)
    if marker is None or any(r.marker == marker for r in existing):
        marker = str(uuid.uuid4())  # a copied folder gets an identity of its own
        try:
            write_marker(real, marker)
        except OSError as exc:
            if exc.errno not in _READ_ONLY:
                raise RootPathError(f"cannot write the marker in {real}: {describe(exc)}") from None
            marker = None
    volume = fs_uuid(real, st.st_dev) if marker is None else None
    new = NewRoot(real, globs, st.st_dev, st.st_ino, marker, volume, now)
    return new, None


def check_root(root: RootRecord) -> RootCheck:
    """The live status of a root (see the module's doc)."""
    try:
        fd = os.open(root.path, _DIR_FLAGS)
    except OSError as exc:
        return RootCheck(RootStatus.UNAVAILABLE, f"cannot open {root.path}: {describe(exc)}")
    try:
        st = os.fstat(fd)
        marker = read_marker(fd)
    except OSError as exc:
        return RootCheck(RootStatus.UNAVAILABLE, f"cannot read {root.path}: {describe(exc)}")
    finally:
        os.close(fd)
    dev, ino = st.st_dev, st.st_ino
    if root.marker is not None:
        if marker == root.marker:
            return RootCheck(RootStatus.ONLINE, None, dev, ino)
        if marker is None and dev != root.device:
            return RootCheck(
                RootStatus.UNAVAILABLE,
                f"{root.path} is another, unmarked folder on another device: not mounted?",
                dev,
                ino,
            )
        why = "its marker is missing" if marker is None else "its marker belongs to another root"
        return RootCheck(RootStatus.REPLACED, f"{root.path}: {why}", dev, ino)
    if root.fs_uuid is not None:
        now_uuid = fs_uuid(root.path, dev)
        if now_uuid is not None:
            if now_uuid == root.fs_uuid:
                return RootCheck(RootStatus.ONLINE, None, dev, ino)
            return RootCheck(
                RootStatus.REPLACED, f"{root.path} is on another file system now", dev, ino
            )
    if dev == root.device:
        return RootCheck(RootStatus.ONLINE, None, dev, ino)
    return RootCheck(
        RootStatus.UNAVAILABLE, f"{root.path} is on another device than recorded", dev, ino
    )


def _inside(path: str, parent: str) -> bool:
    return path != parent and os.path.commonpath([path, parent]) == parent
