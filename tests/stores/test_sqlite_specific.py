"""SQLite-only rules of DESIGN.md §2: pragmas, file mode, migrations, errors, group commit."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ucore.stores.base import StoreError, StoreLockedError
from ucore.stores.migrations import LATEST_SQLITE, SQLITE, Migration
from ucore.stores.records import NewTask, NodeRecord, Priority, TaskFilter, TaskRecord, TaskState
from ucore.stores.sqlite.maintenance import purge_pick
from ucore.stores.sqlite.schema import migrate
from ucore.stores.sqlite.store import SQLiteStore, task_from_row

NOW = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
POSIX = os.name == "posix"


def task(name: str = "job", **params: Any) -> NewTask:
    return NewTask(name, dict(params), Priority.NORMAL, "api", NOW)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ucore.db"


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def make_db(path: Path, tasks: int = 0, **kw: Any) -> None:
    """An up-to-date database holding ``tasks`` tasks."""
    store = SQLiteStore(path, **kw)
    await store.open()
    try:
        for i in range(tasks):
            await store.insert_task(task(f"t{i}", payload="x" * 100))
    finally:
        await store.close()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


def query(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = raw(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern))


def put(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def get(path: Path) -> bytes:
    return path.read_bytes()


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text
    assert "\n" not in text
    assert "Traceback" not in text
    return text


# -- pragmas and file --------------------------------------------------------------------


def _pragmas(conn: sqlite3.Connection) -> tuple[str, int, int]:
    return (
        conn.execute("PRAGMA journal_mode").fetchone()[0],
        conn.execute("PRAGMA synchronous").fetchone()[0],
        conn.execute("PRAGMA busy_timeout").fetchone()[0],
    )


async def test_wal_and_synchronous_full_by_default(sqlite_store: SQLiteStore) -> None:
    reader = await sqlite_store.db.read(_pragmas)
    writer = await sqlite_store.db.write_raw(_pragmas)
    for mode, sync, _ in (reader, writer):
        assert mode.lower() == "wal"
        assert sync == 2  # FULL
    assert reader[2] == 5000
    # the writer waits for the lock itself (every millisecond, up to 3x the busy timeout)
    assert writer[2] == 0


async def test_synchronous_normal_when_asked(db_path: Path) -> None:
    store = SQLiteStore(db_path, synchronous="NORMAL", busy_timeout=0.2)
    await store.open()
    try:
        reader = await store.db.read(_pragmas)
        writer = await store.db.write_raw(_pragmas)
        for mode, sync, _ in (reader, writer):
            assert mode.lower() == "wal"
            assert sync == 1  # NORMAL
        assert (reader[2], writer[2]) == (200, 0)  # the writer polls for the lock itself
    finally:
        await store.close()


@pytest.mark.skipif(not POSIX, reason="file modes are POSIX")
async def test_database_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "ucore.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.insert_task(task())
        assert path.stat().st_mode & 0o777 == 0o600
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            assert wal.stat().st_mode & 0o077 == 0
        assert path.parent.stat().st_mode & 0o077 == 0  # created 0700
    finally:
        await store.close()
    assert path.stat().st_mode & 0o777 == 0o600


# -- migrations --------------------------------------------------------------------------


def schema_of(path: Path) -> list[tuple[Any, ...]]:
    """The schema, normalised: objects with whitespace-collapsed SQL, and each table's
    columns and indexes as SQLite reports them."""
    conn = raw(path)
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
        out: list[tuple[Any, ...]] = [
            (kind, name, table, re.sub(r"\s+", " ", sql or "").strip())
            for kind, name, table, sql in objects
        ]
        for kind, name, _, _ in objects:
            if kind == "table":
                out.append(
                    ("columns", name, conn.execute(f"PRAGMA table_info('{name}')").fetchall())
                )
                out.append(
                    (
                        "indexes",
                        name,
                        sorted(conn.execute(f"PRAGMA index_list('{name}')").fetchall()),
                    )
                )
        return out
    finally:
        conn.close()


#: Columns whose values must be valid for the records (enums); any table, by column name.
VALID_VALUES: dict[str, Any] = {"priority": 20, "state": "completed", "outcome": "completed"}


def fill_every_table(conn: sqlite3.Connection, step: int) -> None:
    """Put a row in every user table, whatever its columns (so each later migration runs
    over data). TEXT gets JSON (valid for the JSON columns), numbers get numbers, and the
    enum columns of ``VALID_VALUES`` a valid value."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations'"
        )
    ]
    for table in tables:
        cols = conn.execute(f"PRAGMA table_info('{table}')").fetchall()
        names, values = [], []
        for _, col, declared, _notnull, _default, pk in cols:
            decl = (declared or "").upper()
            if pk and "INT" in decl:
                continue  # rowid
            if col in VALID_VALUES:
                value: Any = VALID_VALUES[col]
            elif "INT" in decl:
                value = step
            elif "REAL" in decl or "FLOA" in decl or "DOUB" in decl:
                value = 1_900_000_000.5 + step
            elif pk:
                value = f"{table}-{step}"
            else:
                value = "{}"
            names.append(col)
            values.append(value)
        marks = ",".join("?" * len(values))
        conn.execute(f"INSERT INTO {table} ({','.join(names)}) VALUES ({marks})", values)


def test_migrations_are_numbered_in_order() -> None:
    versions = [m.version for m in SQLITE]
    assert versions == list(range(1, len(SQLITE) + 1))
    assert versions[-1] == LATEST_SQLITE


async def test_fresh_database_is_at_the_latest_version(sqlite_store: SQLiteStore) -> None:
    assert await sqlite_store.schema_version() == LATEST_SQLITE
    rows = query(sqlite_store.path, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == [m.version for m in SQLITE]


@pytest.mark.parametrize("start", [m.version for m in SQLITE])
async def test_migrating_step_by_step_gives_the_fresh_schema(tmp_path: Path, start: int) -> None:
    """From each released version, with data in every table, one migration at a time up to
    the latest, then the store's own open: the schema equals a fresh install's."""
    fresh = tmp_path / "fresh.db"
    await make_db(fresh)

    old = tmp_path / "old.db"
    conn = raw(old)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        assert migrate(conn, old, target=start) == list(range(1, start + 1))
        fill_every_table(conn, start)
        for m in SQLITE:
            if m.version <= start:
                continue
            assert migrate(conn, old, target=m.version) == [m.version]
            fill_every_table(conn, m.version)
        assert migrate(conn, old) == []  # nothing left
    finally:
        conn.close()
    if start < LATEST_SQLITE:
        assert files(tmp_path, f"old.db.pre-v{start + 1}-*.bak")

    store = SQLiteStore(old)
    await store.open()  # finds nothing to do, and reads the migrated data
    try:
        assert await store.schema_version() == LATEST_SQLITE
        assert await store.integrity_check() == []
        assert len(await store.list_tasks(TaskFilter(limit=1000))) == len(SQLITE) - start + 1
        await store.list_nodes()
        await store.list_runs()
        await store.insert_task(task())
    finally:
        await store.close()
    assert schema_of(old) == schema_of(fresh)
    versions = query(old, "SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == [m.version for m in SQLITE]


async def test_no_backup_for_a_fresh_database(tmp_path: Path, db_path: Path) -> None:
    await make_db(db_path, tasks=1)
    await make_db(db_path)  # opening an up-to-date database migrates nothing
    assert files(tmp_path, "*.bak") == []


async def test_backup_before_migrating_a_database_with_data(tmp_path: Path, db_path: Path) -> None:
    await make_db(db_path, tasks=3)
    nxt = LATEST_SQLITE + 1
    extended = [*SQLITE, Migration(nxt, "test only", "CREATE TABLE test_extra (x INTEGER)")]
    conn = raw(db_path)
    try:
        assert migrate(conn, db_path, extended) == [nxt]
    finally:
        conn.close()
    (backup,) = files(tmp_path, f"ucore.db.pre-v{nxt}-*.bak")
    if POSIX:
        assert backup.stat().st_mode & 0o777 == 0o600
    # the backup is the database as it was: before the migration, with its data
    assert query(backup, "SELECT max(version) FROM schema_migrations") == [(LATEST_SQLITE,)]
    assert query(backup, "SELECT count(*) FROM tasks") == [(3,)]
    assert query(backup, "SELECT name FROM sqlite_master WHERE name = 'test_extra'") == []
    assert query(db_path, "SELECT max(version) FROM schema_migrations") == [(nxt,)]


async def test_a_newer_schema_is_refused(db_path: Path) -> None:
    await make_db(db_path, tasks=1)
    conn = raw(db_path)
    conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'x', 0)")
    conn.close()
    store = SQLiteStore(db_path)
    with pytest.raises(StoreError) as info:
        await store.open()
    text = one_line(info.value).lower()
    assert "newer" in text
    assert "upgrade" in text
    assert "999" in text
    # refused, not changed
    assert query(db_path, "SELECT max(version) FROM schema_migrations") == [(999,)]
    assert store.db._writer is None and store.db._reader is None


_OPENER = r"""
import asyncio, os, sys, time
from pathlib import Path
from ucore.stores.sqlite.store import SQLiteStore

path, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
deadline = time.monotonic() + 20
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)

async def main():
    store = SQLiteStore(path)
    await store.open()
    version = await store.schema_version()
    await store.close()
    print("opened", version, flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_processes_starting_together_migrate_once(tmp_path: Path, db_path: Path) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, str(db_path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == f"opened {LATEST_SQLITE}"
    rows = query(db_path, "SELECT version, count(*) FROM schema_migrations GROUP BY version")
    assert rows == [(m.version, 1) for m in SQLITE]
    assert files(tmp_path, "*.bak") == []


# -- damaged, unreadable, locked ---------------------------------------------------------


async def open_and_read(path: Path, **kw: Any) -> None:
    """Open the database and read everything a start reads."""
    store = SQLiteStore(path, **kw)
    await store.open()
    try:
        await store.list_tasks(TaskFilter(limit=100_000))
        await store.list_runs(limit=100_000)
        problems = await store.integrity_check()
        if problems:
            raise StoreError(f"integrity check: {problems[0]}")
    finally:
        await store.close()


async def test_random_bytes_are_refused(db_path: Path) -> None:
    put(db_path, os.urandom(16384))
    with pytest.raises(StoreError) as info:
        await open_and_read(db_path)
    assert "damaged" in one_line(info.value) or "not a" in str(info.value)


async def test_a_text_file_is_refused(db_path: Path) -> None:
    put(db_path, b"This is not a database.\n" * 200)
    with pytest.raises(StoreError) as info:
        await open_and_read(db_path)
    one_line(info.value)
    assert get(db_path).startswith(b"This is not a database.")  # left as it was


@pytest.mark.parametrize("keep", [0.5, 0.1, 50 / 4096])
async def test_a_truncated_database_is_refused(db_path: Path, keep: float) -> None:
    await make_db(db_path, tasks=300)
    data = get(db_path)
    assert not files(db_path.parent, "*-wal")  # all in the main file
    put(db_path, data[: max(1, int(len(data) * keep))])
    with pytest.raises(StoreError) as info:
        await open_and_read(db_path)
    one_line(info.value)


async def test_a_directory_as_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        await open_and_read(tmp_path)
    one_line(info.value)


async def test_a_path_under_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(StoreError) as info:
        await open_and_read(blocker / "sub" / "ucore.db")
    one_line(info.value)


@pytest.mark.skipif(not POSIX or os.geteuid() == 0, reason="needs POSIX and a non-root user")
async def test_an_unreadable_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(StoreError) as info:
            await open_and_read(locked / "ucore.db")
        one_line(info.value)
    finally:
        locked.chmod(0o700)


async def test_a_write_while_another_process_holds_the_lock(db_path: Path) -> None:
    await make_db(db_path, tasks=1)
    store = SQLiteStore(db_path, busy_timeout=0.2)
    await store.open()
    other = raw(db_path)
    try:
        other.execute("BEGIN EXCLUSIVE")
        start = time.monotonic()
        with pytest.raises(StoreLockedError) as info:
            await store.insert_task(task("blocked"))
        elapsed = time.monotonic() - start
        assert 0.15 <= elapsed < 5
        assert "locked" in one_line(info.value)
        # WAL: reading still works while another connection writes
        assert len(await store.list_tasks(TaskFilter())) == 1
        other.execute("ROLLBACK")
        # and the store works again once the lock is gone
        task_id, created = await store.insert_task(task("after"))
        assert created
        assert (await store.get_task(task_id)) is not None
    finally:
        other.close()
        await store.close()


async def test_a_write_waits_for_a_lock_held_briefly(db_path: Path) -> None:
    """The writer polls for the lock every millisecond: another process that writes in
    back-to-back 5 ms transactions with 0.1 ms between them never keeps it out
    for long (SQLite's own busy handler, backing off to 100 ms, kept missing such gaps)."""
    await make_db(db_path, tasks=1)
    script = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n"
        "print('ready', flush=True)\n"
        "end = time.monotonic() + 60\n"
        "while time.monotonic() < end:\n"
        "    c.execute('BEGIN IMMEDIATE'); time.sleep(0.005); c.execute('COMMIT')\n"
        "    time.sleep(0.0001)\n"
    )
    hammer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(db_path), stdout=asyncio.subprocess.PIPE
    )
    store = SQLiteStore(db_path, busy_timeout=0.3)
    try:
        assert hammer.stdout is not None
        assert (await hammer.stdout.readline()).strip() == b"ready"
        await store.open()
        for i in range(20):
            task_id, created = await store.insert_task(task(f"between-{i}"))
            assert created and task_id
        assert hammer.returncode is None, "the other writer stopped early"
    finally:
        hammer.kill()
        await hammer.wait()
        await store.close()


# -- group commit ------------------------------------------------------------------------


class Statements:
    """Counts the statements the writing connections run (the writer thread's and the
    quick writes')."""

    def __init__(self, store: SQLiteStore) -> None:
        writer = store.db._writer
        assert writer is not None and writer.conn is not None
        self.conns = {"writer": writer.conn, "quick": store.db.quick_connection()}
        self.seen: list[str] = []
        self.by_conn: dict[str, list[str]] = {name: [] for name in self.conns}
        for name, conn in self.conns.items():
            conn.set_trace_callback(self._tracer(name))

    def _tracer(self, name: str) -> Callable[[str], None]:
        def trace(sql: str) -> None:
            self.seen.append(sql)
            self.by_conn[name].append(sql)

        return trace

    def count(self, prefix: str, conn: str | None = None) -> int:
        seen = self.seen if conn is None else self.by_conn[conn]
        return sum(1 for s in seen if s.strip().upper().startswith(prefix))

    def stop(self) -> None:
        for conn in self.conns.values():
            conn.set_trace_callback(None)


async def test_group_commit(sqlite_store: SQLiteStore) -> None:
    trace = Statements(sqlite_store)
    try:
        results = await asyncio.gather(
            *(sqlite_store.insert_task(task(f"t{i}", i=i)) for i in range(500))
        )
    finally:
        trace.stop()
    ids = [task_id for task_id, created in results if created]
    assert len(set(ids)) == 500
    listed = await sqlite_store.list_tasks(TaskFilter(limit=1000))
    assert len(listed) == 500
    assert {x.params["i"] for x in listed} == set(range(500))
    commits = trace.count("COMMIT")
    assert 1 <= commits <= 50, commits  # far fewer commits than writes
    assert trace.count("BEGIN") == commits


async def run_grouped(
    store: SQLiteStore, fns: list[Callable[[sqlite3.Connection], Any]]
) -> tuple[list[Any], int]:
    """Run ``fns`` as writes queued while the writer is busy, so that they form one group;
    returns their results (or exceptions) and the number of commits they took."""
    started, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        started.set()
        assert release.wait(10)

    blocker = asyncio.create_task(store.db.write(hold))
    assert await asyncio.to_thread(started.wait, 10)
    trace = Statements(store)
    try:
        jobs = [asyncio.create_task(store.db.write(fn)) for fn in fns]
        await asyncio.sleep(0.05)  # every job is queued behind the blocker
        release.set()
        await blocker
        results = await asyncio.gather(*jobs, return_exceptions=True)
    finally:
        trace.stop()
    return results, trace.count("COMMIT") - 1  # the blocker's own commit


def insert_name(
    name: str, fail: BaseException | None = None
) -> Callable[[sqlite3.Connection], Any]:
    def fn(conn: sqlite3.Connection) -> int:
        cur = conn.execute(
            "INSERT INTO tasks (name, params, priority, origin, state, submitted_at) "
            "VALUES (?, '{}', 20, 'api', 'pending', 0)",
            (name,),
        )
        if fail is not None:
            raise fail
        return int(cur.lastrowid or 0)

    return fn


async def names_in(store: SQLiteStore) -> set[str]:
    return {x.name for x in await store.list_tasks(TaskFilter(limit=1000))}


async def test_a_failing_write_does_not_undo_its_group(sqlite_store: SQLiteStore) -> None:
    fns = [
        insert_name("good-1"),
        insert_name("bad-1", RuntimeError("boom")),
        insert_name("good-2"),
        insert_name("bad-2", sqlite3.IntegrityError("constraint")),
        insert_name("good-3"),
    ]
    results, commits = await run_grouped(sqlite_store, fns)
    assert commits == 1  # one group
    assert isinstance(results[0], int)
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[2], int)
    assert isinstance(results[3], StoreError)  # SQLite errors become StoreError
    assert isinstance(results[4], int)
    assert await names_in(sqlite_store) == {"good-1", "good-2", "good-3"}


async def test_a_failing_write_alone_leaves_nothing_behind(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(RuntimeError):
        await sqlite_store.db.write(insert_name("bad", RuntimeError("boom")))
    assert await names_in(sqlite_store) == set()
    await sqlite_store.db.write(insert_name("good"))
    assert await names_in(sqlite_store) == {"good"}


async def test_store_methods_mixed_in_one_group(sqlite_store: SQLiteStore) -> None:
    """Many different writes at once (the service's real load) all land."""
    await sqlite_store.register_node(NodeRecord("n", "h", 1, "service", NOW, NOW))
    ops = []
    for i in range(100):
        ops.append(sqlite_store.insert_task(task(f"m{i}")))
        ops.append(sqlite_store.heartbeat("n", NOW))
    await asyncio.gather(*ops)
    claims = await asyncio.gather(
        *(
            sqlite_store.claim_task(node_id="n", host="h", pid=1, now=NOW, lease_until=NOW)
            for _ in range(120)
        )
    )
    assert len({c.id for c in claims if c is not None}) == 100
    assert await sqlite_store.integrity_check() == []


def journal_insert(c: sqlite3.Connection) -> int:
    return int(
        c.execute("INSERT INTO journal (at, kind, message) VALUES (1, 'k', 'm')").lastrowid or 0
    )


async def test_quick_writes_of_one_moment_share_one_commit_on_the_loop_thread(
    sqlite_store: SQLiteStore,
) -> None:
    trace = Statements(sqlite_store)
    try:
        results = await asyncio.gather(
            *(sqlite_store.db.write_quick(insert_name(f"q{i}")) for i in range(50))
        )
    finally:
        trace.stop()
    assert len(set(results)) == 50
    assert trace.count("COMMIT", "quick") == 1
    assert trace.count("SAVEPOINT", "quick") == 0  # only when a write fails
    assert trace.count("BEGIN", "writer") == 0  # no hand-over to the writer thread
    assert await names_in(sqlite_store) == {f"q{i}" for i in range(50)}


async def test_a_failing_quick_write_does_not_undo_its_group(sqlite_store: SQLiteStore) -> None:
    runs: dict[str, int] = {}

    def counted(name: str, fail: BaseException | None = None) -> Any:
        inner = insert_name(name, fail)

        def fn(conn: sqlite3.Connection) -> Any:
            runs[name] = runs.get(name, 0) + 1
            return inner(conn)

        return fn

    trace = Statements(sqlite_store)
    try:
        results = await asyncio.gather(
            sqlite_store.db.write_quick(counted("good-1")),
            sqlite_store.db.write_quick(counted("bad-1", RuntimeError("boom"))),
            sqlite_store.db.write_quick(counted("good-2")),
            sqlite_store.db.write_quick(counted("bad-2", sqlite3.IntegrityError("constraint"))),
            return_exceptions=True,
        )
    finally:
        trace.stop()
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[3], StoreError)  # SQLite errors become StoreError
    assert trace.count("COMMIT") == 1
    assert await names_in(sqlite_store) == {"good-1", "good-2"}
    # the group ran straight until the first failure, then each in its own savepoint
    assert runs == {"good-1": 2, "bad-1": 2, "good-2": 1, "bad-2": 1}
    with pytest.raises(RuntimeError):
        await sqlite_store.db.write_quick(insert_name("bad-alone", RuntimeError("boom")))
    assert await names_in(sqlite_store) == {"good-1", "good-2"}


async def test_quick_writes_go_to_the_writer_thread_while_the_lock_is_taken(
    db_path: Path,
) -> None:
    await make_db(db_path, tasks=1)
    store = SQLiteStore(db_path, busy_timeout=2.0)
    await store.open()
    other = raw(db_path)
    trace = Statements(store)
    try:
        first = await store.db.write_quick(journal_insert)
        token = await store.change_token()
        assert trace.count("COMMIT", "quick") == 1
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.ensure_future(store.db.write_quick(journal_insert))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the writer thread waits for the lock; the loop does not
        # a quick write made meanwhile follows the first one (commit order = call order)
        later = asyncio.ensure_future(store.db.write_quick(journal_insert))
        await asyncio.sleep(0.05)
        other.execute("ROLLBACK")
        second, third = await asyncio.gather(waiting, later)
        assert first < second < third
        assert trace.count("COMMIT", "writer") >= 1
        assert query(db_path, "SELECT count(*) FROM journal") == [(3,)]
        assert await store.change_token() == token  # its own commits are not foreign
        # with the lock free again, quick writes are back on the loop thread
        await store.db.write_quick(journal_insert)
        assert trace.count("COMMIT", "quick") == 2
    finally:
        trace.stop()
        other.close()
        await store.close()


async def test_quick_writes_still_gathering_are_committed_at_close(db_path: Path) -> None:
    await make_db(db_path, tasks=1)
    store = SQLiteStore(db_path)
    await store.open()
    pending = store.db.write_quick(journal_insert)
    await store.close()
    assert pending.done() and pending.result() > 0
    assert query(db_path, "SELECT count(*) FROM journal") == [(1,)]


def test_a_task_record_from_values_equals_the_constructed_one() -> None:
    now = 1_700_000_000.5
    row = (7, "noop", '{"a":1}', 30, "api", "running", None, 1, 0, 0, 3, now, None, now)
    row += (None, 0.5, "half", '{"ok":true}', None, None, "n", "h", 12, now + 30, 1, 9)
    record = task_from_row(row)
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(TaskRecord)}
    assert record == TaskRecord(**values)
    assert record.priority is Priority.HIGH and record.state is TaskState.RUNNING
    assert record.params == {"a": 1} and record.result == {"ok": True}
    assert record.cancel_requested is True and record.lease_expires is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.id = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        TaskRecord.from_values(row[:-1])


@pytest.mark.parametrize("kind", ["history", "tasks", "journal"])
async def test_a_purge_batch_walks_the_table_in_rowid_order(db_path: Path, kind: str) -> None:
    """The pick of a purge batch stops at its limit; with an index on the time it sorted
    every old row for each batch (migration 6's partial index made the planner pick it)."""
    await make_db(db_path, tasks=10)
    plan = query(db_path, f"EXPLAIN QUERY PLAN {purge_pick(kind)}", (1.0, 2000))
    details = " | ".join(str(row[-1]) for row in plan)
    assert details.startswith("SCAN"), details
    assert "TEMP B-TREE" not in details, details


async def test_a_quick_write_that_cannot_reach_the_writer_fails_instead_of_hanging(
    db_path: Path,
) -> None:
    await make_db(db_path, tasks=1)
    store = SQLiteStore(db_path)
    await store.open()
    other = raw(db_path)
    other.execute("BEGIN IMMEDIATE")  # the group must go to the writer thread...
    writer, store.db._writer = store.db._writer, None  # ...which is gone
    try:
        with pytest.raises(StoreError, match="closed"):
            await asyncio.wait_for(store.db.write_quick(journal_insert), 5)
    finally:
        store.db._writer = writer
        other.execute("ROLLBACK")
        other.close()
        await store.close()
    assert query(db_path, "SELECT count(*) FROM journal") == [(0,)]


async def test_active_tasks_are_found_through_their_index_beside_a_long_history(
    db_path: Path,
) -> None:
    """The claim, the list of active tasks and the lease recovery read the partial index of
    the active tasks (migration 7), never the whole history, whatever the statistics say."""
    await make_db(db_path)
    conn = raw(db_path)
    conn.executemany(
        "INSERT INTO tasks (name, params, priority, origin, state, max_attempts, submitted_at, "
        "finished_at) VALUES (?, '{}', 20, 'api', ?, 1, 1.0, ?)",
        [("a", "completed", 2.0)] * 20_000
        + [("a", "pending", None)] * 3
        + [("b", "running", None)] * 2,
    )
    conn.execute("ANALYZE")
    conn.close()
    store = SQLiteStore(db_path)
    await store.open()
    seen: list[str] = []
    conns = [store.db.quick_connection(), store.db._reader.conn, store.db._writer.conn]  # type: ignore[union-attr]
    for c in conns:
        c.set_trace_callback(seen.append)
    try:
        active = await store.list_tasks(TaskFilter(states=("pending", "running"), limit=10))
        assert len(active) == 5
        await store.recover_expired(NOW, 3)
        got = await store.claim_task(
            node_id="n", host="h", pid=1, now=NOW, lease_until=NOW, names=frozenset({"a"})
        )
        assert got is not None and got.name == "a"
    finally:
        for c in conns:
            c.set_trace_callback(None)
        await store.close()
    wanted = ("state = 'pending' OR", "lease_expires <", "+name IN")
    statements = [s for s in seen if any(w in s for w in wanted)]
    assert len(statements) == 3, statements
    for sql in statements:
        plan = " | ".join(str(r[-1]) for r in query(db_path, f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX tasks_active" in plan or "COVERING INDEX tasks_active" in plan, (
            sql,
            plan,
        )
        assert "SCAN tasks" not in plan, (sql, plan)


# -- checkpoints at synchronous=NORMAL (ucore.stores.sqlite.checkpoint) ----------------------
async def test_at_normal_checkpoints_run_on_a_thread_of_their_own(
    db_path: Path, tmp_path: Path
) -> None:
    from ucore.stores.sqlite import checkpoint

    store = SQLiteStore(db_path, synchronous="NORMAL")
    await store.open()
    try:
        checkpointer = store.db.checkpointer
        assert checkpointer is not None and checkpointer.is_alive()
        conn = store.db.quick_connection()
        autocheckpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert autocheckpoint == checkpoint.QUICK_AUTOCHECKPOINT_PAGES
        # each awaited alone: one commit each, far fewer WAL pages than the commits'
        # own checkpoint waits for
        for _ in range(checkpoint.EVERY_COMMITS):
            await store.db.write_quick(journal_insert)
        for _ in range(250):
            if checkpointer.checkpoints:
                break
            await asyncio.sleep(0.02)
        assert checkpointer.checkpoints >= 1
        # the database file alone, without its WAL, holds what was checkpointed
        alone = tmp_path / "alone.db"
        shutil.copyfile(db_path, alone)
        assert query(alone, "SELECT count(*) FROM journal") == [(checkpoint.EVERY_COMMITS,)]
    finally:
        await store.close()
    assert checkpointer.checkpoints >= 1 and not checkpointer.is_alive()
    assert "ucore-sqlite-checkpoint" not in {t.name for t in threading.enumerate()}


async def test_at_full_checkpoints_stay_in_the_commit(sqlite_store: SQLiteStore) -> None:
    assert sqlite_store.db.checkpointer is None
    conn = sqlite_store.db.quick_connection()
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # SQLite's


def test_a_checkpointer_that_cannot_open_the_database_gives_up_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ucore.stores.sqlite.checkpoint import Checkpointer

    def refuse() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    checkpointer = Checkpointer("test-checkpoint", refuse)
    with caplog.at_level("WARNING", logger="ucore.stores.sqlite"):
        checkpointer.start()
        checkpointer.join(5)
    assert not checkpointer.is_alive()
    assert any("background checkpoints off" in r.getMessage() for r in caplog.records)
    checkpointer.note_commit()  # still harmless


def test_a_failing_checkpoint_is_tried_again_at_the_next_turn(db_path: Path) -> None:
    from ucore.stores.sqlite import checkpoint

    calls: list[str] = []

    class Flaky:
        def execute(self, sql: str) -> Any:
            calls.append(sql)
            if len(calls) == 1:
                raise sqlite3.OperationalError("database is locked")
            return sqlite3.connect(":memory:").execute("SELECT 0, 0, 0")

        def close(self) -> None:
            calls.append("close")

    checkpointer = checkpoint.Checkpointer("test-checkpoint", Flaky)  # type: ignore[arg-type]
    checkpointer.start()
    try:
        for turn in (1, 2):
            for _ in range(checkpoint.EVERY_COMMITS):
                checkpointer.note_commit()
            deadline = time.monotonic() + 5
            while checkpointer.checkpoints < turn and time.monotonic() < deadline:
                time.sleep(0.01)
            assert checkpointer.checkpoints == turn
    finally:
        checkpointer.stop()
        checkpointer.join(5)
    assert calls == ["PRAGMA wal_checkpoint(PASSIVE)"] * 2 + ["close"]
