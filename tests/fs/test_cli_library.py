"""``ucore library``, ``ucore journal`` and ``ucore demo`` from outside: the real console
script, stdout as the contract (one JSON document with --json), exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ucore.fs.filter import LibraryFilter

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(ucore_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> Cli:
    data = tmp_path / "data"

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = ucore_cli("--data-dir", str(data), *args, timeout=120)
        detail = f"ucore {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert proc.returncode == code, detail
        assert "Traceback" not in proc.stderr, detail
        if code:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("ucore:")]
            assert len(errors) == 1, detail  # one clear line
            assert proc.stdout == "", detail
        return proc

    return run


def doc(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)  # exactly one JSON document, or this fails


def test_the_new_users_path(cli: Cli, tmp_path: Path) -> None:
    """demo create -> library add -> scan -> list -> thumbnails -> journal -> remove."""
    demo = tmp_path / "demo"
    made = doc(cli("demo", "create", str(demo), "--files", "240", "--json"))
    assert made["files"] == 240 and made["images"] > 0 and made["documents"] > 0
    assert LibraryFilter(demo).count()[0] == 240

    added = cli("library", "add", str(demo))
    assert added.stdout.strip().isdigit()
    root_id = int(added.stdout)
    assert cli("library", "add", str(demo)).stdout == added.stdout  # already a root: same id

    queued = cli("library", "scan", str(demo))  # no --wait, no service: queued, its id alone
    assert queued.stdout.strip().isdigit() and "no service is running" in queued.stderr
    scan = doc(cli("library", "scan", str(demo), "--wait", "--json"))  # the same queued task
    assert scan["id"] == int(queued.stdout) and scan["state"] == "completed"
    assert scan["result"]["new"] == 240 and scan["result"]["unavailable"] == []
    assert scan["name"] == "library_scan"

    listed = doc(cli("library", "list", "--json"))
    assert isinstance(listed, list) and len(listed) == 1
    entry = listed[0]
    assert (entry["id"], entry["path"], entry["status"]) == (root_id, str(demo), "online")
    assert entry["files"] == 240 == LibraryFilter(demo).count()[0]
    assert entry["bytes"] == LibraryFilter(demo).count()[1]
    assert entry["thumbnails"] == {"done": 0, "pending": made["images"], "failed": 0, "evicted": 0}
    assert entry["last_scan"].endswith("Z")

    thumbs = doc(cli("library", "thumbnails", "--wait", "--json"))
    assert thumbs["state"] == "completed" and thumbs["result"]["generated"] == made["images"]
    table = cli("library", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "STATUS", "FILES"]
    assert f"{made['images']}/0/0" in table[1] and "online" in table[1]

    journal = doc(cli("journal", "--json"))
    kinds = [e["kind"] for e in journal]
    assert kinds == ["library.thumbnails", "library.scan", "library.add"]
    assert all(e["at"].endswith("Z") for e in journal)
    scans = doc(cli("journal", "--kind", "library.scan", "--limit", "5", "--json"))
    assert [e["task_id"] for e in scans] == [scan["id"]]
    assert len(doc(cli("journal", "--limit", "1", "--json"))) == 1
    assert "library.scan" in cli("journal").stdout

    removed = doc(cli("library", "remove", str(root_id), "--json"))
    assert removed["files_removed"] == 240 and removed["thumbnails_removed"] == made["images"]
    assert LibraryFilter(demo).count()[0] == 240  # files untouched
    assert doc(cli("library", "list", "--json")) == []
    cli("library", "remove", str(root_id), code=1)


def test_errors_and_exit_codes(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    err = cli("library", "scan", code=1).stderr
    assert "no library roots" in err
    assert "No such file" in cli("library", "add", str(tmp_path / "missing"), code=1).stderr
    cli("library", "add", str(folder), "--ignore", "*.tmp")
    assert "not a library root" in cli("library", "scan", str(tmp_path), code=1).stderr
    cli("library", "remove", "nope", code=2)
    cli("library", "remove", "0", code=2)
    cli("library", "frobnicate", code=2)
    cli("journal", "--limit", "-3", code=2)
    cli("demo", "create", str(tmp_path / "d"), "--files", "0", code=2)
    assert "not empty" in cli("demo", "create", str(folder), code=1).stderr
    assert "other ignore globs" in cli("library", "add", str(folder), code=1).stderr


def test_demo_library_is_exactly_n_library_files(tmp_path: Path) -> None:
    from PIL import Image

    from ucore.fs.demo import create_demo

    summary = create_demo(tmp_path / "demo", 1000, seed=3)
    files, _, errors = LibraryFilter(tmp_path / "demo").count()
    assert (files, errors) == (1000, [])
    assert summary.images + summary.documents + summary.other == 1000
    depth = {len(p.relative_to(tmp_path / "demo").parts) for p in (tmp_path / "demo").rglob("*")}
    assert max(depth) >= 4  # nested folders
    images = sorted((tmp_path / "demo").rglob("IMG_*"))
    assert len(images) == summary.images
    for path in images[:: max(1, len(images) // 10)]:
        with Image.open(path) as im:
            im.verify()  # a real image
    assert len({p.read_bytes() for p in images}) > 5  # varied content
