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

LATEST_SQLITE = SQLITE[-1].version
