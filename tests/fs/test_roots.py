"""Roots: adding, volume identity (marker, file system UUID, device), status, removal."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import uuid
from pathlib import Path

import pytest
from fs_helpers import Lib, make_tree

import ucore.fs.roots
from ucore.fs.errors import RootPathError
from ucore.fs.roots import MARKER_NAME, RootStatus, check_root
from ucore.fs.thumbnails import thumbnail_path
from ucore.stores.base import MissingRootError


async def test_add_writes_a_marker_and_gives_an_id(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", {"a.txt": b"a"})
    rec, created = await lib.app.library.add_root(root)
    assert created and rec.id >= 1
    marker = (root / MARKER_NAME).read_text().strip()
    assert str(uuid.UUID(marker)) == marker == rec.marker
    assert rec.device == os.stat(root).st_dev and rec.inode == os.stat(root).st_ino
    assert rec.path == str(root)
    again, created_again = await lib.app.library.add_root(str(root) + "/")
    assert (again.id, created_again) == (rec.id, False)
    entries = await lib.app.library.journal.entries(kind="library.add")
    assert len(entries) == 1 and entries[0].data["root"] == rec.id


async def test_paths_that_cannot_be_roots(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", {"sub/a.txt": b"a"})
    (tmp_path / "file.txt").write_bytes(b"f")
    await lib.add(root, ("*.tmp",))
    cases = {
        tmp_path / "missing": "No such file",
        tmp_path / "file.txt": "not a folder",
        root / "sub": "inside library root",
        tmp_path: "holds library root",
    }
    for path, why in cases.items():
        with pytest.raises(RootPathError, match=why):
            await lib.app.library.add_root(path)
    with pytest.raises(RootPathError, match="other ignore globs"):
        await lib.app.library.add_root(root, ["*.bak"])
    with pytest.raises(RootPathError, match="ignore glob"):
        await lib.app.library.add_root(make_tree(tmp_path / "x", {}), [""])
    assert len(await lib.app.library.store.list_roots()) == 1


async def test_a_symlinked_path_is_stored_resolved(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "real", {"a.txt": b"a"})
    os.symlink(root, tmp_path / "alias")
    rec, _ = await lib.app.library.add_root(tmp_path / "alias")
    assert rec.path == str(root)
    assert await lib.app.library.root_for_path(tmp_path / "alias") == rec


async def test_a_copied_folder_gets_a_marker_of_its_own(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "one", {"a.txt": b"a"})
    first = await lib.add(root)
    shutil.copytree(root, tmp_path / "two")  # the marker is copied too
    second, _ = await lib.app.library.add_root(tmp_path / "two")
    one = await lib.app.library.get_root(first)
    assert second.marker != one.marker
    assert (tmp_path / "two" / MARKER_NAME).read_text().strip() == second.marker
    assert check_root(one).online and check_root(second).online


async def test_status_online_replaced_unavailable(lib: Lib, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "lib", {"a.txt": b"a"})
    rec = await lib.app.library.get_root(await lib.add(root))
    assert check_root(rec).status is RootStatus.ONLINE
    (root / MARKER_NAME).write_text(str(uuid.uuid4()) + "\n")
    assert check_root(rec).status is RootStatus.REPLACED
    (root / MARKER_NAME).unlink()
    assert check_root(rec).status is RootStatus.REPLACED
    # no marker and on another device than recorded: a drive that is not mounted
    elsewhere = dataclasses.replace(rec, device=rec.device + 1)
    assert check_root(elsewhere).status is RootStatus.UNAVAILABLE
    shutil.rmtree(root)
    gone = check_root(rec)
    assert gone.status is RootStatus.UNAVAILABLE and "No such file" in (gone.reason or "")


async def test_a_renumbered_device_is_followed(lib: Lib, tmp_path: Path) -> None:
    """The marker matches but the device number changed (a reboot renumbered the disk): the
    root is online, its records move to the new number, and vanished files are still
    detected (they would not be if the directories kept the old number)."""
    root = make_tree(tmp_path / "lib", {"a.txt": b"a", "sub/b.txt": b"b"})
    root_id = await lib.add(root)
    await lib.scan(root_id)
    store = lib.app.library.store
    real_device = os.stat(root).st_dev
    await store.set_root_device(root_id, real_device, real_device + 7)  # as if recorded so
    assert {d.device for d in await store.list_dirs(root_id)} == {real_device + 7}
    (root / "sub" / "b.txt").unlink()
    result = await lib.scan(root_id)
    assert result["roots"][0]["status"] == "online" and result["vanished"] == 1
    assert (await lib.app.library.get_root(root_id)).device == real_device
    assert {d.device for d in await store.list_dirs(root_id)} == {real_device}


async def test_read_only_root_uses_the_file_system_uuid(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "ro", {"a.txt": b"a"})

    def read_only(path: str, value: str) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    volume = {"uuid": "1234-ABCD"}
    monkeypatch.setattr(ucore.fs.roots, "write_marker", read_only)
    monkeypatch.setattr(ucore.fs.roots, "fs_uuid", lambda path, dev: volume["uuid"])
    rec = await lib.app.library.get_root(await lib.add(root))
    assert (rec.marker, rec.fs_uuid) == (None, "1234-ABCD")
    assert not (root / MARKER_NAME).exists()
    assert check_root(rec).online
    volume["uuid"] = "9999-0000"  # another file system is mounted there now
    assert check_root(rec).status is RootStatus.REPLACED
    volume["uuid"] = None  # type: ignore[assignment]  # unknown now: the device decides
    assert check_root(rec).online
    assert check_root(dataclasses.replace(rec, device=rec.device + 1)).status is (
        RootStatus.UNAVAILABLE
    )


async def test_remove_forgets_records_and_thumbnails_never_files(lib: Lib, tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "lib"
    root.mkdir()
    Image.new("RGB", (40, 30), "red").save(root / "red.png")
    make_tree(root, {"doc.txt": b"d", "sub/more.txt": b"m"})
    keep = make_tree(tmp_path / "other", {"o.txt": b"o"})
    root_id = await lib.add(root)
    other_id = await lib.add(keep)
    await lib.scan()
    await lib.thumbnails()
    thumb = thumbnail_path(lib.app.library.cache_dir, root_id, "red.png")
    assert thumb.is_file()
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    done = await lib.app.library.remove_root(root_id)
    assert done == {
        "id": root_id,
        "path": str(root),
        "files_removed": 3,
        "thumbnails_removed": 1,
    }
    assert not thumb.exists()
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # files untouched
    assert await lib.records(root_id) == {}
    assert await lib.app.library.store.list_dirs(root_id) == []
    assert set(await lib.records(other_id)) == {"o.txt"}
    with pytest.raises(MissingRootError):
        await lib.app.library.remove_root(root_id)
    entries = await lib.app.library.journal.entries(kind="library.remove")
    assert entries[0].data["files_removed"] == 3
