"""SQLite errors as one clear line each (:class:`StoreError`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ucore.stores.base import StoreError, StoreLockedError


def is_lock_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def translate(exc: sqlite3.Error, path: Path) -> StoreError:
    """One clear line for a SQLite error."""
    text = str(exc)
    low = text.lower()
    if is_lock_error(exc):
        return StoreLockedError(f"database {path} is locked by another process ({text})")
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StoreError(f"database {path} is damaged or not a UCore database ({text})")
    if "unable to open" in low:
        return StoreError(f"cannot open database {path} ({text})")
    if "readonly" in low or "read-only" in low:
        return StoreError(f"database {path} is read-only ({text})")
    if "disk is full" in low or "database or disk is full" in low:
        return StoreError(f"no space left for database {path} ({text})")
    if "disk i/o error" in low:
        return StoreError(f"I/O error on database {path} ({text})")
    return StoreError(f"database {path}: {text}")
