"""SQL of the database maintenance tasks (optimization and purge) for the SQLite store."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from ucore.stores.records import FINISHED_STATES, PURGE_KINDS, DbStats, PurgeBatch, to_ts
from ucore.stores.sqlite.db import Database

_FINISHED = "(" + ", ".join(f"'{s}'" for s in FINISHED_STATES) + ")"
#: Which rows each purge kind deletes: (table, condition on a time ?)
_PURGE = {
    "tasks": ("tasks", f"state IN {_FINISHED} AND finished_at < ?"),
    "history": ("task_runs", "finished_at IS NOT NULL AND finished_at < ?"),
    "journal": ("journal", "at < ?"),
}
_AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}
#: Free pages given back per incremental_vacuum transaction.
_RECLAIM_CHUNK = 2000

_SUMMARISE = """
INSERT INTO history_daily
    (day, task_name, runs, failures, total_duration, max_duration, bytes_freed)
SELECT date(started_at, 'unixepoch'), task_name, count(*),
       sum(outcome IN ('failed', 'timed_out')),
       sum(coalesce(duration, 0)), max(coalesce(duration, 0)),
       sum(CASE WHEN json_valid(result_summary)
                THEN coalesce(json_extract(result_summary, '$.bytes_freed'), 0) ELSE 0 END)
FROM task_runs WHERE id IN ({ids})
GROUP BY 1, 2
ON CONFLICT (day, task_name) DO UPDATE SET
    runs = runs + excluded.runs,
    failures = failures + excluded.failures,
    total_duration = total_duration + excluded.total_duration,
    max_duration = max(max_duration, excluded.max_duration),
    bytes_freed = bytes_freed + excluded.bytes_freed
"""


def _kind(kind: str) -> tuple[str, str]:
    if kind not in PURGE_KINDS:
        raise ValueError(f"unknown purge kind '{kind}' ({', '.join(PURGE_KINDS)})")
    return _PURGE[kind]


def purge_pick(kind: str) -> str:
    """The rowids of one purge batch: the oldest rows first (params: the cutoff, the limit).

    ``NOT INDEXED``: a batch walks the table in rowid order, which is time order, and stops
    at the limit. With a partial index on ``finished_at`` the planner chose that index and
    then sorted every old row by rowid for each batch: the purge of 200,000 runs took twice
    as long (docs/performance.md, "Maintenance").
    """
    table, where = _kind(kind)
    return f"SELECT rowid FROM {table} NOT INDEXED WHERE {where} ORDER BY rowid LIMIT ?"


class MaintenanceSQL:
    """Mixed into SQLiteStore."""

    db: Database
    path: Path

    async def db_stats(self) -> DbStats:
        def op(c: sqlite3.Connection) -> tuple[int, int, int, int]:
            return (
                int(c.execute("PRAGMA page_size").fetchone()[0]),
                int(c.execute("PRAGMA page_count").fetchone()[0]),
                int(c.execute("PRAGMA freelist_count").fetchone()[0]),
                int(c.execute("PRAGMA auto_vacuum").fetchone()[0]),
            )

        page_size, pages, free, auto = await self.db.read(op)
        wal = Path(f"{self.path}-wal")
        return DbStats(
            file_bytes=_size(self.path),
            wal_bytes=_size(wal),
            page_size=page_size,
            page_count=pages,
            freelist_count=free,
            auto_vacuum=_AUTO_VACUUM.get(auto, str(auto)),
        )

    async def optimize(self) -> None:
        await self.db.write_raw(lambda c: c.execute("PRAGMA optimize").fetchall())

    async def checkpoint(self) -> bool:
        row = await self.db.write_raw(
            lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        )
        return not (row and row[0])

    async def quick_check(self) -> list[str]:
        rows = await self.db.read(lambda c: c.execute("PRAGMA quick_check").fetchall())
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    async def reclaim_free_pages(self) -> int:
        def op(c: sqlite3.Connection) -> int:
            before = left = int(c.execute("PRAGMA freelist_count").fetchone()[0])
            while left > 0:
                # execute() steps a statement once, and each step of incremental_vacuum
                # frees one page; executescript() runs it to the end. In chunks, each its
                # own short transaction, so that other processes' writes get in between.
                c.executescript(f"PRAGMA incremental_vacuum({_RECLAIM_CHUNK})")
                now = int(c.execute("PRAGMA freelist_count").fetchone()[0])
                if now >= left:
                    break
                left = now
            return before - left

        return await self.db.write_raw(op)

    async def vacuum(self) -> None:
        def op(c: sqlite3.Connection) -> None:
            # a rebuild also switches an old database to incremental auto-vacuum
            c.execute("PRAGMA auto_vacuum = INCREMENTAL")
            c.execute("VACUUM")

        await self.db.write_raw(op)

    async def count_purgeable(self, kind: str, before: datetime) -> int:
        table, where = _kind(kind)
        row = await self.db.read(
            lambda c: c.execute(
                f"SELECT count(*) FROM {table} WHERE {where}", (to_ts(before),)
            ).fetchone()
        )
        return int(row[0])

    async def purge_batch(self, kind: str, before: datetime, limit: int) -> PurgeBatch:
        table, _ = _kind(kind)
        cutoff = to_ts(before)
        pick = purge_pick(kind)

        def op(c: sqlite3.Connection) -> PurgeBatch:
            summaries = 0
            if kind == "history":
                cur = c.execute(_SUMMARISE.format(ids=pick), (cutoff, limit))
                summaries = max(cur.rowcount, 0)
            cur = c.execute(f"DELETE FROM {table} WHERE rowid IN ({pick})", (cutoff, limit))
            return PurgeBatch(deleted=cur.rowcount, summaries=summaries)

        return await self.db.write(op)

    async def history_daily(self, since: datetime | None = None) -> list[dict[str, Any]]:
        day = "0000-00-00" if since is None else since.strftime("%Y-%m-%d")
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT day, task_name, runs, failures, total_duration, max_duration, "
                "bytes_freed FROM history_daily WHERE day >= ? ORDER BY day, task_name",
                (day,),
            ).fetchall()
        )
        keys = ("day", "task", "runs", "failures", "total_duration", "max_duration", "bytes_freed")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
