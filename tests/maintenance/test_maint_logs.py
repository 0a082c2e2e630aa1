"""log_rotation (issue 9, Deliver 3 and 4; DESIGN.md §6.5), with real files under tmp_path.

The main test runs two writer processes with four threads each, logging numbered lines through
``setup_logging`` (the real ``SharedFileHandler``) into the log dir, while the task rotates,
compresses and prunes the log again and again; afterwards every line is counted across the
live log and the decompressed archives. The others build a hostile log dir (another program's
logs, symlinks, a FIFO, look-alike names, undecodable names, crash leftovers) and check what
changed and what did not, byte for byte. The app's clock is a FakeClock, so archive names are
known in advance (``ucore.log-20260301-120000``, then ``-2``, ``-3``, ...).
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from maint_helpers import START, AppFactory, finish, journal_of, run, wait_until

import ucore.maintenance.log_rotation as rot
from ucore.app import App
from ucore.foundation.logs import setup_logging
from ucore.stores.records import TaskState
from ucore.testing import FakeClock

STAMP = START.strftime("%Y%m%d-%H%M%S")  # 20260301-120000
OWN_KEYS = {"rotated", "compressed", "deleted", "bytes_freed", "files", "log_dir"}
SHARED_KEYS = {"dry_run", "partial", "warnings", "duration"}


# -- helpers --------------------------------------------------------------------------------
async def logs_app(apps: AppFactory) -> tuple[App, Path]:
    app = await apps(clock=FakeClock(START))
    log_dir: Path = app.ctx.locations.log_dir
    os.makedirs(log_dir, exist_ok=True)
    return app, log_dir


async def rotate(app: App, **params: Any) -> dict[str, Any]:
    record = await run(app, "log_rotation", params)
    assert record.state is TaskState.COMPLETED, (record.error, record.traceback)
    result: dict[str, Any] = record.result
    assert set(result) >= OWN_KEYS | SHARED_KEYS, set(result)
    (entry,) = await journal_of(app, record.id, "maintenance.log_rotation")
    assert entry.message == ("dry run: " if result["dry_run"] else "") + rot.summary(result)
    return result


def lines(n: int, tag: str = "line", width: int = 60) -> bytes:
    """``n`` distinct log lines in our format, not trivially compressible."""
    out = []
    for i in range(n):
        digest = hashlib.sha256(f"{tag}{i}".encode()).hexdigest()[: (i * 7) % 40 + 8]
        out.append(f"2026-03-01 12:00:00,{i % 1000:03d} INFO ucore.{tag}: {tag} {i} {digest}")
    return ("\n".join(line.ljust(width) for line in out) + "\n").encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6)


def entry_state(path: Path) -> tuple[Any, ...]:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return ("file", st.st_ino, st.st_size, st.st_mtime_ns, digest)
    return ("other", stat.S_IFMT(st.st_mode), st.st_ino)


def snapshot(*roots: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry below ``roots`` (symlinks not followed): kind, inode, size, mtime, sha256."""
    out: dict[str, tuple[Any, ...]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath, name)
                out[str(p)] = entry_state(p)
    return out


def names(log_dir: Path) -> set[str]:
    return set(os.listdir(log_dir))


def ours(log_dir: Path, live: str = "ucore.log") -> list[str]:
    """The archives of ``live`` by our pattern (compressed or not; regular files), oldest
    first."""
    found = []
    for name in os.listdir(log_dir):
        parsed = rot.parse_archive(name)
        if parsed is None or parsed[0] != live or parsed[3] == rot.TEMP_SUFFIX:
            continue
        if stat.S_ISREG((log_dir / name).lstat().st_mode):
            found.append((parsed[2], name))
    return [name for _, name in sorted(found)]


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def log_to(log_dir: Path, tag: str) -> Callable[[str], None]:
    """This process logs into ``log_dir/ucore.log`` through setup_logging, first 50 lines
    ``"<tag> <i> xxx…"`` (over 1 KB in all); returns info()."""
    setup_logging(logging.INFO, log_file=log_dir / "ucore.log", stream=io.StringIO())
    logger = logging.getLogger("ucore.test.logs")
    for i in range(50):
        logger.info("%s %d %s", tag, i, "x" * 40)
    return lambda text: logger.info("%s", text)


# -- two processes, four threads, rotations all along ---------------------------------------
PROCS = 2
THREADS = 4
ROUNDS = 12
PAD = 40
WRITER = r"""
import json, logging, os, sys, threading, time
from pathlib import Path
from ucore.foundation.logs import SharedFileHandler, setup_logging

path, proc, nthreads, stop = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
pad = "." * int(sys.argv[5])
setup_logging(logging.INFO, log_file=path, stream=open(os.devnull, "w"))
handler = next(h for h in logging.getLogger().handlers if isinstance(h, SharedFileHandler))
failures = []
handler.handleError = lambda record: failures.append(repr(sys.exc_info()[1]))
logger = logging.getLogger("writer")
counts = [0] * nthreads
limit = time.monotonic() + 60  # a safety net only: the test ends the writers with the stop file
gate = threading.Barrier(nthreads)

def work(t):
    gate.wait()
    i = 0
    while not stop.exists() and time.monotonic() < limit:
        logger.info("%s %d %d %s|", proc, t, i, pad)
        i += 1
    counts[t] = i

threads = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
for th in threads:
    th.start()
for th in threads:
    th.join()
logging.shutdown()
print(json.dumps({"counts": counts, "failures": failures}))
"""
LINE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO writer: (p\d) (\d+) (\d+) (\.+)\|$")


def start_writers(live: Path, stop: Path) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(live), f"p{k}", str(THREADS), str(stop), str(PAD)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(PROCS)
    ]


def has_lines_of_every_writer(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    return all(f"INFO writer: p{k} ".encode() in data for k in range(PROCS))


async def test_two_processes_four_threads_lose_and_duplicate_nothing(
    apps: AppFactory, tmp_path: Path
) -> None:
    app, log_dir = await logs_app(apps)
    live = log_dir / "ucore.log"
    stop = tmp_path / "stop"
    procs = start_writers(live, stop)

    def writers_alive_and(predicate: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            for p in procs:
                assert p.poll() is None, f"writer exited early: {p.communicate()[1]}"
            return predicate()

        return check

    results: list[dict[str, Any]] = []
    try:
        for n in range(ROUNDS):
            # rotate only once every writer has written to the current file, so each rotation
            # happens under both processes while all their threads are writing
            await wait_until(
                writers_alive_and(lambda: has_lines_of_every_writer(live)),
                what=f"lines of every writer before rotation {n}",
            )
            results.append(await rotate(app, max_log_size_mb=0.0001, max_log_files=100))
        await wait_until(writers_alive_and(lambda: has_lines_of_every_writer(live)), what="more")
    finally:
        stop.touch()
        outputs = [p.communicate(timeout=60) for p in procs]

    counts: dict[str, list[int]] = {}
    for k, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, err
        report = json.loads(out)
        assert report["failures"] == []
        counts[f"p{k}"] = report["counts"]
    for result in results:
        assert (result["rotated"], result["compressed"], result["deleted"]) == (1, 1, 0), result
        assert result["warnings"] == []

    # every archive is compressed, no uncompressed archive or temp file is left
    archives = ours(log_dir)
    assert len(archives) == ROUNDS
    assert archives[0] == f"ucore.log-{STAMP}.gz"
    assert archives[-1] == f"ucore.log-{STAMP}-{ROUNDS}.gz"  # -10 after -9: by number
    assert names(log_dir) == {*archives, "ucore.log"}

    files = [gzip.decompress((log_dir / a).read_bytes()) for a in archives]
    files.append(live.read_bytes())
    seen: dict[tuple[str, int, int], int] = {}
    torn: list[bytes] = []
    for index, data in enumerate(files):
        assert data.endswith(b"\n"), f"file {index} ends in a partial line"
        for raw in data.split(b"\n")[:-1]:
            m = LINE.match(raw)
            if m is None or len(m.group(4)) != PAD:
                torn.append(raw)
                continue
            key = (m.group(1).decode(), int(m.group(2)), int(m.group(3)))
            assert key not in seen, f"line {key} in file {seen[key]} and in file {index}"
            seen[key] = index
    assert torn == [], f"{len(torn)} torn or foreign lines, e.g. {torn[:3]}"
    expected = {
        (proc, t, i)
        for proc, per_thread in counts.items()
        for t, n in enumerate(per_thread)
        for i in range(n)
    }
    missing, extra = expected - set(seen), set(seen) - expected
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} unexpected lines, e.g. {sorted(extra)[:5]}"
    # per thread, lines move forward archive by archive in name order: the names sort by age
    for proc, per_thread in counts.items():
        for t, n in enumerate(per_thread):
            where = [seen[(proc, t, i)] for i in range(n)]
            assert where == sorted(where), (proc, t)
    # and every rotation happened under both processes
    for index in range(len(files)):
        assert {k[0] for k, i in seen.items() if i == index} == set(counts), index


async def test_a_write_in_flight_at_the_rename_lands_in_the_compressed_archive(
    apps: AppFactory,
) -> None:
    """A writer (of any process) that took its shared lock before the rename writes after it:
    the rotator waits for that write before it compresses and removes the archive."""
    app, log_dir = await logs_app(apps)
    live = log_dir / "ucore.log"
    live.write_bytes(lines(100))
    stem = log_dir / f"ucore.log-{STAMP}"
    fd = os.open(live, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_SH)  # as SharedFileHandler holds it around one write
    try:
        task_id = await app.tasks.submit("log_rotation", {"max_log_size_mb": 0.001})
        await wait_until(stem.exists, what="the rename")
        assert not live.exists()
        os.write(fd, b"in flight\n")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    record = await finish(app, task_id)
    assert record.state is TaskState.COMPLETED, record.error
    assert names(log_dir) == {f"{stem.name}.gz"}
    assert gzip.decompress((log_dir / f"{stem.name}.gz").read_bytes()) == (
        lines(100) + b"in flight\n"
    )


# -- what is ours and what is not -------------------------------------------------------------
async def test_other_programs_files_symlinks_and_lookalikes_are_untouched(
    apps: AppFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, log_dir = await logs_app(apps)
    outside = tmp_path / "outside"
    outside.mkdir()
    big = lines(200)
    (outside / "target.log").write_bytes(big)
    (outside / "ucore.log-20200101-000000.gz").write_bytes(gz(big))
    # another program's files and look-alikes, all over the size limit
    for name in (
        "other.log",
        "ucore.txt",
        "UCORE.log",
        "ucore.log.1",
        "ucore.log-2020.gz",
        "ucore.log.gz.tmp",
        "other.log-20200101-000000",
        "other.log-20200101-000000.gz",
        "xucore.log",
        "ucore.log-20200101-000000.bak",
    ):
        (log_dir / name).write_bytes(big)
    (log_dir / "ucore-link.log").symlink_to(outside / "target.log")
    (log_dir / "uexplorer-dangling.log").symlink_to(outside / "nothing-here.log")
    # symlinks named like our archives: never deleted, never followed
    (log_dir / "ucore.log-20200101-000000").symlink_to(outside / "target.log")
    (log_dir / "ucore.log-20200102-000000.gz").symlink_to(outside / "ucore.log-20200101-000000.gz")
    (log_dir / "ucore-dir.log").mkdir()
    (log_dir / "ucore-dir.log" / "ucore.log").write_bytes(big)
    (log_dir / "sub").mkdir()
    (log_dir / "sub" / "ucore.log").write_bytes(big)
    os.mkfifo(log_dir / "ucore-fifo.log")
    # ours: the live log, one with an undecodable name, one with a line break in its name
    odd = os.fsdecode(b"ucore-\xff.log")
    for name in ("ucore.log", odd, "uexplorer\nx.log"):
        (log_dir / name).write_bytes(big)
    mine = {"ucore.log", odd, "uexplorer\nx.log"}
    before = {k: v for k, v in snapshot(log_dir, outside).items() if Path(k).name not in mine}
    messages: list[str] = []
    progress = rot.Rotation._progress

    def record(self: rot.Rotation, message: str, part: float = 0.0) -> None:
        messages.append(message)
        progress(self, message, part)

    monkeypatch.setattr(rot.Rotation, "_progress", record)

    result = await rotate(app, max_log_size_mb=0.001, max_log_files=1)

    after = snapshot(log_dir, outside)
    for path, state in before.items():
        assert after.get(path) == state, path
    assert (result["rotated"], result["compressed"], result["deleted"]) == (3, 3, 0), result
    assert result["warnings"] == []
    for live in mine:
        assert not (log_dir / live).exists()
        (archive,) = ours(log_dir, live)
        assert archive == f"{live}-{STAMP}.gz"
        assert gzip.decompress((log_dir / archive).read_bytes()) == big
    shown = {f["file"] for f in result["files"] if f["action"] == "rotate"}
    assert shown == {"ucore.log", "ucore-\\xff.log", "uexplorer\\nx.log"}
    json.dumps(result)  # every name in the result is plain text
    # and in the progress messages (the store takes text only)
    for message in messages:
        message.encode("utf-8")
    assert any("compressing ucore-\\xff.log-20260301-120000" in m for m in messages)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_empty_small_and_at_limit_logs_are_left_alone(apps: AppFactory) -> None:
    app, log_dir = await logs_app(apps)
    limit = int(0.001 * rot.MIB)  # 1,048 bytes
    (log_dir / "ucore.log").write_bytes(b"")
    (log_dir / "uexplorer.log").write_bytes(b"x" * (limit - 1) + b"\n")  # exactly the limit
    (log_dir / "ucore-small.log").write_bytes(b"small\n")
    (log_dir / "uexplorer-big.log").write_bytes(b"y" * limit + b"\n")  # one byte over
    before = snapshot(log_dir)

    result = await rotate(app, max_log_size_mb=0.001)

    after = snapshot(log_dir)
    for name in ("ucore.log", "uexplorer.log", "ucore-small.log"):
        key = str(log_dir / name)
        assert after[key] == before[key], name
    assert result["rotated"] == 1
    assert [f["file"] for f in result["files"] if f["action"] == "rotate"] == ["uexplorer-big.log"]
    assert ours(log_dir, "uexplorer-big.log") == [f"uexplorer-big.log-{STAMP}.gz"]


async def test_retention_keeps_the_newest_archives_per_log(apps: AppFactory) -> None:
    app, log_dir = await logs_app(apps)
    content = lines(100)
    old = [
        "ucore.log-20250101-000000.gz",
        "ucore.log-20250101-000000-2.gz",
        "ucore.log-20250101-000000-9.gz",
        "ucore.log-20250101-000000-10.gz",  # newer than -9 although it sorts before it as text
        "ucore.log-20250102-000000",  # an uncompressed leftover
        "ucore.log-20250103-000000.gz",
    ]
    for name in old:
        (log_dir / name).write_bytes(content if not name.endswith(".gz") else gz(content))
    # a log no longer written (no live file): its archives are pruned too
    explorer = [f"uexplorer.log-2025010{d}-000000.gz" for d in range(1, 7)]
    for name in explorer:
        (log_dir / name).write_bytes(gz(content))
    lookalikes = ["ucore.log-2024.gz", "ucore.log.20240101.gz", "other.log-20240101-000000.gz"]
    for name in lookalikes:
        (log_dir / name).write_bytes(gz(content))
    (log_dir / "ucore.log").write_bytes(content)
    sizes = {name: (log_dir / name).stat().st_size for name in old + explorer}

    result = await rotate(app, max_log_size_mb=0.001, max_log_files=4)

    assert ours(log_dir) == [
        "ucore.log-20250101-000000-10.gz",
        "ucore.log-20250102-000000.gz",
        "ucore.log-20250103-000000.gz",
        f"ucore.log-{STAMP}.gz",
    ]
    assert ours(log_dir, "uexplorer.log") == explorer[2:]
    for name in lookalikes:
        assert gzip.decompress((log_dir / name).read_bytes()) == content
    gone = [*old[:3], *explorer[:2]]
    assert result["deleted"] == len(gone)
    # 20250102-000000 was kept and compressed, like the new archive
    assert result["compressed"] == 2
    compressed = sum(f["bytes"] - f["compressed"] for f in result["files"] if "compressed" in f)
    assert result["bytes_freed"] == sum(sizes[name] for name in gone) + compressed
    assert gzip.decompress((log_dir / "ucore.log-20250102-000000.gz").read_bytes()) == content


async def test_an_archive_made_by_this_run_is_kept_even_if_dated_older(apps: AppFactory) -> None:
    """A clock that went backwards: the archive just made is not the first to go."""
    app, log_dir = await logs_app(apps)
    (log_dir / "ucore.log-20990101-000000.gz").write_bytes(gz(b"from the future\n"))
    (log_dir / "ucore.log").write_bytes(lines(100))
    result = await rotate(app, max_log_size_mb=0.001, max_log_files=1)
    assert ours(log_dir) == [f"ucore.log-{STAMP}.gz", "ucore.log-20990101-000000.gz"]
    assert (result["rotated"], result["deleted"]) == (1, 0)
    assert gzip.decompress((log_dir / f"ucore.log-{STAMP}.gz").read_bytes()) == lines(100)


async def test_crash_leftovers_are_finished(apps: AppFactory) -> None:
    app, log_dir = await logs_app(apps)
    a, b = lines(300, "a"), lines(300, "b")
    # crashed while compressing: the uncompressed archive and a partial temp file
    (log_dir / "ucore.log-20250101-000000").write_bytes(a)
    (log_dir / "ucore.log-20250101-000000.gz.tmp").write_bytes(gz(a)[:100])
    # crashed after the .gz was in place, before the uncompressed archive was removed
    (log_dir / "uexplorer.log-20250102-000000").write_bytes(b)
    (log_dir / "uexplorer.log-20250102-000000.gz").write_bytes(gz(b))
    # a stale temp file whose archive is gone
    (log_dir / "ucore.log-20250103-000000-2.gz.tmp").write_bytes(b"partial")
    (log_dir / "ucore.log").write_bytes(b"live and small\n")
    (log_dir / "other.gz.tmp").write_bytes(b"not ours")

    result = await rotate(app)  # default limit 100 MB: nothing to rotate

    assert names(log_dir) == {
        "ucore.log",
        "ucore.log-20250101-000000.gz",
        "uexplorer.log-20250102-000000.gz",
        "other.gz.tmp",
    }
    assert gzip.decompress((log_dir / "ucore.log-20250101-000000.gz").read_bytes()) == a
    assert gzip.decompress((log_dir / "uexplorer.log-20250102-000000.gz").read_bytes()) == b
    assert (log_dir / "ucore.log").read_bytes() == b"live and small\n"
    assert (log_dir / "other.gz.tmp").read_bytes() == b"not ours"
    assert (result["rotated"], result["compressed"], result["deleted"]) == (0, 2, 0)
    actions = sorted((f["action"], f["file"]) for f in result["files"])
    assert actions == [
        ("compress", "ucore.log-20250101-000000"),
        ("compress", "uexplorer.log-20250102-000000"),
        ("remove_temp", "ucore.log-20250101-000000.gz.tmp"),
        ("remove_temp", "ucore.log-20250103-000000-2.gz.tmp"),
    ]


async def test_dry_run_changes_nothing_and_says_what_it_would_do(apps: AppFactory) -> None:
    app, log_dir = await logs_app(apps)
    content = lines(100)
    (log_dir / "ucore.log").write_bytes(content)
    (log_dir / "uexplorer.log").write_bytes(b"small\n")
    (log_dir / "ucore.log-20250101-000000").write_bytes(content)
    (log_dir / "ucore.log-20250101-000000.gz.tmp").write_bytes(b"partial")
    for day in range(2, 6):
        (log_dir / f"ucore.log-2025010{day}-000000.gz").write_bytes(gz(content))
    before = snapshot(log_dir)

    result = await rotate(app, max_log_size_mb=0.001, max_log_files=3, dry_run=True)

    assert snapshot(log_dir) == before
    assert result["dry_run"] is True
    # rotate ucore.log; keep it and the 2 newest; delete 20250101 (plain) to 20250103
    assert (result["rotated"], result["compressed"], result["deleted"]) == (1, 1, 3)
    deleted = [
        "ucore.log-20250101-000000",
        "ucore.log-20250102-000000",
        "ucore.log-20250103-000000",
    ]
    assert sorted(f["file"] for f in result["files"] if f["action"] == "delete") == deleted
    assert result["bytes_freed"] == len(b"partial") + sum(
        (log_dir / name).stat().st_size
        for name in ("ucore.log-20250101-000000", *(f"{d}.gz" for d in deleted[1:]))
    )
    assert rot.summary(result).startswith("would rotate 1 log, compress 1, delete 3 old archives")


# -- compression ----------------------------------------------------------------------------
async def test_compressed_archive_is_exactly_the_rotated_bytes_and_gzip_sized(
    apps: AppFactory,
) -> None:
    app, log_dir = await logs_app(apps)
    content = lines(40_000, width=80)  # 3.2 MB: several chunks
    assert len(content) > 3 * rot.CHUNK
    (log_dir / "ucore.log").write_bytes(content)
    os.utime(log_dir / "ucore.log", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))

    result = await rotate(app, max_log_size_mb=1)

    archive = log_dir / f"ucore.log-{STAMP}.gz"
    packed = archive.read_bytes()
    assert gzip.decompress(packed) == content
    assert zlib.decompress(packed, 31) == content
    st = archive.stat()
    assert st.st_mtime_ns == 1_700_000_000_000_000_000  # the last write to the log
    assert stat.S_IMODE(st.st_mode) == 0o600
    (entry,) = [f for f in result["files"] if f["action"] == "compress"]
    assert (entry["bytes"], entry["compressed"]) == (len(content), len(packed))
    assert result["bytes_freed"] == len(content) - len(packed)
    check_with_gzip(archive, content)


def check_with_gzip(archive: Path, content: bytes) -> None:
    """``gzip -t`` accepts the archive, and it is no more than 1 % larger than ``gzip -6``'s."""
    if shutil.which("gzip") is None:
        return
    test = subprocess.run(["gzip", "-t", str(archive)], capture_output=True, check=False)
    assert test.returncode == 0, test.stderr
    ref = subprocess.run(
        ["gzip", "-6", "-n", "-c"], input=content, capture_output=True, check=True
    ).stdout
    size = archive.stat().st_size
    assert size <= len(ref) * 1.01, (size, len(ref))


def test_compression_cut_short_keeps_the_archive_and_removes_its_temp_file(
    tmp_path: Path,
) -> None:
    content = lines(40_000, width=80)
    stem = "ucore.log-20250101-000000"
    (tmp_path / stem).write_bytes(content)
    calls = 0

    class Stop(Exception):
        pass

    def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            assert (tmp_path / (stem + rot.TEMP_SUFFIX)).stat().st_size > 0
            raise Stop

    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(Stop):
            rot.compress_archive(fd, stem, step)
        assert names(tmp_path) == {stem}
        assert (tmp_path / stem).read_bytes() == content
        read, written = rot.compress_archive(fd, stem, lambda: None)
    finally:
        os.close(fd)
    assert names(tmp_path) == {stem + ".gz"}
    assert read == len(content)
    assert gzip.decompress((tmp_path / (stem + ".gz")).read_bytes()) == content
    assert written == (tmp_path / (stem + ".gz")).stat().st_size


async def test_cancel_during_compression_leaves_the_archive_for_the_next_run(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, log_dir = await logs_app(apps)
    content = lines(40_000, width=80)
    (log_dir / "ucore.log").write_bytes(content)
    progress = rot.Rotation._progress

    def cancel_mid_compression(self: rot.Rotation, message: str, part: float = 0.0) -> None:
        progress(self, message, part)
        if "compressing" in message and part > 0:
            self.run.ctx.request_stop("cancel")

    monkeypatch.setattr(rot.Rotation, "_progress", cancel_mid_compression)
    monkeypatch.setattr(rot, "PROGRESS_EVERY", rot.CHUNK)  # progress after the first chunk
    record = await run(app, "log_rotation", {"max_log_size_mb": 1})
    assert record.state is TaskState.CANCELLED
    stem = f"ucore.log-{STAMP}"
    assert names(log_dir) == {stem}  # rotated, not compressed, no temp file
    assert (log_dir / stem).read_bytes() == content

    monkeypatch.setattr(rot.Rotation, "_progress", progress)
    result = await rotate(app, max_log_size_mb=1)
    assert (result["rotated"], result["compressed"]) == (0, 1)
    assert names(log_dir) == {stem + ".gz"}
    assert gzip.decompress((log_dir / (stem + ".gz")).read_bytes()) == content


async def test_used_up_budget_stops_cleanly(apps: AppFactory) -> None:
    app, log_dir = await logs_app(apps)
    (log_dir / "ucore.log").write_bytes(lines(100))
    before = snapshot(log_dir)
    result = await rotate(app, max_log_size_mb=0.001, time_budget_seconds=1e-9)
    assert result["partial"] is True
    assert "time budget" in result["warnings"][0]
    assert snapshot(log_dir) == before
    assert result["rotated"] == 0


async def test_a_second_rotator_on_the_same_log_dir_is_skipped(apps: AppFactory) -> None:
    app, log_dir = await logs_app(apps)
    (log_dir / "ucore.log").write_bytes(lines(100))
    before = snapshot(log_dir)
    fd = os.open(log_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a rotator in another process holds it
        result = await rotate(app, max_log_size_mb=0.001)
    finally:
        os.close(fd)
    assert snapshot(log_dir) == before
    assert result["skipped"] == [f"another log rotation is running in {log_dir}"]
    assert result["rotated"] == 0


# -- failures: a warning, and logging goes on -----------------------------------------------
@pytest.mark.usefixtures("restore_root_logger")
async def test_own_process_keeps_logging_to_the_new_file(apps: AppFactory) -> None:
    app, log_dir = await logs_app(apps)
    info = log_to(log_dir, "before")
    result = await rotate(app, max_log_size_mb=0.001)
    info("after")
    assert result["rotated"] == 1
    archived = gzip.decompress((log_dir / f"ucore.log-{STAMP}.gz").read_bytes()).decode()
    live = (log_dir / "ucore.log").read_text()
    assert all(f"before {i} " in archived for i in range(50))
    assert "before" not in live
    assert live.endswith("INFO ucore.test.logs: after\n")


@pytest.mark.usefixtures("restore_root_logger")
async def test_a_rename_that_fails_is_a_warning_and_the_live_log_stays(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, log_dir = await logs_app(apps)
    info = log_to(log_dir, "kept")
    (log_dir / "uexplorer.log").write_bytes(lines(100))
    real = rot.detach_for_rotation

    def refuse_ucore(path: Path, archive: Path) -> None:
        if path.name == "ucore.log":  # as an unwritable log dir would
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real(path, archive)

    monkeypatch.setattr(rot, "detach_for_rotation", refuse_ucore)
    result = await rotate(app, max_log_size_mb=0.001)
    info("still logging")

    assert result["rotated"] == 1  # the other log went on
    assert ours(log_dir, "uexplorer.log") == [f"uexplorer.log-{STAMP}.gz"]
    assert len(result["warnings"]) == 1
    assert result["warnings"][0].startswith("could not rotate ucore.log: [Errno 13]")
    text = (log_dir / "ucore.log").read_text()
    assert all(f"kept {i} " in text for i in range(50))
    assert text.endswith("INFO ucore.test.logs: still logging\n")


@pytest.mark.usefixtures("restore_root_logger")
async def test_a_compression_error_keeps_the_archive_for_the_next_run(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, log_dir = await logs_app(apps)
    info = log_to(log_dir, "rotated")
    real = zlib.compressobj

    class DiskFull:
        def compress(self, data: bytes) -> bytes:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> bytes:
            return b""

    monkeypatch.setattr(rot.zlib, "compressobj", lambda *args: DiskFull())
    result = await rotate(app, max_log_size_mb=0.001)
    info("still logging")

    stem = f"ucore.log-{STAMP}"
    assert (result["rotated"], result["compressed"]) == (1, 0)
    assert result["warnings"] == [f"could not compress {stem}: [Errno 28] No space left on device"]
    assert names(log_dir) == {stem, "ucore.log"}  # no temp file left
    assert all(f"rotated {i} " in (log_dir / stem).read_text() for i in range(50))
    assert (log_dir / "ucore.log").read_text().endswith("INFO ucore.test.logs: still logging\n")

    monkeypatch.setattr(rot.zlib, "compressobj", real)
    result = await rotate(app)
    assert (result["rotated"], result["compressed"]) == (0, 1)
    text = gzip.decompress((log_dir / f"{stem}.gz").read_bytes()).decode()
    assert all(f"rotated {i} " in text for i in range(50))


async def test_a_file_vanishing_mid_run_is_a_warning(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, log_dir = await logs_app(apps)
    (log_dir / "ucore.log").write_bytes(lines(100))
    (log_dir / "uexplorer.log").write_bytes(lines(100))
    real = rot.detach_for_rotation

    def and_delete(path: Path, archive: Path) -> None:
        real(path, archive)
        if path.name == "ucore.log":
            archive.unlink()  # someone else removed it

    monkeypatch.setattr(rot, "detach_for_rotation", and_delete)
    result = await rotate(app, max_log_size_mb=0.001)
    assert result["warnings"] == ["could not rotate ucore.log: it vanished during the run"]
    assert (result["rotated"], result["compressed"]) == (1, 1)
    assert names(log_dir) == {f"uexplorer.log-{STAMP}.gz"}


# -- the CLI and the summary ----------------------------------------------------------------
def test_cli_run_wait_json(ucore_cli: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    log_dir = data / "logs"
    log_dir.mkdir(parents=True)
    content = lines(3000)  # 195 KB
    (log_dir / "ucore.log").write_bytes(content)
    (log_dir / "other.log").write_bytes(content)
    proc = ucore_cli(
        "--data-dir",
        str(data),
        "maintenance",
        "run",
        "log_rotation",
        "--param",
        "max_log_size_mb=0.1",
        "--wait",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    task = json.loads(proc.stdout)
    assert task["state"] == "completed"
    assert task["progress"] == {"fraction": 1.0, "message": "done"}
    result = task["result"]
    assert (result["rotated"], result["compressed"], result["deleted"]) == (1, 1, 0)
    assert result["warnings"] == []
    assert result["log_dir"] == str(log_dir)
    (archive,) = ours(log_dir)
    # the CLI process logs into ucore.log itself: its own lines may come before or after
    archived = gzip.decompress((log_dir / archive).read_bytes())
    live = (log_dir / "ucore.log").read_bytes()
    assert archived.count(content) == 1
    assert content not in live
    assert (log_dir / "other.log").read_bytes() == content

    listed = ucore_cli("--data-dir", str(data), "maintenance", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [r for r in json.loads(listed.stdout) if r["name"] == "log_rotation"]
    assert row["last_result"].startswith("rotated 1 log, compressed 1, deleted 0 old archives")


def test_summary_in_words() -> None:
    assert rot.summary({"rotated": 0, "compressed": 0, "deleted": 0, "bytes_freed": 0}) == (
        "no log to rotate, nothing to compress or delete"
    )
    real = {"rotated": 2, "compressed": 2, "deleted": 1, "bytes_freed": 189_163_110}
    assert (
        rot.summary(real) == "rotated 2 logs, compressed 2, deleted 1 old archive, freed 180.4 MB"
    )
    dry = {"rotated": 1, "compressed": 3, "deleted": 4, "bytes_freed": 2048, "dry_run": True}
    assert rot.summary(dry) == (
        "would rotate 1 log, compress 3, delete 4 old archives, free 2.0 KB by deleting"
    )
