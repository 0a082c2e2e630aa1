"""cache_cleanup (issue 9, Deliver 1 and 4; DESIGN.md §6.3) on real files.

Every test builds a real cache under tmp_path: thumbnails made by ``thumbnails_generate`` for
a small library (so their records are ``done``), files of our naming without a record
(orphans), temp files, and a hostile corpus (symlinks to files and folders outside, FIFOs,
sockets, near-miss names, names with newlines and bytes that are not UTF-8, folders with
thumbnail names, mounts). Ages are set with ``os.utime`` (never slept for). Snapshots of
trees are taken without moving an atime (``O_NOATIME``), so they also show that the
cleanup's scan never reads a file.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from maint_helpers import AppFactory, dump, finish, journal_of, run, wait_until
from PIL import Image

from ucore.app import App, bootstrap
from ucore.foundation.config import parse_config
from ucore.fs.thumbnails import thumbnail_name
from ucore.maintenance import cache_cleanup
from ucore.maintenance.run import BudgetExhausted, MaintenanceRun, human_bytes
from ucore.stores.records import TaskRecord, TaskState, ThumbnailUpdate, ThumbState

DAY = 86400.0
HOUR = 3600.0
NO_LIMITS = {"max_age_days": None, "max_cache_size_gb": None}
AGE_ONLY = {"max_age_days": 30, "max_cache_size_gb": None}
OWN_KEYS = {
    "scanned",
    "deleted",
    "bytes_freed",
    "bytes_remaining",
    "skipped",
    "orphans",
    "temp_files",
    "expired",
    "over_size",
    "evicted",
    "vanished",
    "errors",
    "cache_dir",
}

Snapshot = dict[bytes, tuple[Any, ...]]


# -- helpers --------------------------------------------------------------------------------
def set_age(path: Path | bytes, days: float, atime_days: float | None = None) -> None:
    """mtime ``days`` ago, atime ``atime_days`` ago (default: the same); never follows."""
    now = time.time()
    atime = now - (days if atime_days is None else atime_days) * DAY
    os.utime(path, (atime, now - days * DAY), follow_symlinks=False)


def fake_name(tag: str) -> str:
    """A thumbnail name of our naming that no record owns."""
    return hashlib.sha256(tag.encode()).hexdigest() + ".png"


def put(path: Path, data: bytes = b"png", days: float = 400.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    set_age(path, days)
    return path


def snapshot(top: Path) -> Snapshot:
    """Every entry under ``top`` (bytes paths, symlinks not followed): type, inode, size,
    mtime, the content's hash (read with O_NOATIME) or the link's target, and the atime of
    everything but folders."""
    out: Snapshot = {}
    base = os.fsencode(top)
    if not os.path.lexists(base):
        return out
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
                with os.fdopen(fd, "rb") as f:
                    extra: Any = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            else:
                extra = None
            key = os.path.relpath(path, base)
            out[key] = (stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, st.st_mtime_ns, extra)
            if not stat.S_ISDIR(st.st_mode):  # listing a folder (this walk too) moves its atime
                out[key + b"@atime"] = (st.st_atime_ns,)
    return out


def without(snap: Snapshot, *prefixes: bytes) -> Snapshot:
    return {k: v for k, v in snap.items() if not k.startswith(prefixes)}


def make_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        Image.new("RGB", (16 + i, 16), (i * 20 % 256, 90, 200)).save(folder / name)


def lexists(path: Path) -> bool:
    return os.path.lexists(path)


async def library(app: App, folder: Path, names: list[str]) -> int:
    """A root with one small image per name, scanned, thumbnails made (records ``done``)."""
    make_images(folder, names)
    root, created = await app.library.add_root(folder)
    assert created
    scan = await finish(app, await app.library.scan(root.id))
    assert scan.state is TaskState.COMPLETED, scan.error
    made = await finish(app, await app.library.generate_thumbnails())
    assert made.state is TaskState.COMPLETED, made.error
    assert made.result["generated"] == len(names), made.result
    return root.id


async def settled(app: App) -> None:
    """Every task queued so far (a scan queues ``thumbnails_generate``) has finished."""
    for task in await app.tasks.list_tasks(limit=1000):
        await finish(app, task.id)


async def states(app: App, root_id: int) -> dict[str, ThumbState]:
    files = await app.library.files(root_id, limit=10_000)
    return {f.rel_path: f.thumb_state for f in files}


async def file_ids(app: App, root_id: int) -> dict[str, int]:
    return {f.rel_path: f.id for f in await app.library.files(root_id, limit=10_000)}


def thumbs_dir(app: App, size: int = 256) -> Path:
    return app.library.cache_dir / "thumbnails" / str(size)


async def cleanup(app: App, **params: Any) -> TaskRecord:
    record = await run(app, "cache_cleanup", params)
    assert record.state is TaskState.COMPLETED, (record.error, record.traceback)
    assert set(record.result) >= OWN_KEYS, record.result
    return record


async def app_with_cache(apps: AppFactory, cache_dir: Path | str) -> App:
    """An app (workers started) whose cache dir is ``cache_dir``."""
    config = parse_config({"paths": {"cache_dir": str(cache_dir)}}, data_dir=apps.data_dir, env={})
    app = await bootstrap(config, role="client")
    apps.apps.append(app)
    await app.tasks.start_workers()
    return app


def make_socket(path: Path) -> None:
    """A bound AF_UNIX socket at ``path``: bound in a short folder (sun_path holds 107 bytes),
    then renamed into place (same file system: /tmp)."""
    short = tempfile.mkdtemp(prefix="s", dir="/tmp")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(os.path.join(short, "s"))
            os.rename(os.path.join(short, "s"), path)
    finally:
        shutil.rmtree(short, ignore_errors=True)


# -- mounts (real tmpfs; skipped where mounting is not permitted) ---------------------------
Mount = Callable[..., None]


# -- what goes ------------------------------------------------------------------------------
async def test_age_limit_deletes_old_thumbnails_and_evicts_their_records(
    apps: AppFactory, tmp_path: Path
) -> None:
    app = await apps()
    names = ["a.png", "b.png", "c.png", "d.png"]
    root_id = await library(app, tmp_path / "lib", names)
    path = {n: app.library.thumbnail_path(root_id, n) for n in names}
    set_age(path["a.png"], 45)
    set_age(path["b.png"], 31)
    set_age(path["c.png"], 29)  # younger than the limit
    set_age(path["d.png"], 45, atime_days=1)  # used yesterday: its age is the atime's
    sizes = {n: p.stat().st_size for n, p in path.items()}
    atime_d = os.lstat(path["d.png"]).st_atime_ns
    record = await cleanup(app, **AGE_ONLY)
    res = record.result
    assert not path["a.png"].exists() and not path["b.png"].exists()
    assert path["c.png"].exists() and path["d.png"].exists()
    assert os.lstat(path["d.png"]).st_atime_ns == atime_d  # the scan read nothing
    assert (res["deleted"], res["expired"], res["orphans"], res["over_size"]) == (2, 2, 0, 0)
    assert res["evicted"] == 2
    assert res["bytes_freed"] == sizes["a.png"] + sizes["b.png"]
    assert res["bytes_remaining"] == sizes["c.png"] + sizes["d.png"]
    assert res["scanned"] == 5  # the folder 256 and its four files
    assert res["dry_run"] is False and res["partial"] is False and res["warnings"] == []
    assert await states(app, root_id) == {
        "a.png": ThumbState.EVICTED,
        "b.png": ThumbState.EVICTED,
        "c.png": ThumbState.DONE,
        "d.png": ThumbState.DONE,
    }
    (entry,) = await journal_of(app, record.id, "maintenance.cache_cleanup")
    assert entry.message == (
        f"deleted 2 thumbnails, freed {human_bytes(res['bytes_freed'])}; "
        f"{human_bytes(res['bytes_remaining'])} remain"
    )
    assert entry.data["evicted"] == 2


async def test_size_cap_applies_with_the_age_limit_off(apps: AppFactory, tmp_path: Path) -> None:
    app = await apps()
    names = [f"p{i}.png" for i in range(5)]
    root_id = await library(app, tmp_path / "lib", names)
    thumbs = {n: app.library.thumbnail_path(root_id, n) for n in names}
    for i, n in enumerate(names):  # p0 oldest (500 days) ... p4 newest (100 days)
        thumbs[n].write_bytes(b"x" * 1000)
        set_age(thumbs[n], 500 - 100 * i)
    # a second size folder of the same records: counted in the total too
    small = put(thumbs_dir(app, 128) / thumbnail_name(root_id, "p4.png"), b"y" * 1000, days=50)
    cap_bytes = 3500  # 6,000 bytes in all: the three oldest must go
    record = await cleanup(app, max_age_days=None, max_cache_size_gb=cap_bytes / 2**30)
    res = record.result
    assert (res["over_size"], res["expired"], res["deleted"]) == (3, 0, 3)
    assert (res["bytes_freed"], res["bytes_remaining"]) == (3000, 3000)
    assert [n for n in names if thumbs[n].exists()] == ["p3.png", "p4.png"]
    assert small.exists()
    got = await states(app, root_id)
    assert [n for n in names if got[n] is ThumbState.EVICTED] == ["p0.png", "p1.png", "p2.png"]


async def test_age_limit_first_then_oldest_first_down_to_the_cap(
    apps: AppFactory, tmp_path: Path
) -> None:
    app = await apps()
    names = [f"p{i}.png" for i in range(4)]
    root_id = await library(app, tmp_path / "lib", names)
    for i, n in enumerate(names):  # 40, 20, 10, 5 days
        p = app.library.thumbnail_path(root_id, n)
        p.write_bytes(b"x" * 1000)
        set_age(p, (40, 20, 10, 5)[i])
    record = await cleanup(app, max_age_days=30, max_cache_size_gb=2100 / 2**30)
    res = record.result
    assert (res["expired"], res["over_size"], res["bytes_remaining"]) == (1, 1, 2000)
    assert [n for n in names if app.library.thumbnail_path(root_id, n).exists()] == [
        "p2.png",
        "p3.png",
    ]


async def test_orphans_go_whatever_their_age_but_not_in_their_first_hour(
    apps: AppFactory, tmp_path: Path
) -> None:
    app = await apps()
    root_id = await library(app, tmp_path / "lib", ["kept.png", "pending.png", "gone.png"])
    folder = thumbs_dir(app)
    old_orphan = put(folder / fake_name("no record"), days=2 / 24)  # two hours
    young_orphan = put(folder / fake_name("being made"), days=0.5 / 24)  # half an hour
    # a record that no longer exists (the scan removed it and its thumbnail; a crash in
    # between, or a copy restored from a backup, leaves the file): it is an orphan
    gone = app.library.thumbnail_path(root_id, "gone.png")
    saved = gone.read_bytes()
    (tmp_path / "lib" / "gone.png").unlink()
    assert (await finish(app, await app.library.scan(root_id))).state is TaskState.COMPLETED
    await settled(app)
    assert "gone.png" not in await states(app, root_id)
    put(gone, saved, days=1)
    # a record whose thumbnail is pending again (its file changed): its old file is an orphan
    ids = await file_ids(app, root_id)
    await app.library.store.set_thumbnail_states(
        [ThumbnailUpdate(ids["pending.png"], ThumbState.PENDING, None)]
    )
    pending = app.library.thumbnail_path(root_id, "pending.png")
    set_age(pending, 3)
    kept = app.library.thumbnail_path(root_id, "kept.png")
    record = await cleanup(app)  # the defaults: 30 days, 10 GB
    res = record.result
    assert not old_orphan.exists() and not pending.exists() and not gone.exists()
    assert young_orphan.exists() and kept.exists()
    assert (res["orphans"], res["deleted"], res["evicted"]) == (3, 3, 0)
    assert res["skipped"]["young_orphan"] == 1
    got = await states(app, root_id)
    assert got == {"kept.png": ThumbState.DONE, "pending.png": ThumbState.PENDING}


async def test_temp_files_older_than_a_day_go_younger_stay(
    apps: AppFactory, tmp_path: Path
) -> None:
    app = await apps()
    folder = thumbs_dir(app)
    digest = "ab" * 32
    old = put(folder / f".{digest}.png.tmp-4242", b"half", days=1.5)
    young = put(folder / f".{digest}.png.tmp-4243", b"half", days=0.9)
    # age of a temp file is its mtime: a fresh atime does not keep it
    old_read = put(folder / f".{'cd' * 32}.png.tmp-7", b"half", days=3)
    set_age(old_read, 3, atime_days=0)
    odd = put(folder / f".{digest}.png.tmp-x1", b"not ours", days=30)
    record = await cleanup(app, **NO_LIMITS)
    res = record.result
    assert not old.exists() and not old_read.exists()
    assert young.exists() and odd.exists()
    assert (res["temp_files"], res["deleted"], res["bytes_freed"]) == (2, 2, 8)
    assert res["skipped"]["young_temp"] == 1 and res["skipped"]["foreign"] == 1
    entry = (await journal_of(app, record.id, "maintenance.cache_cleanup"))[0]
    assert entry.message.startswith("deleted 0 thumbnails and 2 temp files, freed 8 B")


# -- what never goes ------------------------------------------------------------------------
def hostile_corpus(tmp_path: Path, cache: Path) -> dict[str, Path]:
    """Things inside and outside the cache that must survive, all 400 days old; returns the
    outside targets by name."""
    outside = tmp_path / "outside"
    target_file = put(outside / "precious.png", b"precious")
    target_dir = outside / "album"
    put(target_dir / fake_name("in album"), b"album thumb")
    put(target_dir / "photo.jpg", b"photo")
    thumbs = cache / "thumbnails"
    folder = thumbs / "256"
    folder.mkdir(parents=True, exist_ok=True)
    # symlinks with our names, to a file and to a folder outside
    (folder / fake_name("link to file")).symlink_to(target_file)
    (folder / fake_name("link to dir")).symlink_to(target_dir)
    (thumbs / "128").symlink_to(target_dir)  # a size folder that is a symlink
    # not regular files, with our names
    os.mkfifo(folder / fake_name("fifo"))
    make_socket(folder / fake_name("socket"))
    (folder / fake_name("a folder")).mkdir()
    put(folder / fake_name("a folder") / fake_name("inside it"))
    # near misses
    digest = hashlib.sha256(b"near").hexdigest()
    for name in (
        digest.upper() + ".png",
        digest[:63] + ".png",
        digest + "0.png",
        digest + ".PNG",
        digest + ".png.bak",
        digest + ".png\n",
        digest[:30] + "\n" + digest[31:] + ".png",
        "." + digest + ".png",
        "." + digest + ".png.tmp-",
        digest + ".png.tmp-12",
        "thumbs.db",
        "０" * 64 + ".png",  # full-width digits
    ):
        put(folder / name, b"foreign")
    # names that are not UTF-8
    os.makedirs(os.fsencode(folder), exist_ok=True)
    for raw in (digest.encode()[:60] + b"\xff\xfe\xfd\xfc.png", b"caf\xe9.png"):
        path = os.fsencode(folder) + b"/" + raw
        with open(path, "wb") as f:
            f.write(b"foreign bytes")
        set_age(path, 400)
    # other folders and files of the cache, also with our names
    put(cache / "other" / fake_name("other folder"))
    put(cache / fake_name("cache top"))
    put(thumbs / fake_name("thumbnails top"))
    put(thumbs / "２５６" / fake_name("non-ascii digits folder"))
    put(thumbs / "256x" / fake_name("not a size folder"))
    for link in (folder / fake_name("link to file"), folder / fake_name("link to dir")):
        set_age(link, 400)
    return {"file": target_file, "dir": target_dir}


async def test_hostile_corpus_only_our_files_go(apps: AppFactory, tmp_path: Path) -> None:
    app = await apps()
    root_id = await library(app, tmp_path / "lib", ["old.png", "new.png"])
    cache = app.library.cache_dir
    hostile_corpus(tmp_path, cache)
    ours_old = app.library.thumbnail_path(root_id, "old.png")
    set_age(ours_old, 400)
    orphan = put(thumbs_dir(app) / fake_name("orphan"), days=400)
    stale_temp = put(thumbs_dir(app) / f".{'ef' * 32}.png.tmp-99", days=400)
    gone = {os.fsencode(p.relative_to(cache)) for p in (ours_old, orphan, stale_temp)}
    before_all = snapshot(tmp_path)
    before_cache = snapshot(cache)
    before_db = dump(apps.db_path)
    record = await cleanup(app, **AGE_ONLY)
    res = record.result
    assert (res["deleted"], res["expired"], res["orphans"], res["temp_files"]) == (3, 1, 1, 1)
    assert res["skipped"] == {
        "foreign": 12 + 2 + 3,  # near misses, not UTF-8; in thumbnails/: a file, two folders
        "symlinks": 2 + 1,  # two with our names, one size folder
        "special": 3,  # FIFO, socket, folder
        "other_device": 0,
        "young_temp": 0,
        "young_orphan": 0,
        "changed": 0,
    }
    after_cache = snapshot(cache)
    # inside the cache: exactly our three files went; nothing else changed, not even an atime
    # (the folder that lost them has a new mtime, nothing else of it changed)
    parent = b"thumbnails/256"
    assert after_cache.pop(parent)[:3] == before_cache[parent][:3]
    expected = {
        k: v
        for k, v in before_cache.items()
        if k.replace(b"@atime", b"") not in gone and k != parent
    }
    assert after_cache == expected
    # outside the data dir (the library, the symlinks' targets): unchanged, atimes included;
    # the database: only the one eviction
    data = os.fsencode(apps.data_dir.relative_to(tmp_path))
    outside_before = without(before_all, data)
    assert without(snapshot(tmp_path), data) == outside_before
    assert any(k.startswith(b"outside/") for k in outside_before)
    assert any(k.startswith(b"lib/") for k in outside_before)
    assert (await states(app, root_id))["old.png"] is ThumbState.EVICTED
    after_db = dump(apps.db_path, skip_tasks=[record.id])
    changed = [t for t in before_db if before_db[t] != after_db[t]]
    assert changed == ["library_files"]  # the one eviction


async def test_other_file_systems_are_never_entered(
    apps: AppFactory, tmp_path: Path, mount: Mount
) -> None:
    app = await apps()
    thumbs = app.library.cache_dir / "thumbnails"
    folder = thumbs / "256"
    folder.mkdir(parents=True)
    mounted_folder = thumbs / "512"
    mounted_folder.mkdir()
    mount(mounted_folder)
    on_tmpfs = put(mounted_folder / fake_name("on another fs"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mount(elsewhere)
    source = put(elsewhere / "source.png", b"on tmpfs")
    target = put(folder / fake_name("bind-mounted file"), b"placeholder")
    mount(target, source)  # a file of another file system under one of our names
    set_age(target, 400)
    orphan = put(folder / fake_name("plain orphan"))
    record = await cleanup(app, **NO_LIMITS)
    res = record.result
    assert res["skipped"]["other_device"] == 2
    assert not orphan.exists()
    assert on_tmpfs.read_bytes() == b"png" and source.read_bytes() == b"on tmpfs"
    assert target.read_bytes() == b"on tmpfs"
    assert res["deleted"] == 1 and res["errors"] == 0


async def test_a_file_swapped_before_the_last_check_is_left(
    apps: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    precious = put(tmp_path / "outside" / "precious.png", b"precious")
    victim = put(thumbs_dir(app) / fake_name("victim"))
    remade = put(thumbs_dir(app) / fake_name("remade"))
    other = put(thumbs_dir(app) / fake_name("other"))
    swapped: list[str] = []

    def swap(fd: int, name: str) -> None:
        if name == victim.name:  # for a symlink to a file outside
            os.unlink(name, dir_fd=fd)
            os.symlink(precious, name, dir_fd=fd)
            swapped.append(name)
        if name == remade.name:  # for a new thumbnail (written aside, renamed over it)
            put(remade.with_name("new"), b"fresh thumbnail", days=0)
            os.rename("new", name, src_dir_fd=fd, dst_dir_fd=fd)
            swapped.append(name)

    monkeypatch.setattr(cache_cleanup, "_before_delete", swap)
    record = await cleanup(app, **NO_LIMITS)
    assert sorted(swapped) == sorted([victim.name, remade.name])
    assert precious.read_bytes() == b"precious"
    assert victim.is_symlink() and os.readlink(victim) == str(precious)  # left alone
    assert remade.read_bytes() == b"fresh thumbnail"
    assert not other.exists()
    assert record.result["skipped"]["changed"] == 2
    assert record.result["deleted"] == 1


async def test_a_file_swapped_for_a_symlink_after_the_last_check_loses_only_the_link(
    apps: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    precious = put(tmp_path / "outside" / "precious.png", b"precious")
    album = tmp_path / "outside" / "album"
    inside_album = put(album / "photo.jpg", b"photo")
    victims = {
        put(thumbs_dir(app) / fake_name("to a file")).name: precious,
        put(thumbs_dir(app) / fake_name("to a folder")).name: album,
    }
    real_unlink = os.unlink

    def unlink(path: Any, *, dir_fd: int | None = None) -> None:
        target = victims.get(os.fsdecode(path)) if dir_fd is not None else None
        if target is not None:  # the worst moment: after the check, before the unlink
            real_unlink(path, dir_fd=dir_fd)
            os.symlink(target, path, dir_fd=dir_fd)
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    record = await cleanup(app, **NO_LIMITS)
    monkeypatch.undo()
    assert precious.read_bytes() == b"precious"
    assert inside_album.read_bytes() == b"photo"
    assert not any(lexists(thumbs_dir(app) / name) for name in victims)
    assert record.result["deleted"] == 2


async def test_a_vanished_file_counts_as_done_an_error_is_a_warning(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    folder = thumbs_dir(app)
    vanishing = put(folder / fake_name("vanishing"), b"12345")
    stuck = put(folder / fake_name("stuck"), b"123")
    plain = put(folder / fake_name("plain"), b"1")

    def hook(fd: int, name: str) -> None:
        if name == vanishing.name:
            os.unlink(name, dir_fd=fd)  # someone else deleted it meanwhile
        if name == stuck.name:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    monkeypatch.setattr(cache_cleanup, "_before_delete", hook)
    record = await cleanup(app, **NO_LIMITS)
    res = record.result
    assert (res["deleted"], res["vanished"], res["errors"]) == (1, 1, 1)
    assert not plain.exists() and stuck.exists()
    assert (res["bytes_freed"], res["bytes_remaining"]) == (1, 3)
    (warning,) = res["warnings"]
    assert "cannot delete thumbnails/256/" + stuck.name in warning and "busy" in warning


async def test_errors_are_listed_up_to_a_bound(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    for i in range(cache_cleanup.MAX_LISTED + 5):
        put(thumbs_dir(app) / fake_name(f"busy {i}"))

    def hook(fd: int, name: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(cache_cleanup, "_before_delete", hook)
    res = (await cleanup(app, **NO_LIMITS)).result
    assert res["errors"] == cache_cleanup.MAX_LISTED + 5 and res["deleted"] == 0
    assert len(res["warnings"]) == cache_cleanup.MAX_LISTED + 1
    assert res["warnings"][-1] == "... and 5 more errors like these"


# -- dry run, empty folders, nothing to do --------------------------------------------------
async def test_dry_run_changes_nothing_and_says_what_it_would_do(
    apps: AppFactory, tmp_path: Path
) -> None:
    app = await apps()
    root_id = await library(app, tmp_path / "lib", ["old.png", "new.png"])
    hostile_corpus(tmp_path, app.library.cache_dir)
    set_age(app.library.thumbnail_path(root_id, "old.png"), 100)
    put(thumbs_dir(app) / fake_name("orphan"), b"12345")
    put(thumbs_dir(app, 64) / f".{'01' * 32}.png.tmp-5", b"12", days=2)
    db = (b"data/ucore.db", b"data/logs")  # the database is compared row by row
    before = without(snapshot(tmp_path), *db)
    before_db = dump(apps.db_path)
    record = await cleanup(app, dry_run=True, **AGE_ONLY)
    res = record.result
    assert without(snapshot(tmp_path), *db) == before
    assert any(b"\n" in k for k in before)  # the hostile corpus is part of it
    assert dump(apps.db_path, skip_tasks=[record.id]) == before_db
    assert res["dry_run"] is True
    assert (res["deleted"], res["expired"], res["orphans"], res["temp_files"]) == (3, 1, 1, 1)
    assert res["evicted"] == 1
    assert res["bytes_freed"] == app.library.thumbnail_path(root_id, "old.png").stat().st_size + 7
    (entry,) = await journal_of(app, record.id, "maintenance.cache_cleanup")
    assert entry.message.startswith("dry run: would delete 2 thumbnails and 1 temp files")
    assert "would free" in entry.message


async def test_empty_folders_are_removed_a_folder_with_foreign_files_stays(
    apps: AppFactory,
) -> None:
    app = await apps()
    put(thumbs_dir(app, 64) / fake_name("a"))
    put(thumbs_dir(app, 128) / fake_name("b"))
    keep = put(thumbs_dir(app, 256) / "notes.txt")
    put(thumbs_dir(app, 256) / fake_name("c"))
    res = (await cleanup(app, **NO_LIMITS)).result
    assert res["deleted"] == 3
    assert sorted(p.name for p in (app.library.cache_dir / "thumbnails").iterdir()) == ["256"]
    assert keep.exists()
    keep.unlink()
    put(thumbs_dir(app, 256) / fake_name("d"))
    await cleanup(app, **NO_LIMITS)
    assert not (app.library.cache_dir / "thumbnails").exists()
    assert app.library.cache_dir.is_dir()


async def test_a_missing_cache_or_thumbnails_folder_is_nothing_to_do(apps: AppFactory) -> None:
    app = await apps()
    for present in (True, False):  # the cache dir exists (no thumbnails folder), then not
        if not present:
            shutil.rmtree(app.library.cache_dir)
        record = await cleanup(app)
        assert record.result["nothing_to_do"] is True
        assert record.result["deleted"] == 0
        (entry,) = await journal_of(app, record.id, "maintenance.cache_cleanup")
        assert entry.message == "no thumbnails in the cache: nothing to do"


async def test_a_thumbnails_folder_that_is_a_symlink_is_not_followed(
    apps: AppFactory, tmp_path: Path
) -> None:
    app = await apps()
    elsewhere = tmp_path / "elsewhere"
    victim = put(elsewhere / "256" / fake_name("elsewhere"))
    app.library.cache_dir.mkdir(parents=True, exist_ok=True)
    (app.library.cache_dir / "thumbnails").symlink_to(elsewhere)
    record = await cleanup(app, **NO_LIMITS)
    assert victim.exists()
    assert record.result["skipped"]["symlinks"] == 1
    assert record.result["warnings"] == [
        f"{app.library.cache_dir.resolve()}/thumbnails is a symlink: left alone"
    ]


# -- refusals -------------------------------------------------------------------------------
async def refused(app: App, bait: Path | None = None) -> str:
    record = await run(app, "cache_cleanup", NO_LIMITS)
    assert record.state is TaskState.FAILED, record.result
    assert record.error is not None and "\n" not in record.error
    if bait is not None:
        assert lexists(bait)
    return record.error


async def test_a_cache_dir_that_is_a_library_root_or_overlaps_one_is_refused(
    apps: AppFactory, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    bait = put(lib / "thumbnails" / "256" / fake_name("bait"))
    setup = await apps()
    root, _ = await setup.library.add_root(lib)
    await apps.close_all()
    apps.apps.clear()
    for cache, words in (
        (lib, f"it is library root {root.id} ({lib.resolve()})"),
        (lib / "sub", f"it is inside library root {root.id}"),
        (tmp_path, f"it holds library root {root.id}"),
    ):
        app = await app_with_cache(apps, cache)
        error = await refused(app, bait)
        assert error.startswith("UnsafeCacheDir: refusing to clean the cache dir"), error
        assert words in error
        await app.shutdown()
        apps.apps.remove(app)
    # through a symlink too: the cache dir's real path is compared
    link = tmp_path / "link-to-lib"
    link.symlink_to(lib)
    app = await app_with_cache(apps, link)
    # parse_config resolves configured paths; the task resolves again (a link made later)
    assert "is library root" in await refused(app, bait)


async def test_root_and_home_dirs_are_refused(
    apps: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await app_with_cache(apps, "/")
    assert "it is the file system's root /" in await refused(app)
    await app.shutdown()
    apps.apps.remove(app)
    home = tmp_path / "home"
    bait = put(home / "thumbnails" / "256" / fake_name("bait"))
    monkeypatch.setenv("HOME", str(home))
    app = await app_with_cache(apps, home)
    assert f"it is the home dir {home.resolve()}" in await refused(app, bait)
    await app.shutdown()
    apps.apps.remove(app)
    app = await app_with_cache(apps, tmp_path)  # holds the home dir
    assert f"it holds {home.resolve()}" in await refused(app, bait)


def test_check_cache_dir_rules() -> None:
    check = cache_cleanup.check_cache_dir
    check("/var/cache/ucore", [(1, "/srv/photos")], ["/home/ann"])
    check("/srv/photos-cache", [(1, "/srv/photos")], [])  # a shared prefix is not inside
    for real, roots, homes in (
        ("/", [], []),
        ("/home/ann", [], ["/home/ann"]),
        ("/home", [], ["/home/ann"]),
        ("/srv/photos", [(1, "/srv/photos")], []),
        ("/srv/photos/.cache", [(1, "/srv/photos")], []),
        ("/srv", [(1, "/srv/photos")], []),
    ):
        with pytest.raises(cache_cleanup.UnsafeCacheDir):
            check(real, roots, homes)


# -- cancel and budget ----------------------------------------------------------------------
def stop_after(monkeypatch: pytest.MonkeyPatch, calls: int, what: str) -> list[int]:
    """``MaintenanceRun.step`` stops the run at its ``calls``-th call: the budget runs out
    (``what`` = "budget") or a cancel arrives ("cancel")."""
    real_step = MaintenanceRun.step
    count = [0]

    def step(self: MaintenanceRun) -> None:
        count[0] += 1
        if count[0] >= calls:
            if what == "budget":
                raise BudgetExhausted
            self.ctx.request_stop("cancel")
        real_step(self)

    monkeypatch.setattr(MaintenanceRun, "step", step)
    return count


async def test_budget_stops_between_steps_with_a_partial_result(
    apps: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    names = [f"p{i:02d}.png" for i in range(12)]
    root_id = await library(app, tmp_path / "lib", names)
    for n in names:
        set_age(app.library.thumbnail_path(root_id, n), 40)
    monkeypatch.setattr(cache_cleanup, "DELETE_STEP", 2)
    monkeypatch.setattr(cache_cleanup, "CHUNK", 4)
    monkeypatch.setattr(cache_cleanup, "EVICT_BATCH", 3)  # two calls at once per chunk
    # steps: one per page of records, then one every 2 deletions and one after each chunk
    stop_after(monkeypatch, 5, "budget")  # (the budget below is only for the warning's words)
    record = await cleanup(app, time_budget_seconds=3600, **AGE_ONLY)
    res = record.result
    assert res["partial"] is True and 0 < res["deleted"] < len(names)
    assert "time budget" in res["warnings"][-1]
    got = await states(app, root_id)
    on_disk = {n: app.library.thumbnail_path(root_id, n).exists() for n in names}
    # a deleted thumbnail's record is evicted; evicted ones not yet deleted are orphans now
    assert all(got[n] is ThumbState.EVICTED for n in names if not on_disk[n])
    assert sum(got[n] is ThumbState.EVICTED for n in names) == res["evicted"]
    assert res["deleted"] == sum(not v for v in on_disk.values())
    monkeypatch.undo()
    again = (await cleanup(app, **AGE_ONLY)).result
    assert again["partial"] is False
    assert not any(app.library.thumbnail_path(root_id, n).exists() for n in names)
    assert set((await states(app, root_id)).values()) == {ThumbState.EVICTED}


async def test_a_budget_used_up_at_once_touches_nothing(apps: AppFactory) -> None:
    app = await apps()
    orphan = put(thumbs_dir(app) / fake_name("orphan"))
    record = await cleanup(app, time_budget_seconds=1e-9, **NO_LIMITS)
    assert record.result["partial"] is True and record.result["deleted"] == 0
    assert orphan.exists()


async def test_cancel_stops_the_deletions(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await apps()
    orphans = [put(thumbs_dir(app) / fake_name(f"o{i}")) for i in range(10)]
    monkeypatch.setattr(cache_cleanup, "DELETE_STEP", 3)
    stop_after(monkeypatch, 2, "cancel")  # the records' page, then the third deletion
    record = await run(app, "cache_cleanup", NO_LIMITS)
    assert record.state is TaskState.CANCELLED, (record.state, record.error)
    assert sum(p.exists() for p in orphans) == 7
    (entry,) = await journal_of(app, record.id, "maintenance.cache_cleanup")
    assert entry.data["deleted"] == 3


async def test_cancel_while_scanning(apps: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    app = await apps()
    orphans = [put(thumbs_dir(app) / fake_name(f"o{i}")) for i in range(10)]
    monkeypatch.setattr(cache_cleanup, "SCAN_STEP", 4)
    stop_after(monkeypatch, 1, "cancel")
    record = await run(app, "cache_cleanup", NO_LIMITS)
    assert record.state is TaskState.CANCELLED
    assert all(p.exists() for p in orphans)


async def test_a_cancel_waits_for_the_thread_before_closing_its_folders(
    apps: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler is cancelled (task.cancel()) while its thread deletes: the folder fds stay
    open until the thread has stopped at its next step, never closed under it."""
    app = await apps()
    orphans = [put(thumbs_dir(app) / fake_name(f"o{i}")) for i in range(5)]
    monkeypatch.setattr(cache_cleanup, "DELETE_STEP", 1)
    entered, release = threading.Event(), threading.Event()
    fd_open_after_cancel: list[bool] = []

    def hook(fd: int, name: str) -> None:
        if not entered.is_set():
            entered.set()
            assert release.wait(10)
            try:
                os.fstat(fd)
                fd_open_after_cancel.append(True)
            except OSError:
                fd_open_after_cancel.append(False)

    monkeypatch.setattr(cache_cleanup, "_before_delete", hook)
    task_id = await app.tasks.submit("cache_cleanup", NO_LIMITS)
    await wait_until(entered.is_set, what="the first delete")
    await app.tasks.cancel(task_id)
    await asyncio.sleep(0.05)  # let the handler see its cancellation (not a timing assertion)
    release.set()
    record = await finish(app, task_id)
    assert record.state is TaskState.CANCELLED
    assert fd_open_after_cancel == [True]
    assert sum(p.exists() for p in orphans) == 4  # the one in hand, then the step stopped it


# -- the CLI and the words ------------------------------------------------------------------
def test_cli_run_wait_json(ucore_cli: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = data / "cache" / "thumbnails" / "256"
    orphans = [put(folder / fake_name(f"cli {i}"), b"x" * 100) for i in range(3)]
    young = put(folder / fake_name("young"), b"x" * 100, days=0)
    foreign = put(folder / "README", b"not ours")

    def go(*args: str) -> dict[str, Any]:
        proc = ucore_cli("--data-dir", str(data), "maintenance", "run", "cache_cleanup", *args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        task: dict[str, Any] = json.loads(proc.stdout)
        return task

    dry = go("--dry-run", "--wait", "--json")
    assert dry["state"] == "completed" and dry["result"]["dry_run"] is True
    assert dry["result"]["deleted"] == 3 and all(p.exists() for p in orphans)
    task = go("--wait", "--json", "--param", "max_age_days=null")
    res = task["result"]
    assert task["state"] == "completed"
    assert (res["deleted"], res["orphans"], res["bytes_freed"], res["bytes_remaining"]) == (
        3,
        3,
        300,
        100,
    )
    assert res["skipped"]["foreign"] == 1 and res["skipped"]["young_orphan"] == 1
    assert not any(p.exists() for p in orphans) and young.exists() and foreign.exists()
    listed = ucore_cli("--data-dir", str(data), "maintenance", "list", "--json")
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "cache_cleanup")
    assert "deleted 3 thumbnails, freed 300 B; 100 B remain" in row["last_result"]


def test_summary_in_words() -> None:
    result = {
        "deleted": 1204,
        "temp_files": 0,
        "bytes_freed": int(3.1 * 2**30),
        "bytes_remaining": 2 * 2**30,
        "skipped": {"foreign": 2, "symlinks": 1},
        "dry_run": False,
    }
    assert cache_cleanup.summary(result) == (
        "deleted 1,204 thumbnails, freed 3.1 GB; 2.0 GB remain; 3 entries skipped"
    )
    result.update(dry_run=True, temp_files=4, skipped={})
    assert cache_cleanup.summary(result) == (
        "would delete 1,200 thumbnails and 4 temp files, would free 3.1 GB; 2.0 GB remain"
    )
