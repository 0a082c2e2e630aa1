"""Errors of the library, each one clear line for a user (exit code 1 in the CLI)."""

from __future__ import annotations

from ucore.foundation.errors import UCoreError
from ucore.stores.base import MissingRootError


class LibraryError(UCoreError):
    """Something about the library that cannot be done as asked."""


class RootPathError(LibraryError):
    """A folder that cannot be a library root (missing, not a folder, unreadable, nested)."""


__all__ = ["LibraryError", "MissingRootError", "RootPathError"]
