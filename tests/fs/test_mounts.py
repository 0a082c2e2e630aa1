"""Real mount points (tmpfs): never crossed, an unmounted root is unavailable, a read-only
root falls back to its volume. Skipped where mounting is not permitted."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from fs_helpers import Lib, make_tree, write

from ucore.fs.filter import LibraryFilter

Mount = Callable[..., None]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def unmount(path: Path) -> None:
    proc = _run("umount", str(path))
    assert proc.returncode == 0, proc.stderr


async def test_a_mount_point_inside_a_root_is_not_crossed(
    lib: Lib, tmp_path: Path, mount: Mount
) -> None:
    root = make_tree(tmp_path / "lib", {"a.txt": b"a", "photos/p.jpg": b"p"})
    mount(root / "usb")
    write(root / "usb" / "on-usb.txt", b"u")
    root_id = await lib.add(root)
    result = await lib.scan(root_id)
    assert set(await lib.records(root_id)) == {"a.txt", "photos/p.jpg"}
    assert result["roots"][0]["skipped"]["other_device"] == 1


async def test_a_recorded_folder_mounted_over_keeps_its_records(
    lib: Lib, tmp_path: Path, mount: Mount
) -> None:
    root = make_tree(tmp_path / "lib", {"a.txt": b"a", "photos/p.jpg": b"p", "photos/q.jpg": b"q"})
    root_id = await lib.add(root)
    await lib.scan(root_id)
    mount(root / "photos")  # hides the recorded files: they are not gone
    result = await lib.scan(root_id)
    assert result["vanished"] == 0
    assert result["roots"][0]["kept"] == [
        {"path": "photos", "reason": "another file system is mounted here"}
    ]
    assert set(await lib.records(root_id)) == {"a.txt", "photos/p.jpg", "photos/q.jpg"}
    unmount(root / "photos")
    result = await lib.scan(root_id)
    assert (result["unchanged"], result["vanished"], result["new"]) == (3, 0, 0)


async def test_an_unmounted_root_is_unavailable(lib: Lib, tmp_path: Path, mount: Mount) -> None:
    root = tmp_path / "drive"
    mount(root)
    make_tree(root, {"x.txt": b"x", "y/z.txt": b"z"})
    root_id = await lib.add(root)
    await lib.scan(root_id)
    unmount(root)  # the empty mount point is left, on the parent's file system
    info = (await lib.app.library.roots())[0]
    assert info.check.status.value == "unavailable"
    assert "not mounted" in (info.check.reason or "")
    result = await lib.scan(root_id)
    assert result["unavailable"] == [root_id] and result["vanished"] == 0
    assert set(await lib.records(root_id)) == {"x.txt", "y/z.txt"}


async def test_a_read_only_root_falls_back_to_its_volume(
    lib: Lib, tmp_path: Path, mount: Mount
) -> None:
    root = tmp_path / "cdrom"
    mount(root)
    make_tree(root, {"a.jpg": b"a", "b/c.txt": b"c"})
    _run("mount", "-o", "remount,ro", str(root))
    root_id = await lib.add(root)
    rec = await lib.app.library.get_root(root_id)
    assert rec.marker is None and not (root / ".ucore-root").exists()
    assert rec.device == os.stat(root).st_dev  # a tmpfs has no UUID: the device identifies it
    assert (await lib.app.library.check(root_id)).status.value == "online"
    result = await lib.scan(root_id)
    assert result["new"] == 2


async def test_count_files_does_not_cross_a_real_mount(
    lib: Lib, tmp_path: Path, mount: Mount
) -> None:
    root = make_tree(tmp_path / "lib", {"a.txt": b"a", "photos/p.jpg": b"p"})
    mount(root / "usb")
    write(root / "usb" / "on-usb.txt", b"u")
    flt = LibraryFilter(root)
    assert flt.count_files() == (2, []) == (flt.count()[0], flt.count()[2])
