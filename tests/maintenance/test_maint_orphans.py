"""orphaned_cleanup (issue 9, Deliver 2; DESIGN.md §6.4) on real folders.

Every test scans a real tree under tmp_path into a library, changes the tree (files deleted,
folders emptied, renamed, replaced, mounted over, made unreadable) and runs the task through
the TaskSystem. Time is a FakeClock: grace periods are crossed by moving it, never by
sleeping. Every run also checks that no file of the libraries changed (a digest of each tree,
names, types, sizes, mtimes and contents, before and after).

Tests run as root here (CI does), and root ignores permission bits: an unreadable folder is
then simulated by making ``os.open`` of that path fail with EACCES in the two modules that
open folders (``ucore.fs.presence`` and ``ucore.fs.roots``); as another user ``chmod 000``
makes it real. A folder on another file system is a real tmpfs where mounting is permitted,
and otherwise (and also) a faked ``st_dev`` in ``ucore.fs.presence``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from maint_helpers import START, AppFactory, count, dump, finish, journal_of, run, wait_until
from PIL import Image

import ucore.fs.roots as roots_mod
import ucore.maintenance.run as run_mod
from ucore.app import App
from ucore.fs import presence
from ucore.fs.thumbnails import thumbnail_path
from ucore.stores.records import FileRecord, TaskState
from ucore.testing import FakeClock

TASK = "orphaned_cleanup"
HOUR = 3600.0
RESULT_KEYS = {"checked", "marked", "removed", "restored", "roots_skipped", "dry_run"}


# -- helpers ---------------------------------------------------------------------------------
def tree_digest(top: Path) -> str:
    """Every entry under ``top`` (not following symlinks): path bytes, type, size, mtime,
    and the bytes of each file or the target of each link."""
    h = hashlib.sha256()
    base = os.fsencode(top)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            h.update(os.path.relpath(path, base) + b"\0")
            h.update(f"{stat.S_IFMT(st.st_mode)} {st.st_size} {st.st_mtime_ns}\0".encode())
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path))
    return h.hexdigest()


def make_files(folder: Path, names: list[str], data: bytes = b"x") -> None:
    for rel in names:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data + rel.encode())


def write_raw(base: bytes, rel: bytes) -> None:
    """A file at a relative path given as bytes (any name the file system takes)."""
    path = os.path.join(base, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(rel)


def flat(prefix: str, n: int, ext: str = "txt") -> list[str]:
    return [f"{prefix}{i:03d}.{ext}" for i in range(n)]


class Lib:
    """One app on a FakeClock with library roots on real folders."""

    def __init__(self, app: App, clock: FakeClock, tmp: Path, db: Path) -> None:
        self.app = app
        self.db = db
        self.clock = clock
        self.tmp = tmp

    async def root(self, name: str, files: list[str]) -> tuple[int, Path]:
        """A folder ``tmp/name`` with these files, added as a root and scanned."""
        folder = self.tmp / name
        folder.mkdir(parents=True)
        make_files(folder, files)
        return await self.add(folder), folder

    async def add(self, folder: Path) -> int:
        root, created = await self.app.library.add_root(folder)
        assert created
        await self.scan(root.id)
        return root.id

    async def scan(self, root_id: int) -> None:
        record = await finish(self.app, await self.app.library.scan(root_id))
        assert record.state is TaskState.COMPLETED, record.error

    async def records(self, root_id: int) -> dict[str, FileRecord]:
        out: dict[str, FileRecord] = {}
        after = 0
        while batch := await self.app.library.files(root_id, after_id=after, limit=500):
            out.update((f.rel_path, f) for f in batch)
            after = batch[-1].id
        return out

    async def names(self, root_id: int) -> set[str]:
        return set(await self.records(root_id))

    async def marked(self, root_id: int) -> set[str]:
        return {k for k, r in (await self.records(root_id)).items() if r.missing_since}

    def digests(self) -> dict[Path, str]:
        return {p: tree_digest(p) for p in self.tmp.iterdir() if p.name != "data"}

    async def orphans(self, **params: Any) -> dict[str, Any]:
        """Run the task to its end; checks that it completed, that its result has the keys
        of the contract, that it wrote one journal entry, and that no file changed."""
        before = self.digests()
        record = await run(self.app, TASK, params)
        assert record.state is TaskState.COMPLETED, (record.error, record.traceback)
        result: dict[str, Any] = record.result
        assert set(result) >= RESULT_KEYS, result
        assert result["dry_run"] is bool(params.get("dry_run", False))
        entries = await journal_of(self.app, record.id, f"maintenance.{TASK}")
        assert len(entries) == 1, entries
        assert self.digests() == before, "a file of a library changed"
        result["task_id"] = record.id
        return result

    async def advance(self, hours: float) -> None:
        await self.clock.advance(hours * HOUR)


@pytest.fixture
async def lib(apps: AppFactory, tmp_path: Path) -> Lib:
    clock = FakeClock(START)
    return Lib(await apps(clock=clock), clock, tmp_path, apps.db_path)


def skipped(result: dict[str, Any]) -> dict[int, str]:
    return {s["root"]: s["reason"] for s in result["roots_skipped"]}


def unlink_all(folder: Path, names: list[str]) -> None:
    for rel in names:
        (folder / rel).unlink()


def empty_folder(folder: Path) -> None:
    """Remove everything in ``folder`` but hidden entries (the root's marker)."""
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class _OsProxy(types.ModuleType):
    """``os`` for one module, with some functions replaced."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def patch_os(
    monkeypatch: pytest.MonkeyPatch, modules: tuple[types.ModuleType, ...], **funcs: Any
) -> None:
    proxy = _OsProxy("os")
    for name, func in funcs.items():
        setattr(proxy, name, func)
    for module in modules:
        monkeypatch.setattr(module, "os", proxy)


Deny = Callable[[Path], None]


@pytest.fixture
def deny(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deny]:
    """``deny(path)``: the folder cannot be read (EACCES). Real (``chmod 000``) as another
    user; as root, ``os.open`` of that path fails in the modules that open folders."""
    denied: set[str] = set()
    chmodded: list[Path] = []
    if os.geteuid() == 0:
        real_open = os.open

        def fake_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            if kw.get("dir_fd") is None and os.fspath(path) in denied:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real_open(path, flags, mode, **kw)

        patch_os(monkeypatch, (presence, roots_mod), open=fake_open)

    def add(path: Path) -> None:
        if os.geteuid() == 0:
            denied.add(os.fspath(path))
        else:
            path.chmod(0)
            chmodded.append(path)

    yield add
    for path in reversed(chmodded):
        path.chmod(0o755)


OtherDevice = Callable[[Path], None]


@pytest.fixture
def other_device(monkeypatch: pytest.MonkeyPatch) -> OtherDevice:
    """``other_device(path)``: the folder at ``path`` and every folder below it report
    another ``st_dev`` to the presence probe (as a file system mounted there would)."""
    paths: set[str] = set()
    fds: set[int] = set()
    real_open, real_fstat, real_close = os.open, os.fstat, os.close

    def fake_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        fd = real_open(path, flags, mode, **kw)
        where = os.fspath(path)
        if kw.get("dir_fd") is None and any(where == p or where.startswith(p + "/") for p in paths):
            fds.add(fd)
        return fd

    def fake_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        if fd not in fds:
            return st
        fields = list(st[:10])
        fields[2] = st.st_dev + 4242
        return os.stat_result(fields)

    def fake_close(fd: int) -> None:
        fds.discard(fd)
        real_close(fd)

    patch_os(monkeypatch, (presence,), open=fake_open, fstat=fake_fstat, close=fake_close)
    return lambda path: paths.add(os.fspath(path))


Mount = Callable[..., None]


# -- roots skipped whole ---------------------------------------------------------------------
async def test_a_root_renamed_away_is_skipped_whole(lib: Lib) -> None:
    gone_id, gone = await lib.root("gone", flat("f", 10))
    ok_id, ok = await lib.root("ok", flat("f", 10))
    (ok / "f000.txt").unlink()  # the other root has work: the run is not a no-op
    gone.rename(lib.tmp / "gone-moved")
    result = await lib.orphans(grace_hours=0)
    assert list(skipped(result)) == [gone_id]
    entry = result["roots_skipped"][0]
    assert entry["path"] == str(gone.resolve())
    assert "cannot open" in entry["reason"]
    assert await lib.names(gone_id) == set(flat("f", 10))  # untouched
    assert await lib.names(ok_id) == set(flat("f", 10)) - {"f000.txt"}
    assert (result["checked"], result["removed"]) == (10, 1)
    assert "1 root(s) skipped" in lib.app.maintenance.summarize(
        await lib.app.tasks.get(result["task_id"])
    )


async def test_a_root_emptied_with_its_marker_kept_is_skipped(lib: Lib) -> None:
    root_id, folder = await lib.root("lib", [*flat("f", 5), "sub/a.txt", "sub/deep/b.txt"])
    empty_folder(folder)
    assert [p.name for p in folder.iterdir()] == [".ucore-root"]
    result = await lib.orphans(grace_hours=0, force=True)  # force does not override this
    assert "empty" in skipped(result)[root_id]
    assert (result["checked"], result["marked"], result["removed"]) == (0, 0, 0)
    assert len(await lib.names(root_id)) == 7
    assert await lib.marked(root_id) == set()


async def test_a_root_replaced_by_an_empty_folder_is_skipped(lib: Lib) -> None:
    root_id, folder = await lib.root("lib", flat("f", 5))
    folder.rename(lib.tmp / "lib-old")
    folder.mkdir()  # an unmounted drive's mount point: no marker
    before = dump(lib.db)
    result = await lib.orphans(grace_hours=0, force=True)
    assert "marker is missing" in skipped(result)[root_id]
    assert dump(lib.db, skip_tasks=[result["task_id"]]) == before


async def test_a_root_replaced_by_another_full_folder_is_skipped(lib: Lib) -> None:
    root_id, folder = await lib.root("lib", flat("f", 5))
    folder.rename(lib.tmp / "lib-old")
    make_files(folder, ["f000.txt", "other.txt"])  # another drive with other files, no marker
    result = await lib.orphans(grace_hours=0, force=True)
    assert "marker is missing" in skipped(result)[root_id]
    assert await lib.names(root_id) == set(flat("f", 5))


async def test_an_unreadable_root_is_skipped(lib: Lib, deny: Deny) -> None:
    root_id, folder = await lib.root("lib", flat("f", 5))
    deny(folder)
    result = await lib.orphans(grace_hours=0, force=True)
    assert "permission denied" in skipped(result)[root_id].lower()
    assert await lib.names(root_id) == set(flat("f", 5))
    assert await lib.marked(root_id) == set()


# -- directories skipped (unknown) -----------------------------------------------------------
async def test_a_folder_emptied_where_it_had_records_is_unknown(lib: Lib) -> None:
    """An unmounted sub-folder mount point: empty now, where it had records."""
    files = [*flat("top", 10), *[f"mnt/m{i}.txt" for i in range(3)], "other/o.txt"]
    root_id, folder = await lib.root("lib", files)
    empty_folder(folder / "mnt")
    (folder / "other" / "o.txt").unlink()
    (folder / "other" / "keep.txt").write_text("the folder is not empty: o.txt is gone")
    result = await lib.orphans(grace_hours=0)
    assert result["unknown"] == 3
    assert [(d["path"], d["root"]) for d in result["dirs_skipped"]] == [("mnt", root_id)]
    assert "empty" in result["dirs_skipped"][0]["reason"]
    assert (result["checked"], result["removed"]) == (11, 1)
    names = await lib.names(root_id)
    assert {f"mnt/m{i}.txt" for i in range(3)} <= names
    assert "other/o.txt" not in names


async def test_an_emptied_folder_with_only_subfolders_of_records_is_unknown(lib: Lib) -> None:
    """The mount point had no files of its own, only folders with records: unknown, not
    gone (its subfolders do not exist in an empty folder)."""
    files = [*flat("top", 10), "mnt/a/x.txt", "mnt/a/b/y.txt", "mnt/c/z.txt"]
    root_id, folder = await lib.root("lib", files)
    empty_folder(folder / "mnt")
    result = await lib.orphans(grace_hours=0, force=True)
    assert (result["checked"], result["unknown"]) == (10, 3)
    assert (result["marked"], result["removed"]) == (0, 0)
    assert {d["path"] for d in result["dirs_skipped"]} == {"mnt/a", "mnt/a/b", "mnt/c"}
    assert all("mnt" in d["reason"] and "empty" in d["reason"] for d in result["dirs_skipped"])
    assert await lib.names(root_id) == set(files)


async def test_the_same_subfolders_gone_under_a_non_empty_folder_are_gone(lib: Lib) -> None:
    """The counterpart: their parent still has an entry, so they really are gone."""
    files = [*flat("top", 10), "mnt/a/x.txt", "mnt/a/b/y.txt", "mnt/c/z.txt"]
    root_id, folder = await lib.root("lib", files)
    empty_folder(folder / "mnt")
    (folder / "mnt" / "README").write_text("still here")
    result = await lib.orphans(grace_hours=0)
    assert (result["checked"], result["unknown"], result["removed"]) == (13, 0, 3)
    assert await lib.names(root_id) == set(flat("top", 10))


async def test_a_folder_now_on_another_device_is_unknown(
    lib: Lib, other_device: OtherDevice
) -> None:
    files = [*flat("top", 10), "photos/a.jpg", "photos/b.jpg", "photos/sub/c.jpg"]
    root_id, folder = await lib.root("lib", files)
    (folder / "photos" / "a.jpg").unlink()  # would be gone, were the folder trusted
    other_device(folder / "photos")
    result = await lib.orphans(grace_hours=0, force=True)
    assert (result["checked"], result["unknown"], result["removed"]) == (10, 3, 0)
    by_path = {d["path"]: d["reason"] for d in result["dirs_skipped"]}
    assert "another file system" in by_path["photos"]
    assert "another file system" in by_path["photos/sub"]
    assert await lib.names(root_id) == set(files)


async def test_a_recorded_folder_mounted_over_is_unknown(lib: Lib, mount: Mount) -> None:
    files = [*flat("top", 10), "photos/a.jpg", "photos/b.jpg", "photos/sub/c.jpg"]
    root_id, folder = await lib.root("lib", files)
    mount(folder / "photos")  # hides the recorded files: they are not gone
    (folder / "photos" / "on-the-mount.txt").write_text("another file system")
    result = await lib.orphans(grace_hours=0, force=True)
    assert (result["checked"], result["unknown"], result["removed"]) == (10, 3, 0)
    by_path = {d["path"]: d["reason"] for d in result["dirs_skipped"]}
    assert "another file system" in by_path["photos"]
    assert await lib.names(root_id) == set(files)


async def test_an_unreadable_folder_is_unknown(lib: Lib, deny: Deny) -> None:
    files = [*flat("top", 10), "private/a.txt", "private/b.txt", "private/in/c.txt"]
    root_id, folder = await lib.root("lib", files)
    (folder / "private" / "a.txt").unlink()
    deny(folder / "private" / "in")  # as root a path is not denied through its parent
    deny(folder / "private")
    result = await lib.orphans(grace_hours=0, force=True)
    assert (result["checked"], result["unknown"], result["removed"]) == (10, 3, 0)
    by_path = {d["path"]: d["reason"] for d in result["dirs_skipped"]}
    assert set(by_path) == {"private", "private/in"}
    assert "permission denied" in by_path["private"].lower()
    assert await lib.names(root_id) == set(files)


async def test_a_folder_gone_under_an_unreadable_parent_is_unknown(lib: Lib, deny: Deny) -> None:
    """Only "no such file" in a *readable* parent counts as gone."""
    files = [*flat("top", 10), "locked/sub/a.txt", "locked/sub/b.txt"]
    root_id, folder = await lib.root("lib", files)
    shutil.rmtree(folder / "locked" / "sub")
    (folder / "locked" / "x").write_text("x")
    deny(folder / "locked")
    result = await lib.orphans(grace_hours=0, force=True)
    assert (result["checked"], result["unknown"], result["removed"]) == (10, 2, 0)
    assert await lib.names(root_id) == set(files)


async def test_an_io_error_on_a_folder_is_unknown(
    lib: Lib, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [*flat("top", 10), "nfs/a.txt", "nfs/b.txt"]
    root_id, folder = await lib.root("lib", files)
    (folder / "nfs" / "a.txt").unlink()
    target = os.fspath(folder / "nfs")
    real_listdir = os.listdir
    opened: dict[int, str] = {}
    real_open = os.open

    def fake_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        fd = real_open(path, flags, mode, **kw)
        opened[fd] = os.fspath(path)
        return fd

    def fake_listdir(fd: Any = ".") -> list[str]:
        if isinstance(fd, int) and opened.get(fd) == target:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        return real_listdir(fd)

    patch_os(monkeypatch, (presence,), open=fake_open, listdir=fake_listdir)
    result = await lib.orphans(grace_hours=0, force=True)
    assert (result["checked"], result["unknown"], result["removed"]) == (10, 2, 0)
    assert await lib.names(root_id) == set(files)


async def test_a_folder_replaced_by_a_symlink_is_unknown(lib: Lib) -> None:
    """``photos`` becomes a symlink to a folder that holds the same names (and one fewer
    in its subfolder): nothing is followed, nothing is marked."""
    files = [*flat("top", 10), "photos/a.jpg", "photos/b.jpg", "photos/sub/c.jpg"]
    root_id, folder = await lib.root("lib", files)
    other = lib.tmp / "elsewhere"
    make_files(other, ["a.jpg", "b.jpg", "sub/unrelated.jpg"])
    shutil.rmtree(folder / "photos")
    (folder / "photos").symlink_to(other, target_is_directory=True)
    result = await lib.orphans(grace_hours=0, force=True)
    assert (result["checked"], result["unknown"]) == (10, 3)
    assert (result["marked"], result["removed"]) == (0, 0)
    assert {d["path"] for d in result["dirs_skipped"]} == {"photos", "photos/sub"}
    assert await lib.names(root_id) == set(files)
    assert await lib.marked(root_id) == set()


# -- what is gone ----------------------------------------------------------------------------
async def test_a_vanished_subtree_of_depth_three_is_removed(lib: Lib) -> None:
    deep = ["deep/x/1.txt", "deep/x/y/z/2.txt", "deep/x/y/z/3.txt", "deep/w/4.txt"]
    root_id, folder = await lib.root("lib", [*flat("top", 10), *deep])
    shutil.rmtree(folder / "deep")
    result = await lib.orphans(grace_hours=0)
    assert (result["checked"], result["unknown"], result["removed"]) == (14, 0, 4)
    assert result["roots_skipped"] == [] and result["dirs_skipped"] == []
    assert await lib.names(root_id) == set(flat("top", 10))


async def test_odd_names_are_matched_exactly(lib: Lib) -> None:
    """Names with invalid UTF-8 and newlines: present ones kept, a gone one removed."""
    folder = lib.tmp / "lib"
    folder.mkdir()
    base = os.fsencode(folder)
    odd = [b"bad\xff.txt", b"new\nline.txt", b"caf\xc3\xa9.txt", b"dir\xfe/in\nside\xfd.txt"]
    for raw in [*odd, b"gone\xfe\n.txt", b"dir\xfe/gone\xfa.txt", b"plain.txt"]:
        write_raw(base, raw)
    root_id = await lib.add(folder)
    assert len(await lib.names(root_id)) == 7
    os.unlink(os.path.join(base, b"gone\xfe\n.txt"))
    os.unlink(os.path.join(base, b"dir\xfe/gone\xfa.txt"))
    result = await lib.orphans(grace_hours=0)
    assert (result["checked"], result["removed"], result["unknown"]) == (7, 2, 0)
    assert await lib.names(root_id) == {os.fsdecode(r) for r in [*odd, b"plain.txt"]}


# -- the breaker -----------------------------------------------------------------------------
async def test_ninety_percent_gone_trips_the_breaker(lib: Lib) -> None:
    root_id, folder = await lib.root("lib", [*flat("a", 10), *flat("sub/b", 10)])
    ok_id, ok = await lib.root("ok", flat("c", 10))
    gone = [*flat("a", 9), *flat("sub/b", 9)]  # 18 of 20
    unlink_all(folder, gone)
    (ok / "c000.txt").unlink()
    before = await lib.records(root_id)
    result = await lib.orphans(grace_hours=0)
    reason = skipped(result)[root_id]
    assert "18 of 20" in reason and "90%" in reason and "force" in reason
    assert ok_id not in skipped(result)  # per root: the other root's 1 of 10 is removed
    assert (result["checked"], result["removed"], result["marked"]) == (30, 1, 0)
    assert await lib.records(root_id) == before  # nothing marked, nothing removed
    # with grace: nothing marked either
    result = await lib.orphans()
    assert root_id in skipped(result) and result["marked"] == 0
    assert await lib.marked(root_id) == set()
    # force overrides it for one run
    result = await lib.orphans(force=True)
    assert result["roots_skipped"] == [] and result["marked"] == 18
    assert await lib.marked(root_id) == set(gone)
    await lib.advance(25)
    result = await lib.orphans()  # marked and past the grace: still 90% gone, still skipped
    assert root_id in skipped(result) and result["removed"] == 0
    result = await lib.orphans(force=True)
    assert result["removed"] == 18
    assert await lib.names(root_id) == {"a009.txt", "sub/b009.txt"}


async def test_the_breaker_trips_only_above_the_fraction(lib: Lib) -> None:
    root_id, folder = await lib.root("lib", flat("f", 10))
    unlink_all(folder, flat("f", 5))  # exactly half: not more than 0.5
    result = await lib.orphans(grace_hours=0)
    assert result["roots_skipped"] == [] and result["removed"] == 5
    (folder / "f005.txt").unlink()  # 1 of 5 left gone: 20%
    result = await lib.orphans(grace_hours=0, max_missing_fraction=0.1)
    assert "1 of 5" in skipped(result)[root_id]
    assert len(await lib.names(root_id)) == 5


# -- two phases ------------------------------------------------------------------------------
async def test_grace_period_marks_then_removes(lib: Lib) -> None:
    root_id, folder = await lib.root("lib", [*flat("f", 10), "sub/a.txt", "sub/b.txt"])
    gone = ["f000.txt", "f001.txt", "sub/a.txt"]
    unlink_all(folder, gone)
    first = await lib.orphans()  # grace_hours 24 by default
    assert (first["checked"], first["marked"], first["removed"]) == (12, 3, 0)
    recs = await lib.records(root_id)
    assert len(recs) == 12  # kept
    assert {k for k, r in recs.items() if r.missing_since == START} == set(gone)
    assert await lib.marked(root_id) == set(gone)

    await lib.advance(23)
    second = await lib.orphans()
    assert (second["marked"], second["removed"], second["waiting"]) == (0, 0, 3)
    recs = await lib.records(root_id)
    assert len(recs) == 12
    assert all(recs[k].missing_since == START for k in gone)  # not moved by the second look

    await lib.advance(1.5)
    third = await lib.orphans()
    assert (third["marked"], third["removed"], third["waiting"]) == (0, 3, 0)
    assert await lib.names(root_id) == {*flat("f", 10), "sub/a.txt", "sub/b.txt"} - set(gone)
    assert await lib.marked(root_id) == set()


async def test_grace_hours_zero_removes_at_once(lib: Lib) -> None:
    root_id, folder = await lib.root("lib", flat("f", 10))
    unlink_all(folder, ["f003.txt", "f004.txt"])
    result = await lib.orphans(grace_hours=0)
    assert (result["marked"], result["removed"], result["waiting"]) == (0, 2, 0)
    assert await lib.names(root_id) == set(flat("f", 10)) - {"f003.txt", "f004.txt"}


async def test_a_file_that_came_back_clears_its_mark(lib: Lib) -> None:
    root_id, folder = await lib.root("lib", [*flat("f", 10), "sub/x.txt", "sub/y.txt"])
    moved = lib.tmp / "aside"
    moved.mkdir()
    (folder / "f002.txt").rename(moved / "f002.txt")
    (folder / "sub" / "x.txt").rename(moved / "x.txt")
    (folder / "f003.txt").unlink()
    result = await lib.orphans()
    assert result["marked"] == 3
    (moved / "f002.txt").rename(folder / "f002.txt")
    (moved / "x.txt").rename(folder / "sub" / "x.txt")
    await lib.advance(48)
    result = await lib.orphans()
    assert (result["restored"], result["removed"], result["marked"]) == (2, 1, 0)
    recs = await lib.records(root_id)
    assert set(recs) == {*flat("f", 10), "sub/x.txt", "sub/y.txt"} - {"f003.txt"}
    assert all(r.missing_since is None for r in recs.values())
    assert "2 back again" in lib.app.maintenance.summarize(
        await lib.app.tasks.get(result["task_id"])
    )


async def test_a_marked_record_in_a_folder_now_unknown_is_kept(lib: Lib) -> None:
    """Marked while its folder was readable; later the folder is an empty mount point:
    past the grace period it is neither removed nor restored."""
    root_id, folder = await lib.root("lib", [*flat("top", 10), "usb/a.txt", "usb/b.txt"])
    (folder / "usb" / "a.txt").unlink()
    assert (await lib.orphans())["marked"] == 1
    (folder / "usb" / "b.txt").unlink()  # now empty: unmounted?
    await lib.advance(100)
    result = await lib.orphans()
    assert (result["removed"], result["restored"], result["unknown"]) == (0, 0, 2)
    assert await lib.names(root_id) == {*flat("top", 10), "usb/a.txt", "usb/b.txt"}
    assert await lib.marked(root_id) == {"usb/a.txt"}


# -- thumbnails ------------------------------------------------------------------------------
async def test_removed_records_lose_their_thumbnails_and_no_other(lib: Lib) -> None:
    folder = lib.tmp / "lib"
    (folder / "sub").mkdir(parents=True)
    pictures = ["p0.png", "p1.png", "sub/p2.png", "sub/p3.png", "p4.png"]
    for i, rel in enumerate(pictures):
        Image.new("RGB", (24, 16), (40 * i, 0, 0)).save(folder / rel)
    make_files(folder, flat("doc", 6))
    root_id = await lib.add(folder)
    record = await finish(lib.app, await lib.app.library.generate_thumbnails())
    assert record.state is TaskState.COMPLETED, record.error
    cache = lib.app.library.cache_dir
    thumbs = {rel: thumbnail_path(cache, root_id, rel) for rel in pictures}
    assert all(p.is_file() for p in thumbs.values())
    kept = {rel: (p.read_bytes(), p.stat().st_mtime_ns) for rel, p in thumbs.items()}
    stray = thumbs["p0.png"].parent / ("0" * 64 + ".png")  # a thumbnail of nothing known
    stray.write_bytes(b"not ours to judge here")
    for rel in ("p1.png", "sub/p3.png", "doc000.txt"):
        (folder / rel).unlink()

    result = await lib.orphans(grace_hours=0)
    assert (result["removed"], result["thumbnails_removed"]) == (3, 2)
    assert not thumbs["p1.png"].exists() and not thumbs["sub/p3.png"].exists()
    for rel in ("p0.png", "sub/p2.png", "p4.png"):
        assert (thumbs[rel].read_bytes(), thumbs[rel].stat().st_mtime_ns) == kept[rel]
    assert stray.read_bytes() == b"not ours to judge here"
    assert await lib.names(root_id) == {"p0.png", "sub/p2.png", "p4.png", *flat("doc", 6)} - {
        "doc000.txt"
    }


async def test_marking_keeps_the_thumbnails(lib: Lib) -> None:
    folder = lib.tmp / "lib"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (0, 50 * i, 0)).save(folder / f"i{i}.png")
    root_id = await lib.add(folder)
    assert (await finish(lib.app, await lib.app.library.generate_thumbnails())).result
    thumb = thumbnail_path(lib.app.library.cache_dir, root_id, "i0.png")
    assert thumb.is_file()
    (folder / "i0.png").unlink()
    result = await lib.orphans()
    assert (result["marked"], result["thumbnails_removed"]) == (1, 0)
    assert thumb.is_file()
    await lib.advance(24)  # exactly the grace period: due
    result = await lib.orphans()
    assert (result["removed"], result["thumbnails_removed"]) == (1, 1)
    assert not thumb.exists()


# -- dry run ---------------------------------------------------------------------------------
async def test_dry_run_changes_nothing_and_reports_the_counts(lib: Lib, apps: AppFactory) -> None:
    _, folder = await lib.root("lib", [*flat("f", 20), "sub/a.txt", "sub/b.txt"])
    unlink_all(folder, ["f000.txt", "sub/a.txt"])
    before = dump(apps.db_path)
    result = await lib.orphans(dry_run=True)
    assert (result["checked"], result["marked"], result["removed"]) == (22, 2, 0)
    assert dump(apps.db_path, skip_tasks=[result["task_id"]]) == before
    again = await lib.orphans(dry_run=True, grace_hours=0)
    assert (again["marked"], again["removed"]) == (0, 2)
    assert dump(apps.db_path, skip_tasks=[result["task_id"], again["task_id"]]) == before
    # after a real marking run and the grace period: the dry run says what would go
    first = await lib.orphans()
    (folder / "f001.txt").unlink()
    await lib.advance(30)
    before = dump(apps.db_path)
    result = await lib.orphans(dry_run=True)
    assert (result["marked"], result["removed"], result["restored"]) == (1, 2, 0)
    assert dump(apps.db_path, skip_tasks=[result["task_id"]]) == before
    summary = lib.app.maintenance.summarize(await lib.app.tasks.get(result["task_id"]))
    assert "would remove 2" in summary and "would mark 1" in summary
    assert first["marked"] == 2
    assert count(apps.db_path, "SELECT count(*) FROM library_files") == 22


# -- cancel and time budget ------------------------------------------------------------------
class SlowLook:
    """Wraps ``PresenceProbe.look``: calls ``at(rel)`` in the worker thread before looking."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: Callable[[str], None]) -> None:
        real = presence.PresenceProbe.look

        def look(probe: presence.PresenceProbe, rel: str, inode: int | None = None) -> Any:
            at(rel)
            return real(probe, rel, inode)

        monkeypatch.setattr(presence.PresenceProbe, "look", look)


async def ten_folders(lib: Lib) -> tuple[int, Path, list[str]]:
    """10 folders d00..d09 of 4 files; one file gone in each."""
    files = [f"d{d:02d}/f{i}.txt" for d in range(10) for i in range(4)]
    root_id, folder = await lib.root("lib", files)
    gone = [f"d{d:02d}/f0.txt" for d in range(10)]
    unlink_all(folder, gone)
    return root_id, folder, gone


async def test_time_budget_applies_what_was_checked(
    lib: Lib, monkeypatch: pytest.MonkeyPatch
) -> None:
    root_id, _, gone = await ten_folders(lib)
    now = [5000.0]
    monkeypatch.setattr(run_mod, "time", types.SimpleNamespace(monotonic=lambda: now[0]))

    def at(rel: str) -> None:
        if rel == "d03":  # the budget runs out while d03 is listed: d00..d03 are done
            now[0] += 100.0

    SlowLook(monkeypatch, at)
    result = await lib.orphans(grace_hours=0, time_budget_seconds=10)
    assert result["partial"] is True
    assert any("time budget" in w for w in result["warnings"])
    assert (result["checked"], result["removed"]) == (16, 4)
    assert await lib.names(root_id) >= set(gone[4:])
    assert not await lib.names(root_id) & set(gone[:4])
    # the next run continues
    result = await lib.orphans(grace_hours=0, time_budget_seconds=1000)
    assert result["partial"] is False
    assert (result["checked"], result["removed"]) == (36, 6)
    assert not await lib.names(root_id) & set(gone)


async def test_cancel_stops_the_run_and_removes_nothing_unchecked(
    lib: Lib, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root_id, folder, gone = await ten_folders(lib)
    reached = threading.Event()
    go_on = threading.Event()

    def at(rel: str) -> None:
        if rel == "d03":
            reached.set()
            assert go_on.wait(30)

    SlowLook(monkeypatch, at)
    before = tree_digest(folder)
    task_id = await lib.app.tasks.submit(TASK, {"grace_hours": 0})
    await wait_until(reached.is_set, within=30, what="the check to reach d03")
    await lib.app.tasks.cancel(task_id)
    go_on.set()
    record = await finish(lib.app, task_id)
    assert record.state is TaskState.CANCELLED
    entries = await journal_of(lib.app, task_id, f"maintenance.{TASK}")
    assert len(entries) == 1 and "stopped" in entries[0].message
    names = await lib.names(root_id)
    assert set(gone[4:]) <= names  # not checked: never removed
    assert tree_digest(folder) == before


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_run_wait_json(ucore_cli: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = tmp_path / "lib"
    make_files(folder, [*flat("f", 10), "sub/a.txt", "sub/deep/b.txt"])

    def cli(*args: str) -> Any:
        proc = ucore_cli("--data-dir", str(data), *args, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        return json.loads(proc.stdout) if "--json" in args else proc.stdout

    root_id = int(cli("library", "add", str(folder)).strip())
    assert cli("library", "scan", str(folder), "--wait", "--json")["result"]["new"] == 12
    (folder / "f001.txt").unlink()
    shutil.rmtree(folder / "sub" / "deep")
    before = tree_digest(folder)
    task = cli("maintenance", "run", TASK, "--wait", "--json", "--param", "grace_hours=0")
    assert task["name"] == TASK and task["state"] == "completed"
    assert task["params"]["grace_hours"] == 0
    result = task["result"]
    assert (result["checked"], result["removed"], result["marked"]) == (12, 2, 0)
    assert result["roots_skipped"] == [] and result["dry_run"] is False
    assert tree_digest(folder) == before
    left = count(data / "ucore.db", "SELECT count(*) FROM library_files WHERE root_id = ?", root_id)
    assert left == 10


async def test_a_folder_below_a_symlinked_folder_is_unknown(lib: Lib) -> None:
    """``photos`` becomes a symlink to a folder that holds ``sub`` (not empty) but not
    ``sub/deep``; ``photos/sub`` has no records of its own, so it is first looked at as
    the parent of the gone ``photos/sub/deep``: reached through the symlink, it proves
    nothing, and the records below it are unknown, not gone."""
    files = [*flat("top", 10), "photos/a.jpg", "photos/sub/deep/c.jpg", "photos/sub/deep/d.jpg"]
    root_id, folder = await lib.root("lib", files)
    other = lib.tmp / "elsewhere"
    make_files(other, ["a.jpg", "sub/unrelated.jpg"])
    shutil.rmtree(folder / "photos")
    (folder / "photos").symlink_to(other, target_is_directory=True)
    result = await lib.orphans(grace_hours=0, force=True)
    assert (result["marked"], result["removed"]) == (0, 0)
    assert (result["checked"], result["unknown"]) == (10, 3)
    assert await lib.names(root_id) == set(files)


async def test_a_name_that_is_now_a_folder_or_a_symlink_is_present(lib: Lib) -> None:
    """Presence is by name: what the name is now is the next scan's business."""
    root_id, folder = await lib.root("lib", flat("f", 10))
    (folder / "f000.txt").unlink()
    (folder / "f000.txt").mkdir()
    (folder / "f001.txt").unlink()
    (folder / "f001.txt").symlink_to(lib.tmp / "nowhere")
    (folder / "f002.txt").unlink()
    result = await lib.orphans(grace_hours=0)
    assert (result["checked"], result["removed"]) == (10, 1)
    assert await lib.names(root_id) == set(flat("f", 10)) - {"f002.txt"}
