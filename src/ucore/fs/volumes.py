"""The UUID of the file system a path is on: a read-only root's volume identity.

Looked up, in order, through the ``/dev/disk/by-uuid`` symlinks (the one whose block device
is the path's ``st_dev``) and ``findmnt``; None when neither knows (tmpfs, network and
virtual file systems have none, containers often lack both tools). Never raises.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess

log = logging.getLogger("ucore.fs")

BY_UUID = "/dev/disk/by-uuid"
FINDMNT_TIMEOUT_SECONDS = 3.0


def fs_uuid(path: str, device: int) -> str | None:
    """The UUID of the file system holding ``path`` (whose ``st_dev`` is ``device``)."""
    return _by_uuid(device) or _findmnt(path)


def _by_uuid(device: int) -> str | None:
    try:
        entries = list(os.scandir(BY_UUID))
    except OSError:
        return None
    for entry in entries:
        try:
            st = os.stat(entry.path)  # follows the link to the block device
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and st.st_rdev == device:
            return entry.name
    return None


def _findmnt(path: str) -> str | None:
    tool = shutil.which("findmnt")
    if tool is None:
        return None
    try:
        proc = subprocess.run(
            [tool, "--noheadings", "--output", "UUID", "--target", path],
            capture_output=True,
            text=True,
            timeout=FINDMNT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("findmnt failed for %s: %s", path, exc)
        return None
    value = proc.stdout.strip().splitlines()
    return value[0].strip() or None if proc.returncode == 0 and value else None
