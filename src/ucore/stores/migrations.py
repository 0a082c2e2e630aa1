"""Numbered schema migrations, one list per backend.

A migration is applied once, in order, inside the migrating transaction, and recorded in
``schema_migrations``. Never edit a released migration: add the next one. The test suite
checks that applying them one by one (with data in between) gives the same schema as a fresh
install.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


SQLITE: list[Migration] = [
    Migration(
        1,
        "tasks, run history and nodes",
        """
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            params TEXT NOT NULL,
            priority INTEGER NOT NULL,
            origin TEXT NOT NULL,
            state TEXT NOT NULL,
            unique_key TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            interruptions INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 1,
            submitted_at REAL NOT NULL,
            not_before REAL,
            started_at REAL,
            finished_at REAL,
            progress REAL,
            progress_message TEXT,
            result TEXT,
            error TEXT,
            traceback TEXT,
            node_id TEXT,
            host TEXT,
            pid INTEGER,
            lease_expires REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            run_id INTEGER
        );
        CREATE INDEX tasks_claim ON tasks (priority DESC, id) WHERE state = 'pending';
        CREATE UNIQUE INDEX tasks_unique_active ON tasks (unique_key)
            WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');
        CREATE INDEX tasks_running ON tasks (lease_expires) WHERE state = 'running';
        CREATE INDEX tasks_name ON tasks (name, id);
        CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

        CREATE TABLE task_runs (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL,
            task_name TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            node_id TEXT,
            host TEXT,
            pid INTEGER,
            started_at REAL NOT NULL,
            finished_at REAL,
            duration REAL,
            outcome TEXT,
            result_summary TEXT,
            error TEXT
        );
        CREATE INDEX task_runs_task ON task_runs (task_id, id);
        CREATE INDEX task_runs_name ON task_runs (task_name, id);
        CREATE INDEX task_runs_finished ON task_runs (finished_at);

        CREATE TABLE nodes (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            role TEXT NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            proc_started REAL,
            info TEXT NOT NULL DEFAULT '{}'
        );
        """,
    ),
]

SQLITE.append(
    Migration(
        2,
        "schedule state",
        """
        CREATE TABLE schedule_state (
            name TEXT PRIMARY KEY,
            nominal_next REAL,
            next_fire REAL,
            last_fire REAL,
            last_task_id INTEGER,
            last_skip_at REAL,
            last_skip_reason TEXT,
            definition_hash TEXT
        );
        CREATE INDEX tasks_unique_key ON tasks (unique_key, id) WHERE unique_key IS NOT NULL;
        """,
    )
)

SQLITE.append(
    Migration(
        3,
        "library: roots, directories, file records; the journal",
        """
        CREATE TABLE library_roots (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            ignore TEXT NOT NULL DEFAULT '[]',
            device INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            marker TEXT,
            fs_uuid TEXT,
            added_at REAL NOT NULL,
            last_scan_at REAL,
            last_scan_task INTEGER
        );

        CREATE TABLE library_dirs (
            id INTEGER PRIMARY KEY,
            root_id INTEGER NOT NULL,
            path TEXT NOT NULL,
            device INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            digest TEXT,
            indexed_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX library_dirs_path ON library_dirs (root_id, path);

        CREATE TABLE library_files (
            id INTEGER PRIMARY KEY,
            root_id INTEGER NOT NULL,
            dir_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            kind TEXT NOT NULL,
            thumb_state TEXT NOT NULL DEFAULT 'none',
            thumb_mtime_ns INTEGER,
            missing_since REAL,
            indexed_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX library_files_dir ON library_files (dir_id, name);
        CREATE INDEX library_files_missing ON library_files (missing_since)
            WHERE missing_since IS NOT NULL;

        CREATE TABLE journal (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            task_id INTEGER
        );
        CREATE INDEX journal_at ON journal (at);
        CREATE INDEX journal_kind ON journal (kind, at);
        """,
    )
)

SQLITE.append(
    Migration(
        4,
        "daily summaries of purged run history",
        """
        CREATE TABLE history_daily (
            day TEXT NOT NULL,
            task_name TEXT NOT NULL,
            runs INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            total_duration REAL NOT NULL,
            max_duration REAL NOT NULL,
            bytes_freed INTEGER NOT NULL,
            PRIMARY KEY (day, task_name)
        );
        CREATE INDEX tasks_purge ON tasks (finished_at)
            WHERE state IN ('completed', 'failed', 'cancelled', 'timed_out');
        """,
    )
)

SQLITE.append(
    Migration(
        5,
        "marked file records by directory (the orphan check reads only these rows)",
        """
        CREATE INDEX library_files_dir_missing ON library_files (dir_id)
            WHERE missing_since IS NOT NULL;
        """,
    )
)

SQLITE.append(
    Migration(
        6,
        "fewer index pages per task commit",
        """
        DROP INDEX tasks_finished;
        DROP INDEX task_runs_finished;
        CREATE INDEX task_runs_finished ON task_runs (finished_at)
            WHERE finished_at IS NOT NULL;
        """,
    )
)

SQLITE.append(
    Migration(
        7,
        "one index for the active tasks, none on finished_at (fewer index pages per task)",
        """
        DROP INDEX tasks_claim;
        DROP INDEX tasks_running;
        DROP INDEX tasks_purge;
        DROP INDEX task_runs_finished;
        CREATE INDEX tasks_active ON tasks (state, priority DESC, id)
            WHERE state = 'pending' OR state = 'running';
        """,
    )
)

LATEST_SQLITE = SQLITE[-1].version
