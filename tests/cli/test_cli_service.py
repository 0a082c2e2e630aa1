"""The CLI against a running service (``ucore run --no-live`` in the background).

docs/service.md: a submit or cancel from the CLI reaches the service within a second; ``--wait``
follows the service's run; SIGTERM is a graceful shutdown within grace + 2 s that records
running tasks ``interrupted`` and queues them again for the next start.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import pytest

GRACE = 1.0
#: a task submitted from the CLI starts within this (the idle service looks once a second)
PICKUP = 5.0


def test_submit_reaches_the_service_and_cancel_stops_it(ucore: Any, service: Any) -> None:
    service.start()
    r = ucore.ok("tasks", "submit", "sleep", "--param", "seconds=10")
    assert r.stderr == "", "no warning while a service runs: " + r.describe()
    task_id = int(r.stdout)

    running = ucore.wait_state(task_id, {"running"}, PICKUP)
    assert running["node"]["pid"] == service.pid
    assert running["started_at"] is not None and running["finished_at"] is None
    listed = ucore.ok("tasks", "list", "--state", "running", "--json").json()
    assert [t["id"] for t in listed] == [task_id]

    cancel = ucore.ok("tasks", "cancel", str(task_id))
    asked = time.monotonic()
    assert str(task_id) in cancel.stdout
    done = ucore.wait_state(task_id, {"cancelled", "completed", "failed"}, 3.0)
    took = time.monotonic() - asked
    assert done["state"] == "cancelled", done
    assert took <= 1.5, f"cancel took {took:.2f} s to reach the service"
    assert [row["outcome"] for row in ucore.history(task_id)] == ["cancelled"]
    assert service.proc.poll() is None  # the service keeps running


def test_wait_follows_the_services_run(ucore: Any, service: Any) -> None:
    service.start()
    r = ucore("tasks", "submit", "sleep", "--param", "seconds=0.3", "--wait", "--json")
    assert r.returncode == 0, r.describe()
    doc = r.json()
    assert doc["state"] == "completed"
    assert doc["node"]["pid"] == service.pid != r.pid
    assert "in this process" not in r.stderr
    assert "no service" not in r.stderr.lower()
    runs = ucore.history(doc["id"])
    assert [(run["outcome"], run["node"]["pid"]) for run in runs] == [("completed", service.pid)]


def test_wait_on_a_task_cancelled_elsewhere_exits_1(ucore: Any, service: Any) -> None:
    service.start()
    waiter = ucore.popen("tasks", "submit", "sleep", "--param", "seconds=10", "--wait", "--json")
    try:

        def running_id() -> int | None:
            tasks = ucore.ok("tasks", "list", "--state", "running", "--json").json()
            return tasks[0]["id"] if tasks else None

        task_id = ucore.poll(running_id, timeout=PICKUP + 2, what="the task running")
        ucore.ok("tasks", "cancel", str(task_id))
        stdout, stderr = waiter.communicate(timeout=5)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 1, stderr
    doc = json.loads(stdout)
    assert (doc["id"], doc["state"]) == (task_id, "cancelled")
    assert doc["node"]["pid"] == service.pid
    assert [line for line in stderr.splitlines() if line.startswith("ucore:")] != []
    assert "Traceback" not in stderr


def test_sigterm_interrupts_a_running_task_and_requeues_it(ucore: Any, service: Any) -> None:
    ucore.write_config({"tasks": {"shutdown_grace_seconds": GRACE}})
    service.start()
    task_id = ucore.submit("sleep", "--param", "seconds=30")
    ucore.wait_state(task_id, {"running"}, PICKUP)

    code, took = service.terminate(timeout=GRACE + 10)
    assert code == 0, service.stderr()
    assert took <= GRACE + 2, f"the service took {took:.2f} s to stop"
    assert service.stdout() == ""
    assert "Traceback" not in service.stderr()

    doc = ucore.task(task_id)
    assert doc["state"] == "pending", doc
    assert doc["finished_at"] is None
    assert [row["outcome"] for row in ucore.history(task_id)] == ["interrupted"]


def test_an_interrupted_task_runs_again_at_the_next_start(ucore: Any, service: Any) -> None:
    # no maintenance runs beside the test's task (the task list must hold only it)
    ucore.write_config({"tasks": {"shutdown_grace_seconds": GRACE},
                        "maintenance": {"enabled": False}})
    service.start()
    first_pid = service.pid
    task_id = ucore.submit("sleep", "--param", "seconds=3")
    ucore.wait_state(task_id, {"running"}, PICKUP)
    time.sleep(0.8)

    code, took = service.terminate(timeout=GRACE + 10)
    assert code == 0 and took <= GRACE + 2, (code, took, service.stderr())
    assert ucore.task(task_id)["state"] == "pending"

    service.start()
    assert service.pid != first_pid
    done = ucore.wait_state(task_id, {"completed", "failed", "cancelled"}, PICKUP + 3 + 5)
    assert done["state"] == "completed", done
    assert done["node"]["pid"] == service.pid
    assert done["result"]["slept_seconds"] >= 3  # run again from the start
    runs = sorted(ucore.history(task_id), key=lambda row: row["started_at"])
    assert [(row["outcome"], row["node"]["pid"]) for row in runs] == [
        ("interrupted", first_pid),
        ("completed", service.pid),
    ]
    # the same task: no duplicate was queued
    assert [t["id"] for t in ucore.ok("tasks", "list", "--json").json()] == [task_id]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_as_soon_as_the_node_appears_is_a_graceful_stop(
    ucore: Any, service: Any, sig: signal.Signals
) -> None:
    # the node is registered while the service is still starting (later systems initialize
    # after it): a signal then must not kill it half-way. Poll fast to hit that window.
    service.start(interval=0.002)
    service.proc.send_signal(sig)
    assert service.proc.wait(timeout=12) == 0, service.stderr()
    assert "Traceback" not in service.stderr()
    assert service.stdout() == ""
    assert not service.node_rows(), "a graceful stop removes the service's node record"
    r = ucore.ok("tasks", "submit", "sleep")
    assert "no service" in r.stderr.lower()


def test_run_for_exits_by_itself(ucore: Any) -> None:
    start = time.monotonic()
    proc = ucore.popen("run", "--for", "1", "--no-live")
    try:
        stdout, stderr = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("ucore run --for 1 did not stop by itself") from None
    took = time.monotonic() - start
    assert proc.returncode == 0, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    assert 1.0 <= took < 5.0, took
    r = ucore.ok("tasks", "submit", "sleep")
    assert "no service" in r.stderr.lower()


def test_ctrl_c_on_a_runner_requeues_its_task(ucore: Any) -> None:
    waiter = ucore.popen("tasks", "submit", "sleep", "--param", "seconds=5", "--wait", "--json")
    try:

        def running() -> list[Any]:
            return list(ucore.ok("tasks", "list", "--state", "running", "--json").json())

        [task] = ucore.poll(running, timeout=10, what="the runner's task running")
        assert task["node"]["pid"] == waiter.pid
        waiter.send_signal(signal.SIGINT)
        stdout, stderr = waiter.communicate(timeout=5)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode in (1, 130), stderr  # 130: the shell's convention for Ctrl+C
    assert stdout == ""
    assert "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("ucore:")]) == 1, stderr
    # stopping the process is a shutdown, not a cancel: the task waits for its next run
    assert ucore.task(task["id"])["state"] == "pending"
    assert [row["outcome"] for row in ucore.history(task["id"])] == ["interrupted"]
