"""Logging (DESIGN.md §1, §6.5): one log file shared by processes and threads, rotated by rename.

The main test runs two writer processes with four threads each, all appending numbered lines
through ``SharedFileHandler`` to one file, while this process renames the file away several
times with ``detach_for_rotation``. Afterwards every line must be found exactly once across the
archives and the current file, whole, and no archive may grow after it was detached.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ucore.foundation.logs import SharedFileHandler, detach_for_rotation, setup_logging

PROCS = 2
THREADS = 4
ROTATIONS = 20
PAD = 100

# One writer process: THREADS threads log "<proc> <thread> <seq> <pad>|" until the stop file
# appears (or a time limit passes), then print how many lines each thread wrote.
WRITER = r"""
import json, logging, sys, threading, time
from pathlib import Path
from ucore.foundation.logs import SharedFileHandler

path, proc, nthreads, stop = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
pad = "." * int(sys.argv[5])
handler = SharedFileHandler(path)
handler.setFormatter(logging.Formatter("%(message)s"))
failures = []
def handle_error(record):
    failures.append(repr(sys.exc_info()[1]))
handler.handleError = handle_error
logger = logging.getLogger("writer")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False
counts = [0] * nthreads
limit = time.monotonic() + 30
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
handler.close()
print(json.dumps({"counts": counts, "failures": failures}))
"""

LINE = re.compile(rb"^(p\d) (\d+) (\d+) (\.+)\|$")


def wait_for(
    predicate: Callable[[], bool],
    what: str,
    procs: list[subprocess.Popen[str]],
    timeout: float = 10,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            if p.poll() is not None:
                _, err = p.communicate()
                pytest.fail(f"writer exited early ({p.returncode}) waiting for {what}: {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def has_lines_of_every_writer(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    return all(f"p{k} ".encode() in data for k in range(PROCS))


def test_processes_and_threads_lose_and_duplicate_nothing_across_rotations(
    tmp_path: Path,
) -> None:
    log = tmp_path / "ucore.log"
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log), f"p{k}", str(THREADS), str(stop), str(PAD)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(PROCS)
    ]
    archives: list[tuple[Path, int]] = []
    try:
        for n in range(ROTATIONS):
            # rotate only once every writer has written to the current file: each rotation
            # then happens under both processes while all their threads are writing
            wait_for(lambda: has_lines_of_every_writer(log), f"lines before rotation {n}", procs)
            archive = tmp_path / f"ucore.log.{n}"
            detach_for_rotation(log, archive)
            archives.append((archive, archive.stat().st_size))
        wait_for(lambda: has_lines_of_every_writer(log), "lines after the last rotation", procs)
    finally:
        stop.touch()
        results = [p.communicate(timeout=60) for p in procs]

    counts: dict[str, list[int]] = {}
    for k, (p, (out, err)) in enumerate(zip(procs, results, strict=True)):
        assert p.returncode == 0, err
        assert err == "", err
        report = json.loads(out)
        assert report["failures"] == []
        counts[f"p{k}"] = report["counts"]

    # nothing was written to an archive once detach_for_rotation returned
    for archive, size_at_detach in archives:
        assert archive.stat().st_size == size_at_detach, archive

    files = [a for a, _ in archives] + [log]
    seen: dict[tuple[str, int, int], int] = {}  # line -> index of the file it is in
    torn: list[bytes] = []
    for index, f in enumerate(files):
        data = f.read_bytes()
        assert data.endswith(b"\n"), f"{f} ends in a partial line"
        lines = data.split(b"\n")[:-1]
        assert lines, f"{f} is empty"
        for raw in lines:
            m = LINE.match(raw)
            if m is None or len(m.group(4)) != PAD:
                torn.append(raw)
                continue
            key = (m.group(1).decode(), int(m.group(2)), int(m.group(3)))
            assert key not in seen, f"duplicated line {key} in {files[seen[key]]} and {f}"
            seen[key] = index
    assert torn == [], f"{len(torn)} torn lines, e.g. {torn[:3]}"

    expected = {
        (proc, t, i)
        for proc, per_thread in counts.items()
        for t, n in enumerate(per_thread)
        for i in range(n)
    }
    missing = expected - set(seen)
    extra = set(seen) - expected
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} unexpected lines, e.g. {sorted(extra)[:5]}"
    assert all(n > 0 for per_thread in counts.values() for n in per_thread)

    # a writer never goes back to an older file: per thread, lines move forward file by file
    for proc, per_thread in counts.items():
        for t, n in enumerate(per_thread):
            where = [seen[(proc, t, i)] for i in range(n)]
            assert where == sorted(where), (proc, t)
    # and every process wrote into every archive (each rotation happened under both)
    for index, f in enumerate(files):
        assert {k[0] for k, i in seen.items() if i == index} == set(counts), f


# -- single-process behaviour -------------------------------------------------------------


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[SharedFileHandler]:
    h = SharedFileHandler(tmp_path / "logs" / "ucore.log")
    h.setFormatter(logging.Formatter("%(message)s"))
    (tmp_path / "logs").mkdir()
    yield h
    h.close()


def emit(h: SharedFileHandler, message: str) -> None:
    h.handle(logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None))


def test_new_log_file_is_private(handler: SharedFileHandler) -> None:
    old = os.umask(0)
    try:
        emit(handler, "first")
    finally:
        os.umask(old)
    assert stat.S_IMODE(handler.path.stat().st_mode) == 0o600
    assert handler.path.read_text() == "first\n"


def test_writer_whose_file_was_deleted_reopens(handler: SharedFileHandler) -> None:
    emit(handler, "one")
    handler.path.unlink()
    emit(handler, "two")
    assert handler.path.read_text() == "two\n"
    assert stat.S_IMODE(handler.path.stat().st_mode) == 0o600
    emit(handler, "three")
    assert handler.path.read_text() == "two\nthree\n"


def test_writer_follows_a_rename(handler: SharedFileHandler, tmp_path: Path) -> None:
    emit(handler, "before")
    archive = tmp_path / "logs" / "ucore.log.1"
    detach_for_rotation(handler.path, archive)
    emit(handler, "after")
    assert archive.read_text() == "before\n"
    assert handler.path.read_text() == "after\n"


def test_appends_to_an_existing_file(handler: SharedFileHandler) -> None:
    handler.path.write_text("kept\n")
    emit(handler, "added")
    assert handler.path.read_text() == "kept\nadded\n"


def test_non_utf8_safe_message(handler: SharedFileHandler) -> None:
    emit(handler, "caf\udce9 bad surrogate")
    assert handler.path.read_bytes() == b"caf\\udce9 bad surrogate\n"


def test_detach_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    """The rotator's exclusive lock waits until a writer holding the shared lock is done."""
    import fcntl

    log = tmp_path / "ucore.log"
    log.write_text("x\n")
    writer_fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(writer_fd, fcntl.LOCK_SH)  # a write "in flight"
    done = threading.Event()
    rotator = threading.Thread(
        target=lambda: (detach_for_rotation(log, tmp_path / "ucore.log.1"), done.set())
    )
    rotator.start()
    try:
        assert not done.wait(0.2), "detach_for_rotation returned while a write was in flight"
        assert not log.exists()  # renamed at once, though
        os.write(writer_fd, b"y\n")  # the in-flight write lands in the archive
    finally:
        fcntl.flock(writer_fd, fcntl.LOCK_UN)
        os.close(writer_fd)
    assert done.wait(5)
    rotator.join()
    assert (tmp_path / "ucore.log.1").read_text() == "x\ny\n"


def test_threads_of_one_process_share_a_handler(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    h = SharedFileHandler(path)
    h.setFormatter(logging.Formatter("%(message)s"))
    archive_count = 0

    def work(t: int) -> None:
        for i in range(300):
            emit(h, f"{t} {i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads) and archive_count < 5:
        if path.exists():
            detach_for_rotation(path, tmp_path / f"t.log.{archive_count}")
            archive_count += 1
        time.sleep(0.001)
    for th in threads:
        th.join()
    h.close()
    lines: list[str] = []
    for f in tmp_path.glob("t.log*"):
        lines += f.read_text().splitlines()
    assert sorted(lines) == sorted(f"{t} {i}" for t in range(4) for i in range(300))


# -- setup_logging --------------------------------------------------------------------------


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


@pytest.mark.usefixtures("restore_root_logger")
def test_setup_logging_to_stream_and_private_file(tmp_path: Path) -> None:
    stream = io.StringIO()
    log_file = tmp_path / "logs" / "ucore.log"
    setup_logging(logging.INFO, log_file=log_file, stream=stream)
    setup_logging(logging.INFO, log_file=log_file, stream=stream)  # again: replaces, no doubles
    logging.getLogger("ucore.test").info("hello %s", "there")
    logging.getLogger("ucore.test").debug("not shown")
    assert stream.getvalue().count("hello there") == 1
    assert "not shown" not in stream.getvalue()
    text = log_file.read_text()
    assert text.count("hello there") == 1
    assert " INFO ucore.test: hello there" in text
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_file.parent.stat().st_mode) == 0o700
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_ucore", False)]
    assert len(ours) == 2


@pytest.mark.usefixtures("restore_root_logger")
def test_setup_logging_without_file_logs_to_stream_only(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("WARNING", stream=stream)
    logging.getLogger("ucore.x").warning("careful")
    logging.getLogger("ucore.x").info("quiet")
    assert "careful" in stream.getvalue()
    assert "quiet" not in stream.getvalue()
    assert not any(isinstance(h, SharedFileHandler) for h in logging.getLogger().handlers)
