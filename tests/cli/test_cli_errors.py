"""Exit codes and error lines of ``ucore`` (DESIGN.md §7).

2: anything wrong with the command line itself or with the config; 1: what went wrong while
doing it (an id not found, a refused cancel, a damaged or locked database). Errors are one clear
line on stderr, never a traceback, and stdout stays empty.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest


def assert_error(r: Any, code: int, *words: str, logs_allowed: bool = False) -> str:
    """Exit ``code``, nothing on stdout, one ``ucore: ...`` line on stderr naming ``words``.

    With ``logs_allowed``, log lines (stderr carries logs too) may come before it.
    """
    assert r.returncode == code, r.describe()
    assert r.stdout == "", r.describe()
    assert "Traceback" not in r.stderr, r.describe()
    lines = r.error_lines() if logs_allowed else r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ucore: "), r.describe()
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return str(lines[0])


#: (args, words the error line must contain): a bad command line, exit 2
USAGE_CASES = [
    (["nosuch"], ["nosuch"]),
    (["tasks", "list", "--bogus"], ["--bogus"]),
    (["--bogus", "tasks", "list"], ["--bogus"]),
    (["run", "--for", "soon"], ["soon"]),
    (["tasks", "submit", "no_such_task"], ["no_such_task"]),
    # bad --param: the message names the key
    (["tasks", "submit", "sleep", "--param", "seconds"], ["seconds"]),  # no '='
    (["tasks", "submit", "sleep", "--param", "seconds=abc", "--wait"], ["seconds"]),
    (["tasks", "submit", "sleep", "--param", "seconds=-1"], ["seconds"]),
    (["tasks", "submit", "sleep", "--param", "colour=1"], ["colour"]),  # unknown key
    # not JSON numbers (Python's NaN / Infinity, a float overflowing to inf): strings, refused
    (["tasks", "submit", "sleep", "--param", "seconds=Infinity"], ["seconds"]),
    (["tasks", "submit", "sleep", "--param", "seconds=1e400"], ["seconds"]),
    # an id must be a whole number > 0
    (["tasks", "show", "abc"], ["abc"]),
    (["tasks", "cancel", "abc"], ["abc"]),
    (["tasks", "cancel", "0"], ["0"]),
    (["tasks", "show", "99999999999999999999999"], ["too large"]),
]

#: commands run on a database file full of garbage: exit 1
DAMAGED_CASES = [
    ["tasks", "list", "--json"],
    ["tasks", "show", "1"],
    ["tasks", "submit", "sleep", "--wait"],
    ["tasks", "history"],
]
#: how many CLI processes the module fixtures run at the same time
AT_ONCE = 4
GARBAGE = b"this is not a database\n" * 400


@pytest.fixture(scope="module")
def usage_results(ucore_factory: Any) -> list[Any]:
    """Every case of USAGE_CASES, each on a fresh data dir, a few at a time."""
    results = []
    for first in range(0, len(USAGE_CASES), AT_ONCE):
        running = [ucore_factory().start(*args) for args, _ in USAGE_CASES[first : first + AT_ONCE]]
        results += [r.result() for r in running]
    return results


@pytest.fixture(scope="module")
def damaged_results(ucore_factory: Any) -> list[tuple[Any, Any]]:
    """(cli, result) of every DAMAGED_CASES command, each on its own damaged database."""
    started = []
    for args in DAMAGED_CASES:
        cli = ucore_factory()
        cli.data_dir.mkdir(parents=True)
        cli.db.write_bytes(GARBAGE)
        started.append((cli, cli.start(*args)))
    return [(cli, r.result()) for cli, r in started]


@pytest.mark.parametrize("case", range(len(USAGE_CASES)), ids=lambda i: " ".join(USAGE_CASES[i][0]))
def test_bad_command_line_is_exit_2(usage_results: list[Any], case: int) -> None:
    assert_error(usage_results[case], 2, *USAGE_CASES[case][1])


def test_bad_params_queue_nothing(ucore: Any) -> None:
    bad = [ucore.start("tasks", "submit", "sleep", "--param", p) for p in ("x=1", "seconds=a")]
    assert [r.result().returncode for r in bad] == [2, 2]
    assert ucore.ok("tasks", "list", "--json").json() == []


def test_unknown_id_is_exit_1(ucore: Any) -> None:
    ucore.submit("sleep")  # the database exists and holds another task
    show, cancel = ucore.start("tasks", "show", "999"), ucore.start("tasks", "cancel", "999")
    assert_error(show.result(), 1, "999")
    assert_error(cancel.result(), 1, "999")
    assert ucore.task(1)["state"] == "pending"


def test_cancel_a_pending_task_then_again(ucore: Any) -> None:
    task_id = ucore.submit("sleep", "--param", "seconds=5")
    doc = ucore.ok("tasks", "cancel", str(task_id), "--json").json()
    # no service: a pending task is cancelled at once
    assert (doc["id"], doc["state"]) == (task_id, "cancelled")
    assert ucore.task(task_id)["state"] == "cancelled"
    # a second cancel is refused: the task is already finished
    assert_error(ucore("tasks", "cancel", str(task_id)), 1, str(task_id))


def test_cancel_a_finished_task_is_exit_1_and_changes_nothing(ucore: Any) -> None:
    done = ucore.ok("tasks", "submit", "sleep", "--param", "seconds=0", "--wait", "--json").json()
    line = assert_error(ucore("tasks", "cancel", str(done["id"])), 1, str(done["id"]))
    assert "completed" in line
    after = ucore.task(done["id"])
    assert after["state"] == "completed"
    assert after == done


@pytest.mark.parametrize(
    "case", range(len(DAMAGED_CASES)), ids=lambda i: " ".join(DAMAGED_CASES[i])
)
def test_damaged_database_is_one_line_and_exit_1(
    damaged_results: list[tuple[Any, Any]], case: int
) -> None:
    cli, r = damaged_results[case]
    line = assert_error(r, 1, "database")
    assert str(cli.db) in line or "damaged" in line
    # nothing lost: the file is left exactly as it was
    assert cli.db.read_bytes() == GARBAGE


def test_locked_database_is_one_line_and_exit_1(ucore: Any) -> None:
    ucore.write_config({"database": {"busy_timeout_seconds": 0.3}})
    task_id = ucore.submit("sleep")
    holder = sqlite3.connect(ucore.db, isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        r = ucore("tasks", "submit", "sleep", timeout=20)
        # the store logs its retries (WARNING) before giving up: logs may go to stderr
        assert_error(r, 1, "locked", logs_allowed=True)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # nothing lost, nothing half-written
    assert [t["id"] for t in ucore.ok("tasks", "list", "--json").json()] == [task_id]


def test_invalid_json_config_is_exit_2(ucore: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    running = [
        ucore.start(*args)
        for args in (
            ["--config", str(bad), "tasks", "list"],
            ["tasks", "list", "--config", str(bad)],
            ["--config", str(bad), "tasks", "submit", "sleep"],
            ["--config", str(bad), "run", "--for", "1", "--no-live"],
        )
    ]
    for r in running:
        line = assert_error(r.result(), 2, str(bad))
        assert "config" in line
    assert not ucore.db.exists()  # nothing done with a bad config


def test_config_in_the_data_dir_with_a_bad_value_is_exit_2(ucore: Any) -> None:
    ucore.write_config({"tasks": {"shutdown_grace_seconds": -1}})
    assert_error(ucore("tasks", "list"), 2, "tasks.shutdown_grace_seconds")
    ucore.write_config({"tasks": {"shutdown_grace_secs": 1}})
    assert_error(ucore("tasks", "list"), 2, "shutdown_grace_secs")


def test_missing_config_file_is_exit_2(ucore: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert_error(ucore("--config", str(missing), "tasks", "list"), 2, str(missing))


def test_config_with_an_infinite_number_is_exit_2(ucore: Any) -> None:
    ucore.data_dir.mkdir(parents=True)
    (ucore.data_dir / "config.json").write_text('{"tasks": {"shutdown_grace_seconds": 1e400}}')
    assert_error(ucore("config", "check"), 2, "tasks.shutdown_grace_seconds")
