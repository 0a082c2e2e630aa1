"""The SQL of the library (roots, directories, file records, thumbnails) and the journal.

A mixin of :class:`~ucore.stores.sqlite.store.SQLiteStore`: it implements the library part
of the :class:`~ucore.stores.base.Store` interface on the store's :class:`Database`.

* A scan writes through :meth:`apply_scan_batch`: one transaction per batch (about a
  thousand rows), new files upserted so that two scans of one root never conflict.
* Many deletes (a removed root, a vanished folder, old journal entries) go in short
  transactions of ``rowid IN (SELECT … LIMIT n)`` so that no write holds the lock long.
* Names pass through :func:`~ucore.stores.names.to_db` / ``from_db``.
* Indexes: a root's files are reached through its directories (``library_dirs (root_id,
  path)`` then ``library_files (dir_id, name)``), not through an index of their own on
  ``root_id``: that index cost a quarter of a first scan's insert time. Walks over a root's
  files in id order (thumbnail jobs, listings) read the table in rowid order from where the
  last page ended, so a whole pass stays one pass.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from ucore.stores.base import MissingRootError, PresenceRows
from ucore.stores.names import ESCAPE, abs_from_db, abs_to_db, from_db, to_db
from ucore.stores.records import (
    DirRecord,
    FileRecord,
    FileStates,
    JournalEntry,
    JournalFilter,
    NewJournalEntry,
    NewRoot,
    RootRecord,
    RootStats,
    ScanBatch,
    ScanBatchResult,
    ThumbnailJob,
    ThumbnailUpdate,
    ThumbState,
    at,
    from_ts,
    to_ts,
)
from ucore.stores.sqlite.codec import dumps
from ucore.stores.sqlite.db import Database

#: Ids per ``IN (…)`` list (far below SQLite's limit of bound parameters).
CHUNK = 500
#: New file records per INSERT statement. One multi-row ``INSERT … VALUES (…), (…)`` costs
#: 30 % less than ``executemany`` of single rows, and Python's driver releases the GIL once
#: per statement instead of once per row, which leaves the scan's walk alone meanwhile.
ROWS_PER_INSERT = 250

_ROOT_COLUMNS = (
    "id, path, ignore, device, inode, marker, fs_uuid, added_at, last_scan_at, last_scan_task"
)
_FILE_COLUMNS = (
    "f.id, f.root_id, f.dir_id, d.path, f.name, f.size, f.mtime_ns, f.kind, f.thumb_state, "
    "f.thumb_mtime_ns, f.missing_since, f.indexed_at"
)
_IMAGE = "image"


_FIRST = itemgetter(0)
_REST = itemgetter(1, 2)


def _chunks(items: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def join_path(dir_path: str, name: str) -> str:
    return f"{dir_path}/{name}" if dir_path else name


def _root(row: tuple[Any, ...]) -> RootRecord:
    return RootRecord(
        id=row[0],
        path=abs_from_db(row[1]),
        ignore=tuple(json.loads(row[2])),
        device=row[3],
        inode=row[4],
        marker=row[5],
        fs_uuid=row[6],
        added_at=at(row[7]),
        last_scan_at=from_ts(row[8]),
        last_scan_task=row[9],
    )


def _file(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(
        id=row[0],
        root_id=row[1],
        dir_id=row[2],
        rel_path=join_path(from_db(row[3]), from_db(row[4])),
        size=row[5],
        mtime_ns=row[6],
        kind=row[7],
        thumb_state=ThumbState(row[8]),
        thumb_mtime_ns=row[9],
        missing_since=from_ts(row[10]),
        indexed_at=at(row[11]),
    )


def _journal(row: tuple[Any, ...]) -> JournalEntry:
    return JournalEntry(
        id=row[0],
        at=at(row[1]),
        kind=row[2],
        message=row[3],
        data=json.loads(row[4]),
        task_id=row[5],
    )


class LibrarySQL:
    """The library and journal methods of the SQLite store."""

    db: Database

    # -- roots --------------------------------------------------------------------------
    async def insert_root(self, root: NewRoot) -> tuple[RootRecord, bool]:
        def op(c: sqlite3.Connection) -> tuple[RootRecord, bool]:
            # checked and inserted in one write transaction: two adds of one path make one root
            row = c.execute(
                f"SELECT {_ROOT_COLUMNS} FROM library_roots WHERE path = ?", (abs_to_db(root.path),)
            ).fetchone()
            if row is not None:
                return _root(row), False
            row = c.execute(
                "INSERT INTO library_roots (path, ignore, device, inode, marker, fs_uuid, "
                f"added_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_ROOT_COLUMNS}",
                (
                    abs_to_db(root.path),
                    dumps(list(root.ignore)),
                    root.device,
                    root.inode,
                    root.marker,
                    root.fs_uuid,
                    to_ts(root.added_at),
                ),
            ).fetchone()
            return _root(row), True

        return await self.db.write(op)

    async def get_root(self, root_id: int) -> RootRecord | None:
        row = await self.db.read(
            lambda c: c.execute(
                f"SELECT {_ROOT_COLUMNS} FROM library_roots WHERE id = ?", (root_id,)
            ).fetchone()
        )
        return _root(row) if row else None

    async def list_roots(self) -> list[RootRecord]:
        rows = await self.db.read(
            lambda c: c.execute(f"SELECT {_ROOT_COLUMNS} FROM library_roots ORDER BY id").fetchall()
        )
        return [_root(r) for r in rows]

    async def set_root_device(self, root_id: int, old_device: int, new_device: int) -> None:
        def op(c: sqlite3.Connection) -> None:
            c.execute("UPDATE library_roots SET device = ? WHERE id = ?", (new_device, root_id))
            c.execute(
                "UPDATE library_dirs SET device = ? WHERE root_id = ? AND device = ?",
                (new_device, root_id, old_device),
            )

        await self.db.write(op)

    async def set_root_scanned(self, root_id: int, at: datetime, task_id: int | None) -> None:
        await self.db.write(
            lambda c: c.execute(
                "UPDATE library_roots SET last_scan_at = ?, last_scan_task = ? WHERE id = ?",
                (to_ts(at), task_id, root_id),
            )
        )

    async def delete_root(self, root_id: int, *, batch: int = 5000) -> int:
        if await self.get_root(root_id) is None:
            raise MissingRootError(f"no library root with id {root_id}")
        removed = 0
        for sql in (_DELETE_ROOT_FILES, _DELETE_ROOT_DIRS):
            while True:
                count = await self.db.write(_delete_some(sql, root_id, batch))
                if sql is _DELETE_ROOT_FILES:
                    removed += count
                if count < batch:
                    break
        await self.db.write(
            lambda c: c.execute("DELETE FROM library_roots WHERE id = ?", (root_id,))
        )
        return removed

    async def root_stats(self) -> dict[int, RootStats]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT root_id, thumb_state, count(*), total(size) FROM library_files "
                "GROUP BY root_id, thumb_state"
            ).fetchall()
        )
        acc: dict[int, tuple[int, int, dict[str, int]]] = {}
        for root_id, state, count, size in rows:
            files, size_sum, thumbs = acc.get(root_id, (0, 0, {}))
            thumbs[state] = count
            acc[root_id] = (files + count, size_sum + int(size), thumbs)
        return {rid: RootStats(f, b, t) for rid, (f, b, t) in acc.items()}

    async def file_counts(self) -> dict[int, int]:
        # One statement (one snapshot); counted per directory over library_files_dir, so
        # no row is read and nothing is sorted but the roots (a GROUP BY over the files
        # sorts every row: 10x the time and tens of MiB at 1M records).
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT d.root_id, sum((SELECT count(*) FROM library_files f "
                "WHERE f.dir_id = d.id)) FROM library_dirs d GROUP BY d.root_id"
            ).fetchall()
        )
        return {root_id: int(count) for root_id, count in rows}

    # -- directories and file records ---------------------------------------------------
    async def list_dirs(self, root_id: int) -> list[DirRecord]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT id, root_id, path, device, inode, digest FROM library_dirs "
                "WHERE root_id = ?",
                (root_id,),
            ).fetchall()
        )
        return [DirRecord(r[0], r[1], from_db(r[2]), r[3], r[4], r[5]) for r in rows]

    async def file_states(self, dir_ids: list[int]) -> dict[int, FileStates]:
        def op(c: sqlite3.Connection) -> dict[int, FileStates]:
            out: dict[int, FileStates] = {}
            for part in _chunks(dir_ids):
                rows = c.execute(
                    "SELECT dir_id, name, id, size, "
                    "CASE WHEN missing_since IS NULL THEN mtime_ns ELSE -1 END "
                    f"FROM library_files WHERE dir_id IN ({_marks(len(part))})",
                    part,
                ).fetchall()
                for dir_id, stored, fid, size, mtime_ns in rows:
                    states = out.get(dir_id)
                    if states is None:
                        states = out[dir_id] = {}
                    name = from_db(stored) if stored[:1] == ESCAPE else stored
                    states[name] = (fid, size, mtime_ns)
            return out

        return await self.db.read(op)

    async def presence_rows(self, dir_ids: list[int]) -> dict[int, PresenceRows]:
        def op(c: sqlite3.Connection) -> dict[int, PresenceRows]:
            out: dict[int, PresenceRows] = {}
            for part in _chunks(dir_ids):
                marks = _marks(len(part))
                # over the covering (dir_id, name) index (the rowid is in it), grouped in C
                rows = c.execute(
                    f"SELECT dir_id, name, id FROM library_files WHERE dir_id IN ({marks}) "
                    "ORDER BY dir_id",
                    part,
                ).fetchall()
                for dir_id, group in groupby(rows, _FIRST):
                    out[dir_id] = (dict(map(_REST, group)), [])
                # names stored escaped (not valid Unicode) start with ESCAPE: a range of the index
                for dir_id, stored in c.execute(
                    f"SELECT dir_id, name FROM library_files WHERE dir_id IN ({marks}) "
                    "AND name >= ? AND name < ?",
                    (*part, ESCAPE, chr(ord(ESCAPE) + 1)),
                ):
                    entry = out.get(dir_id)
                    if entry is not None and stored in entry[0]:
                        entry[0][from_db(stored)] = entry[0].pop(stored)
                # the marked ones, over the partial index
                for dir_id, fid, stored, missing in c.execute(
                    "SELECT dir_id, id, name, missing_since FROM library_files "
                    f"WHERE missing_since IS NOT NULL AND dir_id IN ({marks})",
                    part,
                ):
                    entry = out.get(dir_id)
                    if entry is not None:
                        entry[1].append((fid, from_db(stored), at(missing)))
            return out

        return await self.db.read(op)

    async def apply_scan_batch(self, batch: ScanBatch) -> ScanBatchResult:
        now = to_ts(batch.at)

        def op(c: sqlite3.Connection) -> tuple[dict[str, int], int, list[tuple[int, str]]]:
            if (
                c.execute("SELECT 1 FROM library_roots WHERE id = ?", (batch.root_id,)).fetchone()
                is None
            ):
                raise MissingRootError(f"library root {batch.root_id} was removed")
            if batch.dirs:
                c.executemany(
                    "INSERT INTO library_dirs (root_id, path, device, inode, indexed_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (root_id, path) DO UPDATE SET "
                    "device = excluded.device, inode = excluded.inode",
                    [(batch.root_id, to_db(d.path), d.device, d.inode, now) for d in batch.dirs],
                )
            wanted = list({d.path for d in batch.dirs} | set(batch.new_files))
            dir_ids = _dir_ids(c, batch.root_id, wanted)
            rows: list[tuple[Any, ...]] = []
            for dir_path, files in batch.new_files.items():
                dir_id = dir_ids.get(dir_path)
                if dir_id is None:
                    raise ValueError(f"scan batch: directory {dir_path!r} is not recorded")
                for name, size, mtime_ns, kind in files:
                    thumb = "pending" if kind == _IMAGE else "none"
                    stored = name if name.isascii() else to_db(name)
                    rows.append((batch.root_id, dir_id, stored, size, mtime_ns, kind, thumb, now))
            for i in range(0, len(rows), ROWS_PER_INSERT):
                some = rows[i : i + ROWS_PER_INSERT]
                c.execute(_insert_files_sql(len(some)), [v for row in some for v in row])
            if batch.changed:
                c.executemany(
                    "UPDATE library_files SET size = ?1, mtime_ns = ?2, missing_since = NULL, "
                    "indexed_at = ?3, thumb_state = CASE WHEN kind != 'image' THEN 'none' "
                    "WHEN thumb_state = 'done' AND thumb_mtime_ns = ?2 THEN 'done' "
                    "ELSE 'pending' END WHERE id = ?4",
                    [(size, mtime_ns, now, fid) for fid, size, mtime_ns in batch.changed],
                )
            if batch.digests:
                c.executemany(
                    "UPDATE library_dirs SET digest = ? WHERE root_id = ? AND path = ?",
                    [(dig, batch.root_id, to_db(path)) for path, dig in batch.digests],
                )
            images: list[tuple[int, str]] = []
            removed = 0
            for part in _chunks(batch.gone_files):
                gone = c.execute(
                    f"DELETE FROM library_files WHERE id IN ({_marks(len(part))}) "
                    "RETURNING dir_id, name, kind",
                    part,
                ).fetchall()
                removed += len(gone)
                images += _deleted_images(gone)
            return dir_ids, removed, images

        dir_ids, removed, images = await self.db.write(op)
        removed_sub, more = await self._delete_dirs(batch.gone_dirs)
        return ScanBatchResult(removed + removed_sub, images + more, dir_ids)

    async def _delete_dirs(self, dir_ids: list[int], batch: int = 5000) -> tuple[int, list[Any]]:
        """Remove the records of directories (already known to be gone) in short writes."""
        removed = 0
        images: list[tuple[int, str]] = []
        for part in _chunks(dir_ids):
            while True:
                rows = await self.db.write(_delete_files_of_dirs(list(part), batch))
                removed += len(rows)
                images += _deleted_images(rows)
                if len(rows) < batch:
                    break
            await self.db.write(_delete_dir_rows(list(part)))
        return removed, images

    async def list_files(
        self, root_id: int, *, after_id: int = 0, limit: int = 1000
    ) -> list[FileRecord]:
        rows = await self.db.read(
            lambda c: c.execute(
                f"SELECT {_FILE_COLUMNS} FROM library_files f "
                "JOIN library_dirs d ON d.id = f.dir_id "
                "WHERE f.root_id = ? AND f.id > ? ORDER BY f.id LIMIT ?",
                (root_id, after_id, limit),
            ).fetchall()
        )
        return [_file(r) for r in rows]

    async def mark_missing(self, file_ids: list[int], at: datetime | None) -> int:
        stamp = to_ts(at)
        cond = "missing_since IS NULL" if stamp is not None else "missing_since IS NOT NULL"
        changed = 0
        for part in _chunks(file_ids):
            marks = _marks(len(part))

            def op(c: sqlite3.Connection, part: Sequence[int] = part, marks: str = marks) -> int:
                _clear_digests(c, part)
                return int(
                    c.execute(
                        f"UPDATE library_files SET missing_since = ? WHERE id IN ({marks}) "
                        f"AND {cond}",
                        (stamp, *part),
                    ).rowcount
                )

            changed += await self.db.write(op)
        return changed

    async def delete_files(self, file_ids: list[int]) -> list[tuple[int, str, str]]:
        removed: list[tuple[int, str, str]] = []
        for part in _chunks(file_ids):
            marks = _marks(len(part))

            def op(
                c: sqlite3.Connection, part: Sequence[int] = part, marks: str = marks
            ) -> list[tuple[int, str, str]]:
                _clear_digests(c, part)
                rows = c.execute(
                    f"DELETE FROM library_files WHERE id IN ({marks}) "
                    "RETURNING root_id, dir_id, name, kind",
                    part,
                ).fetchall()
                paths = dict(
                    c.execute(
                        f"SELECT id, path FROM library_dirs WHERE id IN "
                        f"({_marks(len({r[1] for r in rows}))})",
                        list({r[1] for r in rows}),
                    ).fetchall()
                    if rows
                    else []
                )
                return [
                    (root_id, join_path(from_db(paths.get(dir_id, "")), from_db(name)), kind)
                    for root_id, dir_id, name, kind in rows
                ]

            removed += await self.db.write(op)
        return removed

    # -- thumbnails ---------------------------------------------------------------------
    async def thumbnail_jobs(
        self, root_id: int, *, after_id: int = 0, limit: int = 256
    ) -> list[ThumbnailJob]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT f.id, d.path, f.name, f.mtime_ns FROM library_files f "
                "JOIN library_dirs d ON d.id = f.dir_id WHERE f.root_id = ? "
                "AND f.thumb_state = 'pending' AND f.id > ? ORDER BY f.id LIMIT ?",
                (root_id, after_id, limit),
            ).fetchall()
        )
        return [ThumbnailJob(r[0], join_path(from_db(r[1]), from_db(r[2])), r[3]) for r in rows]

    async def set_thumbnail_states(self, updates: list[ThumbnailUpdate]) -> None:
        if not updates:
            return
        await self.db.write(
            lambda c: c.executemany(
                "UPDATE library_files SET thumb_state = ?, thumb_mtime_ns = ? WHERE id = ?",
                [(u.state.value, u.source_mtime_ns, u.id) for u in updates],
            )
        )

    async def thumbnail_sources(
        self, *, after_id: int = 0, limit: int = 5000
    ) -> list[tuple[int, int, str]]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT f.id, f.root_id, d.path, f.name FROM library_files f "
                "JOIN library_dirs d ON d.id = f.dir_id WHERE f.thumb_state = 'done' "
                "AND f.id > ? ORDER BY f.id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        )
        return [(r[0], r[1], join_path(from_db(r[2]), from_db(r[3]))) for r in rows]

    async def evict_thumbnails(self, file_ids: list[int]) -> int:
        changed = 0
        for part in _chunks(file_ids):
            marks = _marks(len(part))

            def op(c: sqlite3.Connection, part: Sequence[int] = part, marks: str = marks) -> int:
                return int(
                    c.execute(
                        "UPDATE library_files SET thumb_state = 'evicted', thumb_mtime_ns = NULL "
                        f"WHERE id IN ({marks}) AND thumb_state = 'done'",
                        part,
                    ).rowcount
                )

            changed += await self.db.write(op)
        return changed

    # -- journal ------------------------------------------------------------------------
    async def add_journal(self, entry: NewJournalEntry) -> int:
        return await self.db.write(
            lambda c: int(
                c.execute(
                    "INSERT INTO journal (at, kind, message, data, task_id) VALUES (?, ?, ?, ?, ?)",
                    (
                        to_ts(entry.at),
                        entry.kind,
                        entry.message,
                        dumps(entry.data),
                        entry.task_id,
                    ),
                ).lastrowid
                or 0
            )
        )

    async def list_journal(self, flt: JournalFilter) -> list[JournalEntry]:
        where: list[str] = []
        args: list[Any] = []
        if flt.kind:
            # the kind itself or a dotted sub-kind; the range keeps the index usable
            where.append("(kind = ? OR (kind >= ? AND kind < ?))")
            args += [flt.kind, flt.kind + ".", flt.kind + "/"]  # "/" sorts right after "."
        if flt.since is not None:
            where.append("at >= ?")
            args.append(to_ts(flt.since))
        if flt.until is not None:
            where.append("at < ?")
            args.append(to_ts(flt.until))
        sql = "SELECT id, at, kind, message, data, task_id FROM journal"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        args.append(flt.limit)
        rows = await self.db.read(lambda c: c.execute(sql, args).fetchall())
        return [_journal(r) for r in rows]

    async def delete_journal_before(self, before: datetime, *, batch: int = 5000) -> int:
        sql = "DELETE FROM journal WHERE rowid IN (SELECT rowid FROM journal WHERE at < ? LIMIT ?)"
        removed = 0
        cutoff = to_ts(before)

        def op(c: sqlite3.Connection) -> int:
            return int(c.execute(sql, (cutoff, batch)).rowcount)

        while True:
            count = await self.db.write(op)
            removed += count
            if count < batch:
                return removed


@functools.lru_cache(maxsize=8)
def _insert_files_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT INTO library_files (root_id, dir_id, name, size, mtime_ns, kind, thumb_state, "
        f"indexed_at) VALUES {values} ON CONFLICT (dir_id, name) DO UPDATE SET "
        "size = excluded.size, mtime_ns = excluded.mtime_ns, kind = excluded.kind, "
        "missing_since = NULL, indexed_at = excluded.indexed_at, thumb_state = CASE "
        "WHEN excluded.kind != 'image' THEN 'none' "
        "WHEN thumb_state = 'done' AND thumb_mtime_ns = excluded.mtime_ns THEN 'done' "
        "ELSE 'pending' END"
    )


def _clear_digests(c: sqlite3.Connection, file_ids: Sequence[int]) -> None:
    """The directories of these records no longer match their digest."""
    c.execute(
        "UPDATE library_dirs SET digest = NULL WHERE id IN (SELECT dir_id FROM library_files "
        f"WHERE id IN ({_marks(len(file_ids))}))",
        list(file_ids),
    )


def _dir_ids(c: sqlite3.Connection, root_id: int, paths: list[str]) -> dict[str, int]:
    """The ids of these directories of the root, by path (one query per few hundred)."""
    out: dict[str, int] = {}
    for i in range(0, len(paths), CHUNK):
        part = paths[i : i + CHUNK]
        stored = {to_db(p): p for p in part}
        sql = "SELECT path, id FROM library_dirs WHERE root_id = ? AND path IN "
        rows = c.execute(f"{sql}({_marks(len(part))})", (root_id, *stored)).fetchall()
        out.update((stored[path], int(dir_id)) for path, dir_id in rows)
    return out


_DELETE_ROOT_FILES = (
    "DELETE FROM library_files WHERE rowid IN (SELECT f.rowid FROM library_dirs d "
    "JOIN library_files f ON f.dir_id = d.id WHERE d.root_id = ? LIMIT ?)"
)
_DELETE_ROOT_DIRS = (
    "DELETE FROM library_dirs WHERE rowid IN "
    "(SELECT rowid FROM library_dirs WHERE root_id = ? LIMIT ?)"
)


def _delete_some(sql: str, root_id: int, batch: int) -> Callable[[sqlite3.Connection], int]:
    return lambda c: int(c.execute(sql, (root_id, batch)).rowcount)


def _delete_files_of_dirs(
    dir_ids: list[int], batch: int
) -> Callable[[sqlite3.Connection], list[tuple[int, str, str]]]:
    sql = (
        "DELETE FROM library_files WHERE rowid IN (SELECT rowid FROM library_files "
        f"WHERE dir_id IN ({_marks(len(dir_ids))}) LIMIT ?) RETURNING dir_id, name, kind"
    )
    return lambda c: c.execute(sql, (*dir_ids, batch)).fetchall()


def _delete_dir_rows(dir_ids: list[int]) -> Callable[[sqlite3.Connection], None]:
    sql = f"DELETE FROM library_dirs WHERE id IN ({_marks(len(dir_ids))})"

    def op(c: sqlite3.Connection) -> None:
        c.execute(sql, dir_ids)

    return op


def _deleted_images(rows: list[tuple[int, str, str]]) -> list[tuple[int, str]]:
    return [(dir_id, from_db(name)) for dir_id, name, kind in rows if kind == _IMAGE]
