"""Bringing a SQLite database's schema up to date, safely.

* Under a lock: the migration runs in a ``BEGIN IMMEDIATE`` transaction, so two processes
  starting together migrate once (the second waits, then finds nothing to do).
* After a backup: a database that already holds data is copied (SQLite's online backup) to
  ``<name>.pre-v<N>-<UTC time>.bak`` beside it before the first migration is applied.
* Recorded: each applied migration is a row of ``schema_migrations``.
* A database whose schema is newer than this code is refused with a clear message.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from ucore.stores.base import StoreError
from ucore.stores.migrations import SQLITE, Migration

log = logging.getLogger("ucore.stores.sqlite")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""


def current_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def _has_user_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchone()
    return bool(row[0])


def backup(path: Path, version: int) -> Path:
    """Copy the database with SQLite's online backup (consistent while others read)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.pre-v{version + 1}-{stamp}.bak")
    # created 0600 before any data is copied into it, like the database itself
    os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    src = sqlite3.connect(str(path))
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    target.chmod(0o600)
    return target


def migrate(
    conn: sqlite3.Connection,
    path: Path,
    migrations: list[Migration] = SQLITE,
    *,
    target: int | None = None,
) -> list[int]:
    """Apply the missing migrations up to ``target`` (default: all); returns those applied."""
    latest = migrations[-1].version if target is None else target
    # Cheap check without the lock first: the usual start finds nothing to do.
    version = current_version(conn)
    if version > migrations[-1].version:
        raise _too_new(path, version, migrations[-1].version)
    if version >= latest:
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = current_version(conn)  # again, under the lock
        if version > migrations[-1].version:
            raise _too_new(path, version, migrations[-1].version)
        todo = [m for m in migrations if version < m.version <= latest]
        if todo and _has_user_tables(conn):
            try:
                saved = backup(path, version)
            except OSError as exc:
                raise StoreError(
                    f"cannot back up database {path} before migrating it: {exc.strerror or exc}"
                ) from None
            log.info("database backed up to %s before migrating", saved)
        conn.execute(_BOOKKEEPING)
        for m in todo:
            log.info("applying migration %d: %s", m.version, m.name)
            for statement in _statements(m.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, time.time()),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return [m.version for m in todo]


def _too_new(path: Path, version: int, known: int) -> StoreError:
    return StoreError(
        f"database {path} has schema version {version}, newer than this UCore knows "
        f"({known}): upgrade UCore to open it"
    )


def _statements(sql: str) -> list[str]:
    # Migrations hold plain DDL separated by ';' (no triggers with inner semicolons).
    return [s.strip() for s in sql.split(";") if s.strip()]
