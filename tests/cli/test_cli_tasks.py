"""``ucore tasks`` without a service: submit, --wait (runner), list, show, history, --param.

DESIGN.md §7: stdout carries the command's output only, ``--json`` is exactly one JSON
document, ``tasks submit`` prints the id alone on one line, times are ISO 8601 UTC.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from ucore.cli.session import parse_params

#: the keys every task object has (DESIGN.md §7)
TASK_KEYS = {
    "id",
    "name",
    "state",
    "priority",
    "origin",
    "attempts",
    "submitted_at",
    "started_at",
    "finished_at",
    "progress",
    "result",
    "error",
}
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


def assert_iso_utc(value: Any) -> datetime:
    assert isinstance(value, str) and ISO_UTC.fullmatch(value), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    return parsed


def assert_task_object(doc: Any) -> None:
    assert isinstance(doc, dict), doc
    missing = TASK_KEYS - doc.keys()
    assert not missing, f"task object lacks {sorted(missing)}: {doc}"


def test_submit_prints_the_id_alone_and_warns_without_a_service(ucore: Any) -> None:
    r = ucore("tasks", "submit", "sleep", "--param", "seconds=0.1")
    assert r.returncode == 0, r.describe()
    assert re.fullmatch(r"[1-9]\d*\n", r.stdout), r.describe()
    assert "no service" in r.stderr.lower(), r.describe()
    assert "Traceback" not in r.stderr
    task_id = int(r.stdout)

    # the task is queued, waiting for a service; a second submit gets a new id
    doc = ucore.task(task_id)
    assert (doc["id"], doc["name"], doc["state"]) == (task_id, "sleep", "pending")
    assert doc["origin"] == "manual"
    assert doc["params"]["seconds"] == 0.1
    assert ucore.submit("sleep") > task_id


def test_submit_json_without_wait_prints_the_pending_task_object(ucore: Any) -> None:
    r = ucore.ok("tasks", "submit", "sleep", "--priority", "high", "--json")
    doc = r.json()
    assert_task_object(doc)
    assert (doc["state"], doc["priority"], doc["started_at"]) == ("pending", "high", None)
    assert_iso_utc(doc["submitted_at"])


def test_wait_without_a_service_runs_the_task_in_this_process(ucore: Any) -> None:
    r = ucore("tasks", "submit", "sleep", "--param", "seconds=0.1", "--wait", "--json")
    assert r.returncode == 0, r.describe()
    assert "Traceback" not in r.stderr
    doc = r.json()  # exactly one JSON document: progress went to stderr
    assert_task_object(doc)
    assert doc["state"] == "completed"
    assert doc["name"] == "sleep"
    assert doc["priority"] == "normal"
    assert doc["origin"] == "manual"
    assert doc["attempts"] == 1
    assert doc["error"] is None
    assert doc["result"] is not None
    assert doc["progress"]["fraction"] == pytest.approx(1.0)
    submitted = assert_iso_utc(doc["submitted_at"])
    started = assert_iso_utc(doc["started_at"])
    finished = assert_iso_utc(doc["finished_at"])
    assert submitted <= started < finished
    assert (finished - started).total_seconds() >= 0.1
    # runner mode: the CLI process itself ran it
    assert doc["node"]["pid"] == r.pid

    # the store agrees, and history holds the one attempt
    assert ucore.task(doc["id"])["state"] == "completed"
    runs = ucore.history(doc["id"])
    assert [(run["attempt"], run["outcome"]) for run in runs] == [(1, "completed")]
    assert runs[0]["node"]["pid"] == r.pid


def test_wait_without_json_prints_the_final_task(ucore: Any) -> None:
    r = ucore.ok("tasks", "submit", "sleep", "--param", "seconds=0", "--wait")
    assert re.search(r"^state:\s+completed$", r.stdout, re.MULTILINE), r.describe()
    assert re.search(r"^result:\s+\{", r.stdout, re.MULTILINE), r.describe()


def test_wait_on_a_failing_task_exits_1_and_still_prints_the_final_object(ucore: Any) -> None:
    r = ucore(
        "tasks", "submit", "sleep", "--param", "seconds=0.05", "--param", "fail=true",
        "--wait", "--json",
    )  # fmt: skip
    assert r.returncode == 1, r.describe()
    doc = r.json()
    assert_task_object(doc)
    assert doc["state"] == "failed"
    assert doc["error"] and "failed on purpose" in doc["error"]
    assert doc["result"] is None
    assert_iso_utc(doc["finished_at"])
    errors = r.error_lines()
    assert len(errors) == 1, r.describe()
    assert str(doc["id"]) in errors[0] and "failed" in errors[0]
    assert "Traceback" not in r.stderr

    runs = ucore.history(doc["id"])
    assert [run["outcome"] for run in runs] == ["failed"]
    assert runs[0]["error"] == doc["error"]


def test_list_show_and_history(ucore: Any) -> None:
    pending = ucore.submit("sleep", "--param", "seconds=5")
    done = ucore.ok("tasks", "submit", "sleep", "--param", "seconds=0", "--wait", "--json")
    failed = ucore("tasks", "submit", "sleep", "--param", "fail=true", "--param", "seconds=0",
                   "--wait", "--json")  # fmt: skip
    assert failed.returncode == 1, failed.describe()
    completed_id, failed_id = done.json()["id"], failed.json()["id"]
    assert pending < completed_id < failed_id

    def ids(*args: str) -> list[int]:
        doc = ucore.ok("tasks", "list", "--json", *args).json()
        assert isinstance(doc, list)
        for task in doc:
            assert_task_object(task)
        return [task["id"] for task in doc]

    assert ids() == [failed_id, completed_id, pending]  # newest first
    assert ids("--state", "pending") == [pending]
    assert ids("--state", "completed", "--state", "failed") == [failed_id, completed_id]
    assert ids("--name", "no_such_task") == []
    assert ids("--limit", "2", "--name", "sleep") == [failed_id, completed_id]

    shown = ucore.ok("tasks", "show", str(completed_id), "--json").json()
    assert_task_object(shown)
    assert (shown["id"], shown["state"]) == (completed_id, "completed")
    assert shown == done.json()

    rows = ucore.ok("tasks", "history", "--json").json()
    assert isinstance(rows, list)
    # one row per attempt: the pending task has none
    assert [(row["task_id"], row["outcome"]) for row in rows] == [
        (failed_id, "failed"),
        (completed_id, "completed"),
    ]
    for row in rows:
        assert_iso_utc(row["started_at"])
        assert_iso_utc(row["finished_at"])
        assert row["attempt"] == 1
    limited = ucore.ok("tasks", "history", "--limit", "1", "--json").json()
    assert [row["task_id"] for row in limited] == [failed_id]

    # the human forms print a header and one line per task / attempt
    table = ucore.ok("tasks", "list").stdout.splitlines()
    assert len(table) == 4 and table[0].split()[:2] == ["ID", "STATE"], table
    assert len(ucore.ok("tasks", "history").stdout.splitlines()) == 3


def test_param_values_are_json_when_they_parse(ucore: Any) -> None:
    r = ucore.ok(
        "tasks", "submit", "sleep", "--json",
        "--param", "seconds=1e-1", "--param", "fail=false", "--param", "time_budget_seconds=null",
    )  # fmt: skip
    params = r.json()["params"]
    assert params["seconds"] == 0.1 and isinstance(params["seconds"], float)
    assert params["fail"] is False
    assert params["time_budget_seconds"] is None

    # integers are numbers too
    assert (
        ucore.ok("tasks", "submit", "sleep", "--json", "--param", "seconds=2").json()["params"][
            "seconds"
        ]
        == 2
    )

    # a quoted JSON string stays a string, and so does text that is not JSON: the model refuses
    # both for a number / a bool, naming the key
    cases = (('seconds="0.5"', "seconds"), ("fail=True", "fail"))
    running = [(ucore.start("tasks", "submit", "sleep", "--param", p), key) for p, key in cases]
    for started, key in running:
        bad = started.result()
        assert bad.returncode == 2, bad.describe()
        assert key in bad.stderr and "Traceback" not in bad.stderr, bad.describe()


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("k=1", 1),
        ("k=2.5", 2.5),
        ("k=true", True),
        ("k=false", False),
        ("k=null", None),
        ("k=[1, 2]", [1, 2]),
        ('k=["a", true]', ["a", True]),
        ('k={"a": 1}', {"a": 1}),
        ('k="quoted"', "quoted"),
        ("k=plain text", "plain text"),
        ("k=a=b", "a=b"),
        ("k=", ""),
        ("k=[1, 2", "[1, 2"),
        # Python's json extensions and overflowing numbers are not JSON: kept as text
        ("k=NaN", "NaN"),
        ("k=-Infinity", "-Infinity"),
        ("k=1e400", "1e400"),
        ("k=[1e400]", "[1e400]"),
        ("k=99999999999999999999999", 99999999999999999999999),
    ],
)
def test_parse_params_json_else_string(item: str, value: Any) -> None:
    # the only in-process test here: the sleep task has no list parameter to show it through
    assert parse_params([item]) == {"k": value}
