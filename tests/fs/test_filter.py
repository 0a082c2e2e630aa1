"""The one library-file filter (DESIGN.md §6): what is a library file, and what is not."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fs_fakes import patch_scandir, real_lstat, with_device
from fs_helpers import make_tree, write

from ucore.fs.filter import DirectoryError, LibraryFilter, NotALibraryFile, mount_points_under
from ucore.fs.ignore import IgnoreError, IgnoreRules


def all_files(flt: LibraryFilter) -> set[str]:
    found: set[str] = set()
    for item in flt.walk():
        assert not isinstance(item, DirectoryError), item
        found.update(item.path_of(name) for name, _, _ in item.files)
    return found


def test_only_regular_visible_files_are_library_files(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "root",
        {
            "a.jpg": b"1",
            "sub/b.txt": b"22",
            "sub/deeper/c.bin": b"333",
            ".hidden": b"h",
            ".ucore-root": b"marker",
            "sub/.hidden-dir/d.txt": b"d",
            ".cache/e.txt": b"e",
        },
    )
    outside = make_tree(tmp_path / "outside", {"secret.txt": b"s", "more/x.txt": b"x"})
    os.symlink(root / "a.jpg", root / "link-to-file.jpg")
    os.symlink(outside, root / "link-out")
    os.symlink(outside / "secret.txt", root / "sub" / "link-out-file.txt")
    os.symlink(root, root / "sub" / "loop")  # a symlink loop back to the root
    os.symlink("missing-target", root / "dangling")
    os.mkfifo(root / "sub" / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        flt = LibraryFilter(root)
        assert all_files(flt) == {"a.jpg", "sub/b.txt", "sub/deeper/c.bin"}
        top = flt.list_dir("")
        assert dict((n, s) for n, s, _ in top.files) == {"a.jpg": 1}
        assert sorted(top.dirs) == ["sub"]
        assert top.skipped.hidden == 3  # .hidden, .ucore-root, .cache
        assert top.skipped.symlinks == 3  # link-to-file.jpg, link-out, dangling
        assert top.skipped.special == 1  # the socket
        sub = flt.list_dir("sub")
        assert sub.skipped.symlinks == 2 and sub.skipped.special == 1  # links, the FIFO
        assert sub.skipped.hidden == 1
        mtime = os.stat(root / "a.jpg").st_mtime_ns
        assert top.files == [("a.jpg", 1, mtime)]
    finally:
        sock.close()


def test_ignore_globs(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "root",
        {
            "keep.jpg": b"",
            "drop.tmp": b"",
            "a/drop.tmp": b"",
            "a/keep.txt": b"",
            "node_modules/x/y.js": b"",
            "a/node_modules/z.js": b"",
            "raw/one.cr2": b"",
            "raw/one.jpg": b"",
            "raw/deep/two.cr2": b"",
            "build/out.bin": b"",
            "a/build/kept.bin": b"",
            "x1.log": b"",
            "x2.log": b"",
            "xa.log": b"",
        },
    )
    flt = LibraryFilter(
        root, ["*.tmp", "node_modules", "raw/*.cr2", "/build", "x[0-9].log", "**/deep"]
    )
    assert all_files(flt) == {
        "keep.jpg",
        "a/keep.txt",
        "raw/one.jpg",
        "a/build/kept.bin",  # "/build" is only the top one
        "xa.log",
    }
    assert flt.list_dir("").skipped.ignored == 5  # drop.tmp node_modules build x1.log x2.log
    assert flt.excluded("a/node_modules/z.js") == "ignored"
    assert flt.excluded("a/.git/config") == "hidden"
    assert flt.excluded("a/keep.txt") is None


@pytest.mark.parametrize("bad", ["", "/", "a\0b", "\udcff"])
def test_unusable_globs_are_refused(bad: str) -> None:
    with pytest.raises(IgnoreError):
        IgnoreRules([bad])


def test_globs_stay_inside_a_component() -> None:
    rules = IgnoreRules(["a/*.txt", "docs/**"])
    assert rules.matches("a", "x.txt")
    assert not rules.matches("a/b", "x.txt")  # * does not cross "/"
    assert rules.matches("docs/deep/er", "x")
    assert rules.matches("docs", "x")
    assert not rules.matches("", "docs")  # "docs/**" is what is inside docs


def test_non_utf8_names_are_listed_exactly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    raw = b"caf\xe9 \xff.jpg"
    (root / os.fsdecode(raw)).write_bytes(b"abc")
    sub = root / os.fsdecode(b"dir-\xfe")
    sub.mkdir()
    (sub / "in.txt").write_bytes(b"i")
    flt = LibraryFilter(root)
    files = all_files(flt)
    assert {os.fsencode(f) for f in files} == {raw, b"dir-\xfe/in.txt"}


def test_another_file_system_is_not_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "root", {"a.txt": b"a", "mnt/b.txt": b"b", "bind.txt": b"c"})
    flt = LibraryFilter(root)
    other = flt.device + 1
    patch_scandir(
        monkeypatch,
        {
            "mnt": lambda e: with_device(real_lstat(e), other),
            "bind.txt": lambda e: with_device(real_lstat(e), other),
        },
    )
    top = flt.list_dir("")
    assert [f[0] for f in top.files] == ["a.txt"]
    assert top.dirs == []
    assert sorted(top.mounts) == ["bind.txt", "mnt"]
    assert top.skipped.other_device == 2
    # a root that is now on another device is not listed at all
    with pytest.raises(DirectoryError, match="another file system"):
        LibraryFilter(root, device=other).list_dir("")


def test_unlistable_and_unexaminable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "root", {"ok.txt": b"1", "locked.txt": b"2", "gone.txt": b"3"})
    flt = LibraryFilter(root)

    def denied(entry: object) -> OSError:
        return PermissionError(errno.EACCES, "Permission denied")

    patch_scandir(
        monkeypatch,
        {"locked.txt": denied},
        before_stat=lambda name: (root / "gone.txt").unlink() if name == "gone.txt" else None,
    )
    listing = flt.list_dir("")
    assert [f[0] for f in listing.files] == ["ok.txt"]
    assert listing.errors == [("locked.txt", "Permission denied")]  # unknown, not gone
    assert listing.skipped.vanished == 1  # listed, then gone before its lstat: simply absent
    with pytest.raises(DirectoryError) as info:
        flt.list_dir("no-such-dir")
    assert info.value.vanished


def test_a_folder_that_cannot_be_opened(tmp_path: Path, deny: object) -> None:
    root = make_tree(tmp_path / "root", {"a/x.txt": b"", "b/y.txt": b""})
    deny(root / "a", errno.EACCES)  # type: ignore[operator]
    items = list(LibraryFilter(root).walk())
    errors = [i for i in items if isinstance(i, DirectoryError)]
    assert [(e.rel, e.errno) for e in errors] == [("a", errno.EACCES)]
    assert not errors[0].vanished
    assert LibraryFilter(root).count()[0] == 1


def test_open_file_never_follows_symlinks(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"real/pic.jpg": b"img", ".h/x.jpg": b"h"})
    outside = make_tree(tmp_path / "out", {"pic.jpg": b"secret"})
    os.symlink(outside, root / "linkdir")
    os.symlink(outside / "pic.jpg", root / "real" / "link.jpg")
    os.mkfifo(root / "real" / "fifo.jpg")
    flt = LibraryFilter(root)
    fd, st = flt.open_file("real/pic.jpg")
    try:
        assert os.read(fd, 10) == b"img" and st.st_size == 3
    finally:
        os.close(fd)
    for rel in ("linkdir/pic.jpg", "real/link.jpg", ".h/x.jpg", "real/fifo.jpg"):
        with pytest.raises(NotALibraryFile):
            os.close(flt.open_file(rel)[0])
    with pytest.raises(FileNotFoundError):
        flt.open_file("real/missing.jpg")


def test_count_matches_walk(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(30):
        write(root / f"d{i % 4}" / f"e{i % 3}" / f"f{i}.txt", b"x" * i)
    files, size, errors = LibraryFilter(root).count()
    assert (files, size, errors) == (30, sum(range(30)), [])


def test_permission_denied_for_a_real_user(tmp_path: Path) -> None:
    """Not simulated: a child running as ``nobody`` cannot list a 0000 folder."""
    if not hasattr(os, "setuid") or os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="ucore-perm-"))
    try:
        base.chmod(0o755)
        root = make_tree(base / "root", {"open/a.txt": b"a", "locked/b.txt": b"b"})
        for d in (root, root / "open", root / "locked"):
            d.chmod(0o755)
        (root / "locked").chmod(0o000)
        code = (  # imports first (the interpreter may live where nobody can read), then drop
            "import json, os, sys; from ucore.fs.filter import LibraryFilter, DirectoryError\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "items = list(LibraryFilter(sys.argv[1]).walk())\n"
            "print(json.dumps({'files': sorted(i.path_of(f[0]) for i in items "
            "if not isinstance(i, DirectoryError) for f in i.files), "
            "'errors': [[e.rel, e.errno] for e in items if isinstance(e, DirectoryError)]}))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, str(root)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"the unprivileged child cannot run here: {proc.stderr.strip()[-200:]}")
        doc = json.loads(proc.stdout)
        assert doc == {"files": ["open/a.txt"], "errors": [["locked", errno.EACCES]]}
    finally:
        (base / "root" / "locked").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_count_files_agrees_with_count_on_a_hostile_tree(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "root",
        {
            "a.jpg": b"1",
            "sub/b.txt": b"22",
            "sub/deeper/c.bin": b"333",
            ".hidden": b"h",
            "sub/.hidden-dir/d.txt": b"d",
            "skip/me.tmp": b"t",
            "keep/me.txt": b"k",
        },
    )
    outside = make_tree(tmp_path / "outside", {"secret.txt": b"s", "more/x.txt": b"x"})
    os.symlink(outside, root / "link-out")
    os.symlink(outside / "secret.txt", root / "sub" / "link-out-file.txt")
    os.symlink(root, root / "sub" / "loop")
    os.mkfifo(root / "sub" / "pipe")
    write(root / os.fsdecode(b"bad-\xff-name\nnewline.txt"), b"n")
    for ignore in ((), ("*.tmp",), ("/keep",)):
        flt = LibraryFilter(root, ignore)
        files, _, errors = flt.count()
        assert flt.count_files() == (files, errors)
        assert flt._count_by_type(frozenset(), None) == (files, errors)


def test_count_files_skips_other_file_systems_from_the_mount_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "root", {"a.txt": b"a", "mnt/b.txt": b"b", "bind.txt": b"c"})
    flt = LibraryFilter(root)
    mounts = frozenset({str(root / "mnt"), str(root / "bind.txt")})
    real_stat = os.stat

    def fake_stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        st = real_stat(path, *args, **kwargs)
        if path in ("mnt", "bind.txt") and kwargs.get("dir_fd") is not None:
            return with_device(st, flt.device + 1)
        return st

    monkeypatch.setattr(os, "stat", fake_stat)
    assert flt._count_by_type(mounts, None) == (1, [])
    # a mount point on the same file system (a bind mount of a folder of it) is entered
    monkeypatch.setattr(os, "stat", real_stat)
    assert flt._count_by_type(mounts, None) == (3, [])


def test_mount_table_parsing(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_bytes(
        b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        b"30 22 0:40 / /lib/photos rw - tmpfs tmpfs rw\n"
        b"31 22 0:41 / /lib/with\\040space rw - tmpfs tmpfs rw\n"
        b"32 22 0:42 / /library-other rw - tmpfs tmpfs rw\n"
        b"33 22 0:43 / /lib rw - tmpfs tmpfs rw\n"
    )
    assert mount_points_under("/lib", str(table)) == {"/lib/photos", "/lib/with space"}
    assert mount_points_under("/lib", str(tmp_path / "none")) is None
