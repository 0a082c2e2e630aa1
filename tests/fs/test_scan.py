"""``library_scan``: incremental, safe with whatever the disk does meanwhile."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import time
from pathlib import Path

import pytest
from fs_fakes import patch_scandir
from fs_helpers import Lib, make_tree, write

import ucore.fs.scanner
from ucore.app import App
from ucore.fs.filter import LibraryFilter
from ucore.stores.records import ThumbState

TREE = {
    "photos/2020/a.jpg": b"a" * 10,
    "photos/2020/b.png": b"b" * 20,
    "photos/2021/c.jpg": b"c" * 30,
    "docs/readme.txt": b"hello",
    "docs/deep/er/notes.md": b"# notes",
    "music/song.mp3": b"mp3",
    "top.bin": b"\0" * 7,
}


async def test_first_scan_records_every_library_file(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", TREE)
    write(root / ".hidden.jpg")
    write(root / ".git" / "config")
    root_id = await lib.add(root)
    result = await lib.scan(root_id)
    assert (result["new"], result["changed"], result["vanished"], result["unchanged"]) == (
        len(TREE),
        0,
        0,
        0,
    )
    assert result["roots"][0]["status"] == "online" and result["roots"][0]["complete"]
    recs = await lib.records(root_id)
    assert set(recs) == set(TREE)
    a = recs["photos/2020/a.jpg"]
    st = os.stat(root / "photos/2020/a.jpg")
    assert (a.size, a.mtime_ns, a.kind) == (10, st.st_mtime_ns, "image")
    assert a.thumb_state is ThumbState.PENDING and a.missing_since is None
    assert recs["docs/readme.txt"].kind == "document"
    assert recs["docs/readme.txt"].thumb_state is ThumbState.NONE
    assert recs["music/song.mp3"].kind == "audio" and recs["top.bin"].kind == "other"
    root_rec = await lib.app.library.get_root(root_id)
    assert root_rec.last_scan_at is not None
    assert {d.path for d in await lib.app.store_dirs(root_id)} == {  # type: ignore[attr-defined]
        "",
        "photos",
        "photos/2020",
        "photos/2021",
        "docs",
        "docs/deep",
        "docs/deep/er",
        "music",
    }


@pytest.fixture(autouse=True)
def _dirs_helper(app: App) -> None:
    async def store_dirs(root_id: int) -> object:
        return await app.library.store.list_dirs(root_id)

    app.store_dirs = store_dirs  # type: ignore[attr-defined]


async def test_rescan_is_incremental(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", TREE)
    root_id = await lib.add(root)
    await lib.scan(root_id)
    before = await lib.records(root_id)
    await asyncio.sleep(0.01)
    (root / "photos/2020/a.jpg").write_bytes(b"A" * 11)  # size changed
    st = os.stat(root / "docs/readme.txt")
    os.utime(root / "docs/readme.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # mtime only
    (root / "music/song.mp3").unlink()  # vanished
    write(root / "photos/2021/new.jpg", b"new")  # new
    result = await lib.scan(root_id)
    assert (result["new"], result["changed"], result["vanished"], result["unchanged"]) == (
        1,
        2,
        1,
        len(TREE) - 3,
    )
    after = await lib.records(root_id)
    assert set(after) == set(TREE) - {"music/song.mp3"} | {"photos/2021/new.jpg"}
    assert after["photos/2020/a.jpg"].size == 11
    assert after["photos/2020/a.jpg"].id == before["photos/2020/a.jpg"].id
    for rel in ("photos/2020/b.png", "docs/deep/er/notes.md", "top.bin"):  # not rewritten
        assert after[rel].indexed_at == before[rel].indexed_at
    assert after["docs/readme.txt"].indexed_at > before["docs/readme.txt"].indexed_at
    again = await lib.scan(root_id)
    assert (again["new"], again["changed"], again["vanished"]) == (0, 0, 0)
    assert again["unchanged"] == len(after)


async def test_a_vanished_folder_takes_its_records_with_it(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", TREE)
    root_id = await lib.add(root)
    await lib.scan(root_id)
    shutil.rmtree(root / "docs")
    result = await lib.scan(root_id)
    assert result["vanished"] == 2 and result["roots"][0]["directories_removed"] == 3
    assert not any(p.startswith("docs/") for p in await lib.records(root_id))
    assert not any(
        d.path.startswith("docs")
        for d in await lib.app.store_dirs(root_id)  # type: ignore[attr-defined]
    )


async def test_unlistable_folder_keeps_its_records(lib: Lib, tmp_path: Path, deny: object) -> None:
    root = make_tree(tmp_path / "lib", TREE)
    root_id = await lib.add(root)
    await lib.scan(root_id)
    (root / "photos/2020/a.jpg").unlink()  # gone, but the folder cannot be read: unknown
    (root / "docs/readme.txt").unlink()  # gone in a readable folder
    deny(root / "photos", errno.EACCES)  # type: ignore[operator]
    result = await lib.scan(root_id)
    scan = result["roots"][0]
    assert {"path": "photos", "error": "Permission denied"} in scan["errors"]
    assert result["errors"] == 1 and result["vanished"] == 1
    recs = await lib.records(root_id)
    assert {"photos/2020/a.jpg", "photos/2020/b.png", "photos/2021/c.jpg"} <= set(recs)
    assert "docs/readme.txt" not in recs
    assert scan["complete"]


async def test_an_entry_that_cannot_be_examined_is_kept(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "lib", {"a.txt": b"a", "b.txt": b"b"})
    root_id = await lib.add(root)
    await lib.scan(root_id)
    patch_scandir(monkeypatch, {"a.txt": lambda e: OSError(errno.EIO, "Input/output error")})
    result = await lib.scan(root_id)
    assert result["vanished"] == 0 and result["errors"] == 1
    assert set(await lib.records(root_id)) == {"a.txt", "b.txt"}


async def test_files_vanishing_during_a_scan(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "lib", {"keep.txt": b"k", "gone.txt": b"g", "sub/x.txt": b"x"})
    root_id = await lib.add(root)

    def vanish(name: str) -> None:  # after the listing, before the lstat of its entries
        if name == "gone.txt" and (root / "gone.txt").exists():
            (root / "gone.txt").unlink()

    with monkeypatch.context() as m:
        patch_scandir(m, {}, before_stat=vanish)
        result = await lib.scan(root_id)
    assert result["new"] == 2 and result["errors"] == 0
    assert result["roots"][0]["skipped"]["vanished"] == 1
    assert set(await lib.records(root_id)) == {"keep.txt", "sub/x.txt"}
    # and a recorded file that vanishes mid-scan is counted as vanished
    write(root / "gone.txt", b"again")
    await lib.scan(root_id)
    with monkeypatch.context() as m:
        patch_scandir(m, {}, before_stat=vanish)
        result = await lib.scan(root_id)
    assert result["vanished"] == 1 and result["errors"] == 0
    assert set(await lib.records(root_id)) == {"keep.txt", "sub/x.txt"}


async def test_symlinks_fifos_and_loops_are_never_indexed(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", {"real.txt": b"r", "d/in.txt": b"i"})
    outside = make_tree(tmp_path / "outside", {f"o{i}.txt": b"o" for i in range(5)})
    os.symlink(outside, root / "out")
    os.symlink(outside / "o1.txt", root / "d" / "o1.txt")
    os.symlink(root, root / "d" / "loop")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.mkfifo(root / "d" / "fifo.txt")
    root_id = await lib.add(root)
    result = await asyncio.wait_for(lib.scan(root_id), 30)
    assert set(await lib.records(root_id)) == {"real.txt", "d/in.txt"}
    skipped = result["roots"][0]["skipped"]
    assert skipped["symlinks"] == 5 and skipped["special"] == 1


async def test_non_utf8_names_round_trip(lib: Lib, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    names = [b"caf\xe9.jpg", b"\xff\xfe/inner-\x80.txt", b"plain.txt", "ünïcode.txt".encode()]
    for raw in names:
        write(root / os.fsdecode(raw), raw)
    root_id = await lib.add(root)
    first = await lib.scan(root_id)
    assert first["new"] == 4
    recs = await lib.records(root_id)
    assert {os.fsencode(p) for p in recs} == set(names)
    for rel, rec in recs.items():
        assert (root / rel).read_bytes() == os.fsencode(rel)  # the exact file, reachable
        assert rec.size == len(os.fsencode(rel))
    again = await lib.scan(root_id)
    assert (again["unchanged"], again["new"], again["vanished"]) == (4, 0, 0)
    (root / os.fsdecode(b"caf\xe9.jpg")).unlink()
    third = await lib.scan(root_id)
    assert third["vanished"] == 1
    assert {os.fsencode(p) for p in await lib.records(root_id)} == set(names) - {b"caf\xe9.jpg"}


async def test_folder_replaced_by_an_empty_one_keeps_its_records(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", TREE)
    root_id = await lib.add(root)
    await lib.scan(root_id)
    # a new, empty folder in its place (another inode: made before the old one is gone)
    os.rename(root / "photos", tmp_path / "photos-away")
    (root / "photos").mkdir()
    result = await lib.scan(root_id)
    kept = result["roots"][0]["kept"]
    assert kept == [{"path": "photos", "reason": "another, empty folder is here now"}]
    assert result["vanished"] == 0
    assert {"photos/2020/a.jpg", "photos/2021/c.jpg"} <= set(await lib.records(root_id))
    # emptied in place (the same folder): its files are gone for real
    for f in (root / "docs").rglob("*"):
        if f.is_file():
            f.unlink()
    result = await lib.scan(root_id)
    assert result["vanished"] == 2
    assert not any(p.startswith("docs/") for p in await lib.records(root_id))


async def test_root_replaced_by_an_empty_folder(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", TREE)
    root_id = await lib.add(root)
    await lib.scan(root_id)
    os.rename(root, tmp_path / "lib-away")
    root.mkdir()
    result = await lib.scan(root_id)
    assert result["unavailable"] == [root_id]
    assert result["roots"][0]["status"] == "replaced"
    assert "marker" in result["roots"][0]["reason"]
    assert len(await lib.records(root_id)) == len(TREE)
    infos = {i.root.id: i for i in await lib.app.library.roots()}
    assert infos[root_id].check.status.value == "replaced"
    assert infos[root_id].stats.files == len(TREE)
    # gone altogether: unavailable, records still kept
    root.rmdir()
    result = await lib.scan(root_id)
    assert result["roots"][0]["status"] == "unavailable"
    assert len(await lib.records(root_id)) == len(TREE)
    # back: online again, nothing changed
    os.rename(tmp_path / "lib-away", root)
    result = await lib.scan(root_id)
    assert (result["unchanged"], result["vanished"]) == (len(TREE), 0)


async def test_hidden_files_and_ignore_globs(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "lib",
        {
            "a.jpg": b"",
            "b.tmp": b"",
            ".h.jpg": b"",
            "cache/x.jpg": b"",
            "sub/.thumbs/y.jpg": b"",
            "sub/z.jpg": b"",
            "sub/cache/w.jpg": b"",
        },
    )
    root_id = await lib.add(root, ("*.tmp", "/cache"))
    result = await lib.scan(root_id)
    expected = {"a.jpg", "sub/z.jpg", "sub/cache/w.jpg"}
    assert set(await lib.records(root_id)) == expected
    assert result["roots"][0]["skipped"]["ignored"] == 2
    files, _, _ = LibraryFilter(root, ("*.tmp", "/cache")).count()
    infos = await lib.app.library.roots()
    assert infos[0].stats.files == files == len(expected)


async def test_cancel_stops_within_a_second(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lib"
    for i in range(300):
        write(root / f"d{i:03d}" / "f.txt", b"x")
    root_id = await lib.add(root)
    real = LibraryFilter.list_dir

    def slow(self: LibraryFilter, rel: str = "") -> object:
        time.sleep(0.01)
        return real(self, rel)

    monkeypatch.setattr(LibraryFilter, "list_dir", slow)
    task_id = await lib.app.library.scan(root_id)
    waiter = asyncio.create_task(lib.run(task_id))
    for _ in range(200):
        record = await lib.app.tasks.get(task_id)
        if record.state.value == "running" and record.progress:
            break
        await asyncio.sleep(0.02)
    asked = time.monotonic()
    await lib.app.tasks.cancel(task_id)
    final = await asyncio.wait_for(waiter, 10)
    assert final.state.value == "cancelled"
    assert time.monotonic() - asked < 1.0
    entries = await lib.app.library.journal.entries(kind="library.scan")
    assert entries[0].task_id == task_id and "cancelled" in entries[0].message
    recorded = len(await lib.records(root_id))
    assert 0 < recorded < 300  # what was written is kept, consistently
    monkeypatch.setattr(LibraryFilter, "list_dir", real)
    result = await lib.scan(root_id)
    assert result["new"] == 300 - recorded and len(await lib.records(root_id)) == 300


async def test_time_budget_gives_a_partial_result(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lib"
    for i in range(100):
        write(root / f"d{i:03d}" / "f.txt", b"x")
    root_id = await lib.add(root)
    real = LibraryFilter.list_dir

    def slow(self: LibraryFilter, rel: str = "") -> object:
        time.sleep(0.01)
        return real(self, rel)

    monkeypatch.setattr(LibraryFilter, "list_dir", slow)
    result = await lib.scan(root_id, time_budget_seconds=0.2)
    assert result["partial"] is True
    assert result["roots"][0]["complete"] is False
    assert 0 < result["new"] < 100
    assert (await lib.app.library.get_root(root_id)).last_scan_at is None


async def test_scan_queues_thumbnails_once_and_writes_the_journal(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", {"a.jpg": b"x", "b.txt": b"y"})
    root_id = await lib.add(root)
    first = await lib.scan(root_id)
    second = await lib.scan(root_id)
    assert first["thumbnails_task"] is not None
    assert second["thumbnails_task"] == first["thumbnails_task"]  # unique: not queued twice
    task = await lib.app.tasks.get(first["thumbnails_task"])
    assert (task.name, task.priority.label, task.state.value) == (
        "thumbnails_generate",
        "low",
        "pending",
    )
    entries = await lib.app.library.journal.entries(kind="library.scan")
    assert len(entries) == 2
    assert (
        entries[1].message == f"scan of root {root_id}: 2 new, 0 changed, 0 vanished, 0 unchanged"
    )
    assert entries[1].data["new"] == 2
    no_images = make_tree(tmp_path / "docs", {"x.txt": b""})
    other = await lib.add(no_images)
    assert (await lib.scan(other))["thumbnails_task"] is None  # nothing waits in that root


async def test_many_files_in_one_folder_span_batches(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ucore.fs.scanner, "BATCH_ROWS", 50)
    root = tmp_path / "lib"
    for i in range(230):
        write(root / "big" / f"f{i:03d}.txt", b"x" * (i % 7))
    root_id = await lib.add(root)
    first = await lib.scan(root_id)
    assert first["new"] == 230
    for i in range(0, 230, 3):
        (root / "big" / f"f{i:03d}.txt").unlink()
    result = await lib.scan(root_id)
    assert result["vanished"] == 77 and result["unchanged"] == 153
    assert len(await lib.records(root_id)) == 153
    assert (await lib.scan(root_id))["unchanged"] == 153


async def test_removing_a_root_during_its_scan(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lib"
    for i in range(40):
        write(root / f"d{i:02d}" / "f.txt")
    root_id = await lib.add(root)
    monkeypatch.setattr(ucore.fs.scanner, "BATCH_ROWS", 5)
    real = LibraryFilter.list_dir
    loop = asyncio.get_running_loop()
    calls = 0

    def remove_midway(self: LibraryFilter, rel: str = "") -> object:
        nonlocal calls
        calls += 1
        if calls == 10:
            asyncio.run_coroutine_threadsafe(lib.app.library.remove_root(root_id), loop).result()
        return real(self, rel)

    monkeypatch.setattr(LibraryFilter, "list_dir", remove_midway)
    result = await lib.scan(root_id)
    assert result["roots"][0]["status"] == "removed"
    assert await lib.app.library.store.list_dirs(root_id) == []


async def test_a_folder_restored_from_a_copy_is_adopted(lib: Lib, tmp_path: Path) -> None:
    """Same names, sizes and mtimes but another folder (inode): nothing changed, yet the new
    folder's identity is recorded, so that emptying it later counts as a deletion."""
    root = make_tree(tmp_path / "lib", TREE)
    root_id = await lib.add(root)
    await lib.scan(root_id)
    shutil.copytree(root / "docs", tmp_path / "docs-copy")  # copy2: mtimes kept
    os.rename(root / "docs", tmp_path / "docs-old")
    os.rename(tmp_path / "docs-copy", root / "docs")
    result = await lib.scan(root_id)
    assert (result["unchanged"], result["changed"], result["vanished"]) == (len(TREE), 0, 0)
    dirs = {d.path: d for d in await lib.app.library.store.list_dirs(root_id)}
    assert dirs["docs"].inode == os.stat(root / "docs").st_ino
    (root / "docs" / "readme.txt").unlink()
    (root / "docs" / "deep" / "er" / "notes.md").unlink()
    shutil.rmtree(root / "docs" / "deep")
    result = await lib.scan(root_id)
    assert result["vanished"] == 2 and result["roots"][0]["kept"] == []


async def test_a_stale_subtree_is_found_even_when_the_digest_matches(
    lib: Lib, tmp_path: Path
) -> None:
    """A folder's digest written, but the removal of a vanished subfolder's records not
    done (interrupted): the next scan must not take the folder as unchanged."""
    from ucore.fs.scanner import listing_digest

    root = make_tree(tmp_path / "lib", TREE)
    root_id = await lib.add(root)
    await lib.scan(root_id)
    shutil.rmtree(root / "docs" / "deep")
    digest = listing_digest(LibraryFilter(root).list_dir("docs"))
    db = lib.app.library.store.db  # type: ignore[attr-defined]
    await db.write(
        lambda c: c.execute(
            "UPDATE library_dirs SET digest = ? WHERE root_id = ? AND path = 'docs'",
            (digest, root_id),
        )
    )
    result = await lib.scan(root_id)
    assert result["vanished"] == 1 and result["roots"][0]["directories_removed"] == 2
    assert "docs/deep/er/notes.md" not in await lib.records(root_id)


async def test_an_interrupted_folder_loses_its_digest(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder whose changes span batches, interrupted between them: its old digest must
    not survive (it would let the next scan skip the folder with half its changes)."""
    root = tmp_path / "lib"
    for i in range(20):
        write(root / "big" / f"old{i:02d}.txt")
    root_id = await lib.add(root)
    await lib.scan(root_id)
    store = lib.app.library.store
    assert {d.path: d.digest for d in await store.list_dirs(root_id)}["big"] is not None
    for i in range(120):
        write(root / "big" / f"new{i:03d}.txt")
    monkeypatch.setattr(ucore.fs.scanner, "BATCH_ROWS", 50)
    real = type(store).apply_scan_batch
    calls = 0

    async def fail_second(self: object, batch: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.EIO, "simulated crash between two batches")
        return await real(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(type(store), "apply_scan_batch", fail_second)
    record = await lib.run(await lib.app.library.scan(root_id))
    assert record.state.value == "failed" and "simulated crash" in (record.error or "")
    assert calls == 2  # nothing more was written after the failed batch
    assert {d.path: d.digest for d in await store.list_dirs(root_id)}["big"] is None
    entry = (await lib.app.library.journal.entries(kind="library.scan"))[0]
    assert entry.task_id == record.id and "failed: " in entry.message
    monkeypatch.setattr(type(store), "apply_scan_batch", real)
    result = await lib.scan(root_id)
    assert len(await lib.records(root_id)) == 140 and result["vanished"] == 0
