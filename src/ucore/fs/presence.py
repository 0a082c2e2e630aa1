"""Which recorded files are gone: the disk side of the orphan check (DESIGN.md §6.4).

The unit is one recorded directory. :meth:`PresenceProbe.look` lists it **once** (names
only: presence needs no ``stat``) and returns a :class:`DirLook`:

* ``listed``: the directory opened (without following a symlink), is on the root's file
  system, and has entries; a recorded name it does not hold is gone ("no such file" in a
  readable parent), any name it holds is present — whatever it is now (the next scan
  decides about a file that became a symlink or a folder);
* ``gone``: opening it says "no such file", and its nearest existing ancestor is a
  readable, non-empty directory on the root's file system: every record below is gone;
* ``unknown`` (with the reason): anything else. Unreadable (EACCES), I/O errors, stale
  handles, a symlink or a file in its place, another file system, a directory that is now
  **empty** where it had records (an unmounted mount point, a folder replaced by an empty
  one), a gone directory whose ancestor is one of those, or a directory reached through a
  symlink. Its records are neither present nor gone: they are left alone.

Ancestors are probed at most once per run (remembered by path), so a vanished subtree of
any depth costs one ``open`` per directory.
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass

from ucore.fs.filter import describe

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

LISTED = "listed"
GONE = "gone"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class DirLook:
    """What one recorded directory looks like now."""

    rel: str
    status: str
    #: the names it holds (``listed`` only)
    names: frozenset[str] | None = None
    #: why it is ``unknown``
    reason: str | None = None


class PresenceProbe:
    """Looks at the recorded directories of one root (on ``device``, its file system now)."""

    def __init__(self, root: str, device: int) -> None:
        self.root = root
        self.device = device
        #: path → LISTED (non-empty), GONE, or UNKNOWN, for the ancestors probed so far
        self._seen: dict[str, tuple[str, str | None]] = {}

    def abspath(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def look(self, rel: str, inode: int | None = None) -> DirLook:
        """List the directory ``rel`` once; ``inode`` is the one recorded for it."""
        path = self.abspath(rel)
        try:
            fd = os.open(path, _DIR_FLAGS)
        except FileNotFoundError:
            status, reason = self._gone_or_unknown(rel)
            self._seen[rel] = (status, reason)
            return DirLook(rel, status, reason=reason)
        except OSError as exc:
            return self._unknown(rel, describe(exc))
        try:
            st = os.fstat(fd)
            if st.st_dev != self.device:
                return self._unknown(rel, "on another file system than the root")
            if inode is not None and st.st_ino != inode and not self._direct(rel):
                return self._unknown(rel, "reached through a symlink")
            try:
                names = os.listdir(fd)
            except OSError as exc:
                return self._unknown(rel, describe(exc))
        finally:
            os.close(fd)
        if not names:
            return self._unknown(rel, "empty where it had records: an unmounted mount point?")
        self._seen[rel] = (LISTED, None)
        return DirLook(rel, LISTED, frozenset(names))

    def _unknown(self, rel: str, reason: str) -> DirLook:
        self._seen[rel] = (UNKNOWN, reason)
        return DirLook(rel, UNKNOWN, reason=reason)

    def _direct(self, rel: str) -> bool:
        """No component of the path is a symlink (it names the directory it says)."""
        path = self.abspath(rel)
        return os.path.realpath(path) == path

    def _gone_or_unknown(self, rel: str) -> tuple[str, str | None]:
        """``rel`` does not exist: gone if its nearest existing ancestor is a readable,
        non-empty directory on the root's file system; otherwise unknown."""
        if not rel:
            return UNKNOWN, "the root itself is missing"
        parent = posixpath.dirname(rel)
        known = self._seen.get(parent)
        if known is None:
            known = self._probe(parent)
            self._seen[parent] = known
        status, reason = known
        if status == UNKNOWN:
            return UNKNOWN, f"{parent or 'the root'}: {reason}"
        return GONE, None

    def _probe(self, rel: str) -> tuple[str, str | None]:
        """The state of an ancestor that had no records of its own (never listed)."""
        try:
            fd = os.open(self.abspath(rel), _DIR_FLAGS)
        except FileNotFoundError:
            return self._gone_or_unknown(rel)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return UNKNOWN, "a symlink or a file in place of a folder"
            return UNKNOWN, describe(exc)
        try:
            st = os.fstat(fd)
            if st.st_dev != self.device:
                return UNKNOWN, "on another file system than the root"
            if not self._direct(rel):
                return UNKNOWN, "reached through a symlink"
            try:
                with os.scandir(fd) as it:
                    empty = next(it, None) is None
            except OSError as exc:
                return UNKNOWN, describe(exc)
        finally:
            os.close(fd)
        if empty:
            return UNKNOWN, "empty where it had records: an unmounted mount point?"
        return LISTED, None
