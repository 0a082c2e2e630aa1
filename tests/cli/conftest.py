"""Fixtures of the CLI tests: the real ``ucore`` console script, run as a subprocess.

* ``ucore``: runs ``ucore --data-dir DATA ARGS...`` with HOME in a temporary folder (and no
  UCORE_* / XDG_* variables), capturing stdout, stderr, the exit code and the pid of the
  process (so that a test can tell which process ran a task).
* ``service``: starts ``ucore run --no-live`` on the same data dir in the background, waits
  until its node is registered, and stops it with SIGTERM at teardown.

Nothing here imports ucore: the tests see the CLI only from outside.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ENV_DROP_PREFIXES = ("UCORE_", "XDG_")


def ucore_argv() -> list[str]:
    script = Path(sys.executable).parent / "ucore"
    assert script.is_file() and os.access(script, os.X_OK), f"console script missing: {script}"
    return [str(script)]


def poll(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    pid: int
    seconds: float

    def json(self) -> Any:
        """stdout as exactly one JSON document (fails the test otherwise)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:  # pragma: no cover - a failing test's message
            pytest.fail(f"stdout of {self.args} is not one JSON document ({exc}): {self.stdout!r}")

    def error_lines(self) -> list[str]:
        """The lines of stderr that the CLI wrote as its own errors (``ucore: ...``)."""
        return [line for line in self.stderr.splitlines() if line.startswith("ucore:")]

    def describe(self) -> str:
        return (
            f"ucore {' '.join(self.args)} -> {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


@dataclass
class Running:
    args: tuple[str, ...]
    proc: subprocess.Popen[str]
    started: float

    def result(self, timeout: float = 30) -> Result:
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
            pytest.fail(f"ucore {' '.join(self.args)} did not end in {timeout} s: {stderr}")
        return Result(
            self.args,
            self.proc.returncode,
            stdout,
            stderr,
            self.proc.pid,
            time.monotonic() - self.started,
        )


class Ucore:
    """Runs the real console script on one data dir, with an isolated HOME."""

    poll = staticmethod(poll)

    def __init__(self, home: Path, data_dir: Path) -> None:
        self.home = home
        self.data_dir = data_dir
        self.db = data_dir / "ucore.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_DROP_PREFIXES)}
        self.env["HOME"] = str(home)

    def argv(self, *args: str) -> list[str]:
        return [*ucore_argv(), "--data-dir", str(self.data_dir), *args]

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(
            self.argv(*args), env=self.env, text=True, stdin=subprocess.DEVNULL, **kwargs
        )

    def start(self, *args: str) -> Running:
        """Start ``ucore ARGS...``; ``.result()`` waits for it (to run several at once)."""
        return Running(args, self.popen(*args), time.monotonic())

    def __call__(self, *args: str, timeout: float = 30) -> Result:
        return self.start(*args).result(timeout)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.returncode == 0, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
        return result

    def write_config(self, doc: Any) -> Path:
        """DATA_DIR/config.json: picked up by every command on this data dir."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "config.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    # -- reading tasks through the CLI -----------------------------------------------------
    def submit(self, *args: str) -> int:
        out = self.ok("tasks", "submit", *args).stdout
        assert re.fullmatch(r"\d+\n", out), out
        return int(out)

    def task(self, task_id: int) -> dict[str, Any]:
        doc: dict[str, Any] = self.ok("tasks", "show", str(task_id), "--json").json()
        return doc

    def history(self, task_id: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.ok(
            "tasks", "history", "--task", str(task_id), "--json"
        ).json()
        return rows

    def wait_state(
        self, task_id: int, states: set[str] | frozenset[str], timeout: float
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            doc = self.task(task_id)
            return doc if doc["state"] in states else None

        found: dict[str, Any] = poll(
            check, timeout=timeout, interval=0.02, what=f"task {task_id} in {sorted(states)}"
        )
        return found


def make_ucore(root: Path) -> Ucore:
    """A CLI with HOME = ROOT/home and --data-dir ROOT/data."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return Ucore(home, root / "data")


@pytest.fixture
def ucore(tmp_path: Path) -> Ucore:
    return make_ucore(tmp_path)


@pytest.fixture(scope="module")
def ucore_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Ucore]:
    """New isolated CLIs (each its own HOME and data dir) for module-scoped fixtures."""

    def make() -> Ucore:
        return make_ucore(tmp_path_factory.mktemp("cli"))

    return make


class Service:
    """``ucore run --no-live`` in the background; ``start()`` again after ``stop()``."""

    def __init__(self, cli: Ucore, logs: Path) -> None:
        self.cli = cli
        self.logs = logs
        self.proc: subprocess.Popen[str] | None = None
        self.runs = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 15, interval: float = 0.05) -> Service:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        self.stdout_path = self.logs / f"service-{self.runs}.out"
        self.stderr_path = self.logs / f"service-{self.runs}.err"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.proc = self.cli.popen("run", "--no-live", stdout=out, stderr=err)
        poll(self._registered, timeout=timeout, interval=interval, what="the service's node")
        return self

    def _registered(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"the service exited with {self.proc.returncode}: {self.stderr()}")
        return bool(self.node_rows())

    def node_rows(self) -> list[tuple[str, ...]]:
        """The service's rows in the nodes table (read-only; [] while there is no table)."""
        assert self.proc is not None
        try:
            conn = sqlite3.connect(f"file:{self.cli.db}?mode=ro", uri=True, timeout=0.5)
        except sqlite3.Error:
            return []
        try:
            rows = conn.execute(
                "SELECT id, role FROM nodes WHERE pid = ? AND role = 'service'", (self.proc.pid,)
            ).fetchall()
        except sqlite3.Error:
            return []
        finally:
            conn.close()
        return list(rows)

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds until exit). Kills it after ``timeout``."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the service did not exit {timeout} s after SIGTERM")
        return code, time.monotonic() - start

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def service(ucore: Ucore, tmp_path: Path) -> Iterator[Service]:
    """The service on ``ucore``'s data dir: call ``service.start()``; stopped at teardown."""
    svc = Service(ucore, tmp_path)
    try:
        yield svc
    finally:
        svc.close()
