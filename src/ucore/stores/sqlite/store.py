"""The SQLite store: tasks, run history and nodes on one database file.

Writes: the task queue's and the scheduler's small writes are quick writes, grouped and
committed from the event loop (:mod:`ucore.stores.sqlite.quick`); bulk writes go to the
writer thread (:mod:`ucore.stores.sqlite.db`).

Cross-process wake-up: SQLite has no NOTIFY. After each commit a one-byte datagram goes to
every other node's abstract Unix socket (:mod:`ucore.stores.sqlite.wakeup`): a CLI's submit
or cancel reaches a service in milliseconds, and an idle service need not poll. The
fallback for writers that send nothing is :meth:`change_token`, ``PRAGMA data_version``
read inline on the event-loop thread on the quick writes' connection (microseconds, no disk;
that connection's own commits never move it, the writer thread's are noted).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ucore.stores.base import Store
from ucore.stores.records import (
    Claimed,
    ClaimRequest,
    FireResult,
    NewTask,
    NodeRecord,
    Outcome,
    Priority,
    Recovered,
    RunRecord,
    ScheduleState,
    TaskFilter,
    TaskRecord,
    TaskState,
    at,
    from_ts,
    to_ts,
)
from ucore.stores.sqlite.codec import dumps
from ucore.stores.sqlite.db import Database
from ucore.stores.sqlite.library import LibrarySQL
from ucore.stores.sqlite.maintenance import MaintenanceSQL
from ucore.stores.sqlite.schema import current_version, migrate
from ucore.stores.sqlite.wakeup import PEERS_SECONDS, WakeChannel

_TASK_COLUMNS = (
    "id, name, params, priority, origin, state, unique_key, attempts, failures, interruptions, "
    "max_attempts, submitted_at, not_before, started_at, finished_at, progress, "
    "progress_message, result, error, traceback, node_id, host, pid, lease_expires, "
    "cancel_requested, run_id"
)
_RUN_COLUMNS = (
    "id, task_id, task_name, attempt, node_id, host, pid, started_at, finished_at, duration, "
    "outcome, result_summary, error"
)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


_STATES = {s.value: s for s in TaskState}
_PRIORITIES = {int(p): p for p in Priority}


def task_from_row(row: Sequence[Any]) -> TaskRecord:
    """A task record from a row of :data:`_TASK_COLUMNS` (the task queue's hot path: two
    per task, so the conversions are looked up rather than called)."""
    params = row[2]
    result = row[17]
    return TaskRecord.from_values(
        (
            row[0],
            row[1],
            {} if params == "{}" else json.loads(params),
            _PRIORITIES.get(row[3]) or Priority(row[3]),
            row[4],
            _STATES[row[5]],
            row[6],
            row[7],
            row[8],
            row[9],
            row[10],
            at(row[11]),
            from_ts(row[12]),
            from_ts(row[13]),
            from_ts(row[14]),
            row[15],
            row[16],
            None if result is None else json.loads(result),
            row[18],
            row[19],
            row[20],
            row[21],
            row[22],
            from_ts(row[23]),
            bool(row[24]),
            row[25],
        )
    )


def run_from_row(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=row[0],
        task_id=row[1],
        task_name=row[2],
        attempt=row[3],
        node_id=row[4],
        host=row[5],
        pid=row[6],
        started_at=at(row[7]),
        finished_at=from_ts(row[8]),
        duration=row[9],
        outcome=Outcome(row[10]) if row[10] else None,
        result_summary=_loads(row[11]),
        error=row[12],
    )


class SQLiteStore(LibrarySQL, MaintenanceSQL, Store):
    kind = "sqlite"
    listen_warmup_seconds = PEERS_SECONDS

    def __init__(self, path: Path, *, synchronous: str = "FULL", busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.db = Database(self.path, synchronous=synchronous, busy_timeout=busy_timeout)
        self.wake = WakeChannel(self.path)
        self.db.on_commit = self._wake_others

    @property
    def display_url(self) -> str:
        return f"sqlite://{self.path}"

    # -- lifecycle ----------------------------------------------------------------------
    async def open(self) -> None:
        await self.db.start()
        try:
            await self.db.read(lambda c: c.execute("SELECT count(*) FROM sqlite_master").fetchone())
            await self.db.write_raw(lambda c: migrate(c, self.path))
            await self.db.write_raw(lambda c: c.execute("PRAGMA optimize = 0x10002"))
        except BaseException:
            await self.db.stop()
            raise

    async def close(self) -> None:
        self.wake.close()
        await self.db.stop()

    def listen(self, node_id: str, callback: Callable[[], None]) -> bool:
        return self.wake.listen(node_id, callback)

    def _wake_others(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, after each commit: wake the other nodes."""
        if self.wake.peers_stale():
            self.wake.set_peers(r[0] for r in conn.execute("SELECT id FROM nodes"))
        self.wake.notify()

    async def schema_version(self) -> int:
        return await self.db.read(current_version)

    async def change_token(self) -> int:
        return self.db.foreign_changes()

    async def integrity_check(self) -> list[str]:
        rows = await self.db.read(lambda c: c.execute("PRAGMA integrity_check").fetchall())
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems

    # -- tasks --------------------------------------------------------------------------
    async def insert_task(self, task: NewTask) -> tuple[int, bool]:
        return await self.db.write_quick(lambda c: _insert_task(c, task))

    async def get_task(self, task_id: int) -> TaskRecord | None:
        row = await self.db.read(
            lambda c: c.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
        )
        return task_from_row(row) if row else None

    async def list_tasks(self, flt: TaskFilter) -> list[TaskRecord]:
        where: list[str] = []
        args: list[Any] = []
        if flt.states:
            # "state = ? OR ...", not "state IN (...)": only that form lets the planner use
            # the partial index of the active tasks (tasks_active) for pending and running
            where.append("(" + " OR ".join(["state = ?"] * len(flt.states)) + ")")
            args.extend(flt.states)
        if flt.name:
            where.append("name = ?")
            args.append(flt.name)
        if flt.ids:
            where.append(f"id IN ({','.join('?' * len(flt.ids))})")
            args.extend(flt.ids)
        if flt.unique_key is not None:
            where.append("unique_key = ?")
            args.append(flt.unique_key)
        sql = f"SELECT {_TASK_COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(flt.limit)
        rows = await self.db.read(lambda c: c.execute(sql, args).fetchall())
        return [task_from_row(r) for r in rows]

    def insert_and_claim(
        self, task: NewTask, request: ClaimRequest
    ) -> asyncio.Future[tuple[int, bool, TaskRecord | None]]:
        who = (request.node_id, request.host, request.pid)
        now_ts, until_ts = to_ts(request.now), to_ts(request.lease_until)

        def op(c: sqlite3.Connection) -> tuple[int, bool, TaskRecord | None]:
            task_id, created, params = _insert_task_text(c, task)
            not_before = to_ts(task.not_before)
            if not created or (not_before is not None and not_before > (now_ts or 0.0)):
                return task_id, created, None
            run = _open_run(c, (task_id, task.name, 1), who, now_ts, until_ts)
            row = (
                task_id,
                task.name,
                params,
                int(task.priority),
                task.origin,
                "pending",
                task.unique_key,
                0,
                0,
                0,
                task.max_attempts,
                to_ts(task.submitted_at),
                not_before,
                *_UNSET_ROW_TAIL,
            )
            return task_id, True, _claimed_from(row, 1, (now_ts, *who, until_ts, run))

        return self.db.write_quick(op)

    async def claim_tasks(self, request: ClaimRequest) -> Claimed:
        req = request
        now_ts, until_ts = to_ts(req.now), to_ts(req.lease_until)
        if req.names is not None and not req.names:
            return Claimed([])
        pick, names = _claim_sql(req.task_id is not None, req.names)
        args: list[Any] = [now_ts, int(req.min_priority)]
        if req.task_id is not None:
            args.append(req.task_id)
        args.extend(names)
        args.append(req.limit)
        who = (req.node_id, req.host, req.pid)

        def op(c: sqlite3.Connection) -> Claimed:
            records = []
            # plain statements: a RETURNING clause costs as much again as its statement
            for row in c.execute(pick, args).fetchall():
                tid, attempt = row[0], row[7] + 1
                run = _open_run(c, (tid, row[1], attempt), who, now_ts, until_ts)
                records.append(_claimed_from(row, attempt, (now_ts, *who, until_ts, run)))
            if len(records) >= req.limit:
                return Claimed(records)
            row = c.execute(
                "SELECT min(not_before) FROM tasks WHERE state = 'pending' AND not_before > ?",
                (now_ts,),
            ).fetchone()
            return Claimed(records, from_ts(row[0]) if row and row[0] is not None else None)

        return await self.db.write_quick(op)

    async def renew_leases(self, node_id: str, task_ids: list[int], until: datetime) -> set[int]:
        if not task_ids:
            return set()
        marks = ",".join("?" * len(task_ids))

        def op(c: sqlite3.Connection) -> set[int]:
            rows = c.execute(
                f"UPDATE tasks SET lease_expires = ? WHERE id IN ({marks}) AND state = 'running' "
                "AND node_id = ? RETURNING id",
                (to_ts(until), *task_ids, node_id),
            ).fetchall()
            return {int(r[0]) for r in rows}

        return await self.db.write_quick(op)

    async def set_progress(
        self, task_id: int, run_id: int, fraction: float | None, message: str | None
    ) -> None:
        await self.db.write_quick(
            lambda c: c.execute(
                "UPDATE tasks SET progress = ?, progress_message = ? "
                "WHERE id = ? AND run_id = ? AND state = 'running'",
                (fraction, message, task_id, run_id),
            )
        )

    async def finish_run(
        self,
        task_id: int,
        run_id: int,
        *,
        outcome: Outcome,
        now: datetime,
        next_state: TaskState,
        not_before: datetime | None = None,
        result: Any = None,
        error: str | None = None,
        traceback: str | None = None,
        add_failure: bool = False,
        add_interruption: bool = False,
        claimed: TaskRecord | None = None,
        progress: tuple[float | None, str | None] | None = None,
    ) -> TaskRecord | None:
        now_ts = to_ts(now)
        result_json = None if result is None else dumps(result)
        if claimed is not None and (claimed.id != task_id or claimed.run_id != run_id):
            claimed = None
        # with the claimed record and the progress nothing need be read back
        base = claimed if progress is not None else None

        def op(c: sqlite3.Connection) -> TaskRecord | None:
            row = _finish(
                c,
                task_id,
                run_id,
                outcome=outcome,  # StrEnum members: SQLite binds them as their text
                now_ts=now_ts,
                next_state=next_state,
                not_before=to_ts(not_before),
                result_json=result_json,
                error=error,
                traceback=traceback,
                add_failure=add_failure,
                add_interruption=add_interruption,
                progress=progress,
                read_back=base is None,
            )
            if row is None:
                return None
            if base is None:
                return task_from_row(row)
            return _finished_from(base, row, result_json, add_failure, add_interruption)

        return await self.db.write_quick(op)

    async def request_cancel(self, task_id: int, now: datetime) -> TaskRecord | None:
        now_ts = to_ts(now)

        def op(c: sqlite3.Connection) -> TaskRecord | None:
            c.execute(
                "UPDATE tasks SET state = 'cancelled', finished_at = ?, "
                "error = 'cancelled by user' WHERE id = ? AND state = 'pending'",
                (now_ts, task_id),
            )
            c.execute(
                "UPDATE tasks SET cancel_requested = 1 WHERE id = ? AND state = 'running'",
                (task_id,),
            )
            row = c.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
            return task_from_row(row) if row else None

        return await self.db.write_quick(op)

    async def cancel_requests(self, task_ids: list[int]) -> set[int]:
        if not task_ids:
            return set()
        marks = ",".join("?" * len(task_ids))
        rows = await self.db.read(
            lambda c: c.execute(
                f"SELECT id FROM tasks WHERE id IN ({marks}) AND cancel_requested = 1", task_ids
            ).fetchall()
        )
        return {int(r[0]) for r in rows}

    async def recover_expired(self, now: datetime, max_interruptions: int) -> list[Recovered]:
        now_ts = to_ts(now)

        def op(c: sqlite3.Connection) -> list[Recovered]:
            rows = c.execute(
                "SELECT id, run_id FROM tasks WHERE state = 'running' AND lease_expires < ?",
                (now_ts,),
            ).fetchall()
            return _interrupt(
                c, rows, now_ts, max_interruptions, "lease expired: its process stopped renewing it"
            )

        return await self.db.write(op)

    async def recover_nodes(
        self, node_ids: list[str], now: datetime, max_interruptions: int
    ) -> list[Recovered]:
        if not node_ids:
            return []
        now_ts = to_ts(now)
        marks = ",".join("?" * len(node_ids))

        def op(c: sqlite3.Connection) -> list[Recovered]:
            rows = c.execute(
                f"SELECT id, run_id FROM tasks WHERE state = 'running' AND node_id IN ({marks})",
                node_ids,
            ).fetchall()
            return _interrupt(c, rows, now_ts, max_interruptions, "its process no longer exists")

        return await self.db.write(op)

    async def promote_task(self, task_id: int, priority: Priority) -> bool:
        def op(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE tasks SET priority = max(priority, ?) WHERE id = ? AND state = 'pending'",
                (int(priority), task_id),
            )
            return cur.rowcount > 0

        return await self.db.write_quick(op)

    async def next_due(self, now: datetime) -> datetime | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT min(not_before) FROM tasks WHERE state = 'pending' AND not_before > ?",
                (to_ts(now),),
            ).fetchone()
        )
        return from_ts(row[0]) if row and row[0] is not None else None

    async def list_runs(
        self, *, task_id: int | None = None, name: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        if task_id is not None:
            where.append("task_id = ?")
            args.append(task_id)
        if name is not None:
            where.append("task_name = ?")
            args.append(name)
        sql = f"SELECT {_RUN_COLUMNS} FROM task_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = await self.db.read(lambda c: c.execute(sql, args).fetchall())
        return [run_from_row(r) for r in rows]

    # -- nodes --------------------------------------------------------------------------
    async def register_node(self, node: NodeRecord) -> None:
        await self.db.write_quick(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO nodes (id, host, pid, role, started_at, heartbeat_at, "
                "proc_started, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    node.id,
                    node.host,
                    node.pid,
                    node.role,
                    to_ts(node.started_at),
                    to_ts(node.heartbeat_at),
                    node.proc_started,
                    dumps(node.info),
                ),
            )
        )

    async def heartbeat(self, node_id: str, now: datetime) -> None:
        def op(c: sqlite3.Connection) -> int:
            sql = "UPDATE nodes SET heartbeat_at = ? WHERE id = ?"
            return int(c.execute(sql, (to_ts(now), node_id)).rowcount)

        # An idle service's only regular write: a quick one (on the loop's thread when the
        # lock is free), so the writer thread stays asleep (docs/performance.md, idle)
        await self.db.write_quick(op)

    async def remove_nodes(self, node_ids: list[str]) -> None:
        if not node_ids:
            return
        marks = ",".join("?" * len(node_ids))
        await self.db.write_quick(
            lambda c: c.execute(f"DELETE FROM nodes WHERE id IN ({marks})", node_ids)
        )

    async def list_nodes(self) -> list[NodeRecord]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT id, host, pid, role, started_at, heartbeat_at, proc_started, info "
                "FROM nodes ORDER BY started_at"
            ).fetchall()
        )
        return [
            NodeRecord(
                id=r[0],
                host=r[1],
                pid=r[2],
                role=r[3],
                started_at=at(r[4]),
                heartbeat_at=at(r[5]),
                proc_started=r[6],
                info=json.loads(r[7]),
            )
            for r in rows
        ]

    # -- schedule state -----------------------------------------------------------------
    async def schedule_states(self) -> dict[str, ScheduleState]:
        rows = await self.db.read(
            lambda c: c.execute(f"SELECT {_STATE_COLUMNS} FROM schedule_state").fetchall()
        )
        return {r[0]: _state_from_row(r) for r in rows}

    async def init_schedule(
        self,
        name: str,
        *,
        nominal_next: datetime | None,
        next_fire: datetime | None,
        definition_hash: str,
    ) -> ScheduleState:
        def op(c: sqlite3.Connection) -> ScheduleState:
            c.execute(
                "INSERT OR IGNORE INTO schedule_state (name, nominal_next, next_fire, "
                "definition_hash) VALUES (?, ?, ?, ?)",
                (name, to_ts(nominal_next), to_ts(next_fire), definition_hash),
            )
            row = c.execute(
                f"SELECT {_STATE_COLUMNS} FROM schedule_state WHERE name = ?", (name,)
            ).fetchone()
            return _state_from_row(row)

        return await self.db.write_quick(op)

    async def fire_schedule(
        self,
        name: str,
        *,
        expected_next: datetime | None,
        nominal_next: datetime | None,
        next_fire: datetime | None,
        now: datetime,
        task: NewTask,
    ) -> FireResult:
        expected, now_ts = to_ts(expected_next), to_ts(now)

        def op(c: sqlite3.Connection) -> FireResult:
            # One statement reads both the stored due time and a run still active: every
            # statement costs a GIL hand-over, and the fire is on the timing-critical path.
            row = c.execute(
                "SELECT next_fire, (SELECT id FROM tasks WHERE unique_key = ?2 "
                "AND state IN ('pending', 'running')) FROM schedule_state WHERE name = ?1",
                (name, task.unique_key),
            ).fetchone()
            if row is None or not _same_time(row[0], expected):
                return FireResult(False, reason="taken")
            running = row[1]
            if running is not None:
                reason = f"previous run still pending or running: task {running}"
                c.execute(
                    "UPDATE schedule_state SET nominal_next = ?, next_fire = ?, "
                    "last_skip_at = ?, last_skip_reason = ? WHERE name = ?",
                    (to_ts(nominal_next), to_ts(next_fire), now_ts, reason, name),
                )
                return FireResult(False, task_id=running, reason=reason)
            task_id, _ = _insert_task(c, task, checked=True)
            c.execute(
                "UPDATE schedule_state SET nominal_next = ?, next_fire = ?, last_fire = ?, "
                "last_task_id = ? WHERE name = ?",
                (to_ts(nominal_next), to_ts(next_fire), now_ts, task_id, name),
            )
            return FireResult(True, task_id=task_id)

        # the decision at a due time: a quick write, no hand-over to the writer thread
        # behind busy handler threads (timing matters)
        return await self.db.write_quick(op)

    async def advance_schedule(
        self,
        name: str,
        *,
        expected_next: datetime | None,
        nominal_next: datetime | None,
        next_fire: datetime | None,
        skip_at: datetime | None = None,
        skip_reason: str | None = None,
    ) -> bool:
        expected = to_ts(expected_next)

        def op(c: sqlite3.Connection) -> bool:
            row = c.execute(
                "SELECT next_fire FROM schedule_state WHERE name = ?", (name,)
            ).fetchone()
            if row is None or not _same_time(row[0], expected):
                return False
            c.execute(
                "UPDATE schedule_state SET nominal_next = ?, next_fire = ?, "
                "last_skip_at = coalesce(?, last_skip_at), "
                "last_skip_reason = coalesce(?, last_skip_reason) WHERE name = ?",
                (to_ts(nominal_next), to_ts(next_fire), to_ts(skip_at), skip_reason, name),
            )
            return True

        return await self.db.write_quick(op)

    async def reschedule(
        self,
        name: str,
        *,
        nominal_next: datetime | None,
        next_fire: datetime | None,
        definition_hash: str,
    ) -> None:
        await self.db.write_quick(
            lambda c: c.execute(
                "UPDATE schedule_state SET nominal_next = ?, next_fire = ?, definition_hash = ? "
                "WHERE name = ?",
                (to_ts(nominal_next), to_ts(next_fire), definition_hash, name),
            )
        )

    async def record_schedule_skip(self, name: str, at: datetime, reason: str) -> None:
        await self.db.write_quick(
            lambda c: c.execute(
                "UPDATE schedule_state SET last_skip_at = ?, last_skip_reason = ? WHERE name = ?",
                (to_ts(at), reason, name),
            )
        )


@functools.lru_cache(maxsize=64)
def _claim_sql(by_id: bool, names: frozenset[str] | None) -> tuple[str, tuple[str, ...]]:
    """The claim's pick: the rows of the tasks to take (:data:`_TASK_COLUMNS`; params: now,
    min priority, [id,] names, limit), and its name arguments (the same for every claim of a
    pool)."""
    cond = ["state = 'pending'", "(not_before IS NULL OR not_before <= ?)", "priority >= ?"]
    if by_id:
        cond.append("id = ?")
    ordered = tuple(sorted(names)) if names is not None else ()
    if names is not None:
        # "+name": never pick the name index for this query; the partial tasks_active
        # index (pending and running only) must drive it, or a claim reads the whole history
        cond.append(f"+name IN ({','.join('?' * len(ordered))})")
    sql = (
        f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {' AND '.join(cond)} "
        "ORDER BY priority DESC, id LIMIT ?"
    )
    return sql, ordered


def _claimed_from(row: tuple[Any, ...], attempt: int, claim: tuple[Any, ...]) -> TaskRecord:
    """The record of a task just claimed: its picked row with what the claim set (``claim``:
    now, node id, host, pid, lease end, run id)."""
    values = list(row)
    values[5] = "running"
    values[7] = attempt
    values[13], values[20], values[21], values[22], values[23], values[25] = claim
    values[14] = None  # finished_at
    values[15] = values[16] = None  # progress
    values[24] = 0  # cancel_requested
    return task_from_row(values)


def _active_with_key(c: sqlite3.Connection, key: str) -> int | None:
    row = c.execute(
        "SELECT id FROM tasks WHERE unique_key = ? AND state IN ('pending', 'running')", (key,)
    ).fetchone()
    return int(row[0]) if row else None


def _insert_task(
    c: sqlite3.Connection, task: NewTask, *, checked: bool = False
) -> tuple[int, bool]:
    """Insert a task unless an active one has its unique key (``checked``: the caller
    looked in this transaction already)."""
    task_id, created, _ = _insert_task_text(c, task, checked=checked)
    return task_id, created


def _insert_task_text(
    c: sqlite3.Connection, task: NewTask, *, checked: bool = False
) -> tuple[int, bool, str]:
    """:func:`_insert_task`, and the parameters' text as stored."""
    params = dumps(task.params) if task.params else "{}"
    if task.unique_key is not None and not checked:
        existing = _active_with_key(c, task.unique_key)
        if existing is not None:
            return existing, False, params
    cur = c.execute(
        "INSERT INTO tasks (name, params, priority, origin, state, unique_key, "
        "max_attempts, submitted_at, not_before) "
        "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
        (
            task.name,
            params,
            int(task.priority),
            task.origin,
            task.unique_key,
            task.max_attempts,
            to_ts(task.submitted_at),
            to_ts(task.not_before),
        ),
    )
    return int(cur.lastrowid or 0), True, params


def _open_run(
    c: sqlite3.Connection,
    task: tuple[int, str, int],
    who: tuple[str, str, int],
    now_ts: float | None,
    until_ts: float | None,
) -> int:
    """Claim a pending task (id, name, attempt): open the attempt's history row and mark the
    task running under ``who``'s lease; the run's id."""
    task_id, name, attempt = task
    run = c.execute(
        "INSERT INTO task_runs (task_id, task_name, attempt, node_id, host, pid, started_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (task_id, name, attempt, *who, now_ts),
    ).lastrowid
    c.execute(
        "UPDATE tasks SET state = 'running', attempts = ?, started_at = ?, "
        "finished_at = NULL, node_id = ?, host = ?, pid = ?, lease_expires = ?, "
        "progress = NULL, progress_message = NULL, cancel_requested = 0, "
        "run_id = ? WHERE id = ?",
        (attempt, now_ts, *who, until_ts, run, task_id),
    )
    return int(run or 0)


#: a pending task's row after its submit-time values (started_at .. run_id): all unset
_UNSET_ROW_TAIL: tuple[Any, ...] = (None,) * 11 + (0, None)


_STATE_COLUMNS = (
    "name, nominal_next, next_fire, last_fire, last_task_id, last_skip_at, last_skip_reason, "
    "definition_hash"
)


def _state_from_row(r: tuple[Any, ...]) -> ScheduleState:
    return ScheduleState(
        name=r[0],
        nominal_next=from_ts(r[1]),
        next_fire=from_ts(r[2]),
        last_fire=from_ts(r[3]),
        last_task_id=r[4],
        last_skip_at=from_ts(r[5]),
        last_skip_reason=r[6],
        definition_hash=r[7],
    )


def _same_time(stored: float | None, expected: float | None) -> bool:
    if stored is None or expected is None:
        return stored is None and expected is None
    return abs(stored - expected) < 1e-6


def _finish(
    c: sqlite3.Connection,
    task_id: int,
    run_id: int,
    *,
    outcome: str,
    now_ts: float | None,
    next_state: str,
    not_before: float | None,
    result_json: str | None,
    error: str | None,
    traceback: str | None,
    add_failure: bool,
    add_interruption: bool,
    progress: tuple[float | None, str | None] | None = None,
    read_back: bool = True,
) -> tuple[Any, ...] | None:
    """Close the attempt and move the task on (None: not running under that attempt any
    more). ``read_back``: the task's row as it is now; otherwise what the task's UPDATE set
    (:data:`_FINISH_WRITTEN`), read nothing back (a ``RETURNING`` costs as much again as
    its statement).

    ``progress``: the attempt's last report, stored with the outcome (None: the stored one
    stays). A re-queued task's progress is cleared either way.
    """
    task_error = error
    if next_state == "pending":
        # a user's cancel wins over a retry or a re-queue after an interruption
        asked = c.execute(
            "SELECT cancel_requested FROM tasks WHERE id = ? AND run_id = ?", (task_id, run_id)
        ).fetchone()
        if asked and asked[0]:
            next_state, not_before, outcome = "cancelled", None, "cancelled"
            task_error = error = "cancelled by user"
    finished = next_state not in ("pending", "running")
    args: list[Any] = [
        next_state,
        now_ts if finished else None,
        not_before,
        result_json,
        task_error,
        traceback,
        int(add_failure),
        int(add_interruption),
    ]
    if progress is None:  # kept, or cleared for a re-queued task
        args += (next_state, next_state)
    else:  # given, or cleared for a re-queued task
        args += (None, None) if next_state == "pending" else progress
    args += (task_id, run_id)
    cur = c.execute(_finish_sql(progress is not None, read_back), args)
    row: tuple[Any, ...] | None
    if read_back:
        row = cur.fetchone()
    else:
        row = None if cur.rowcount != 1 else tuple(args[i] for i in _FINISH_WRITTEN)
    if row is None:
        return None
    c.execute(
        "UPDATE task_runs SET finished_at = ?, outcome = ?, result_summary = ?, error = ?, "
        "duration = CASE WHEN ? IS NULL THEN NULL ELSE max(0.0, ? - started_at) END "
        "WHERE id = ?",
        (now_ts, outcome, result_json, error, now_ts, now_ts, run_id),
    )
    return row


@functools.lru_cache(maxsize=8)
def _finish_sql(set_progress: bool, read_back: bool) -> str:
    """The finish's UPDATE: progress kept or set (cleared for a re-queued task either way),
    and whether it returns the row."""
    progress = (
        "progress = ?, progress_message = ?"
        if set_progress
        else "progress = CASE WHEN ? = 'pending' THEN NULL ELSE progress END, "
        "progress_message = CASE WHEN ? = 'pending' THEN NULL ELSE progress_message END"
    )
    sql = (
        "UPDATE tasks SET state = ?, finished_at = ?, not_before = ?, result = ?, error = ?, "
        "traceback = ?, failures = failures + ?, interruptions = interruptions + ?, "
        f"lease_expires = NULL, cancel_requested = 0, run_id = NULL, {progress} "
        "WHERE id = ? AND run_id = ? AND state = 'running'"
    )
    return f"{sql} RETURNING {_TASK_COLUMNS}" if read_back else sql


#: Where the finish's arguments hold what it set (when not read back): state, finished_at,
#: not_before, error, traceback, progress, progress_message.
_FINISH_WRITTEN = (0, 1, 2, 4, 5, 8, 9)


def _finished_from(
    claimed: TaskRecord,
    written: tuple[Any, ...],
    result_json: str | None,
    add_failure: bool,
    add_interruption: bool,
) -> TaskRecord:
    """The finished task's record: the claimed one with what the finish set
    (:data:`_FINISH_WRITTEN`), its counts moved on, no lease, no attempt, the result as
    stored. Only a finish of this attempt changes those columns while it holds the task (a
    promote touches pending tasks only)."""
    return claimed.changed(
        state=_STATES[written[0]],
        finished_at=from_ts(written[1]),
        not_before=from_ts(written[2]),
        error=written[3],
        traceback=written[4],
        progress=written[5],
        progress_message=written[6],
        failures=claimed.failures + int(add_failure),
        interruptions=claimed.interruptions + int(add_interruption),
        result=None if result_json is None else json.loads(result_json),
        lease_expires=None,
        cancel_requested=False,
        run_id=None,
    )


def _interrupt(
    c: sqlite3.Connection,
    rows: list[tuple[int, int | None]],
    now_ts: float | None,
    max_interruptions: int,
    why: str,
) -> list[Recovered]:
    out = []
    for task_id, run_id in rows:
        count, name = c.execute(
            "SELECT interruptions, name FROM tasks WHERE id = ?", (task_id,)
        ).fetchone()
        requeue = count + 1 < max_interruptions
        error = (
            f"interrupted: {why}"
            if requeue
            else (f"interrupted {count + 1} times (max_interruptions {max_interruptions}): {why}")
        )
        if run_id is None:
            # running without an attempt row (should not happen): re-queue it all the same
            c.execute(
                "UPDATE tasks SET state = ?, error = ?, interruptions = interruptions + 1, "
                "lease_expires = NULL, run_id = NULL WHERE id = ? AND state = 'running'",
                ("pending" if requeue else "failed", error, task_id),
            )
            out.append(Recovered(task_id, name, requeue))
            continue
        _finish(
            c,
            task_id,
            run_id,
            outcome=Outcome.INTERRUPTED.value,
            now_ts=now_ts,
            next_state="pending" if requeue else "failed",
            not_before=None,
            result_json=None,
            error=error,
            traceback=None,
            add_failure=False,
            add_interruption=True,
        )
        out.append(Recovered(task_id, name, requeue))
    return out
