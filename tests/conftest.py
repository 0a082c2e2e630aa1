"""Fixtures shared by the test suite.

Tests must never read or write the real home directory or pick up a developer's UCORE_*
environment: ``isolated_home`` points HOME and the XDG directories at a temporary folder and
removes the UCORE_* variables; ``ucore_cli`` runs the real ``ucore`` console script in a
subprocess with the same isolation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

UCORE_ENV_VARS = ("UCORE_CONFIG", "UCORE_DATA_DIR", "UCORE_DATABASE_URL")
XDG_VARS = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME (XDG dirs unset, UCORE_* unset) for this test; returns it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in (*XDG_VARS, *UCORE_ENV_VARS):
        monkeypatch.delenv(var, raising=False)
    return home


def ucore_command() -> list[str]:
    """argv prefix of the installed console script (or the module, if it is not installed)."""
    script = Path(sys.executable).parent / "ucore"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "ucore.cli.main"]


RunUcore = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ucore_cli(tmp_path: Path) -> RunUcore:
    """Run ``ucore ARGS...`` with HOME in tmp_path; ``env`` adds variables."""
    home = tmp_path / "cli-home"
    home.mkdir(exist_ok=True)

    def run(
        *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            k: v for k, v in os.environ.items() if k not in UCORE_ENV_VARS and k not in XDG_VARS
        }
        full_env["HOME"] = str(home)
        full_env.update(env or {})
        return subprocess.run(
            [*ucore_command(), *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )

    return run


def _quiet(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``mount(target, source=None)``: a fresh 8 MiB tmpfs at ``target`` (a folder, made if
    missing), or ``source`` bind-mounted on ``target``; all unmounted (lazily) at teardown.
    Skipped unless this is root with mount(8) and mounting a tmpfs is permitted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting needs root and mount(8)")
    probe = tmp_path / "mount-probe"
    probe.mkdir()
    if _quiet("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(probe)).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    _quiet("umount", str(probe))
    probe.rmdir()
    mounted: list[Path] = []

    def do(target: Path, source: Path | None = None) -> None:
        if source is None:
            target.mkdir(parents=True, exist_ok=True)
            proc = _quiet("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(target))
        else:
            proc = _quiet("mount", "--bind", str(source), str(target))
        assert proc.returncode == 0, proc.stderr
        mounted.append(target)

    yield do
    for target in reversed(mounted):
        _quiet("umount", "-l", str(target))
