"""Thumbnails: naming, private files, atomic writes, failures of one file, staleness."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
import struct
import zlib
from pathlib import Path

import pytest
from fs_helpers import Lib
from PIL import Image

import ucore.fs.thumbnails as thumbs
from ucore.fs.thumbnails import NAME_RE, TEMP_PATTERN, TEMP_RE, thumbnail_path
from ucore.stores.records import ThumbState


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_the_naming_rule(tmp_path: Path) -> None:
    path = thumbnail_path(tmp_path, 7, "a/b c.jpg", 128)
    digest = hashlib.sha256(b"7:a/b c.jpg").hexdigest()
    assert path == tmp_path / "thumbnails" / "128" / f"{digest}.png"
    assert NAME_RE.fullmatch(path.name)
    assert thumbnail_path(tmp_path, 7, "x.jpg").parent.name == "256"  # the default size
    odd = os.fsdecode(b"caf\xe9.jpg")  # a non-UTF-8 name: hashed as its bytes on disk
    expected = hashlib.sha256(b"7:caf\xe9.jpg").hexdigest() + ".png"
    assert thumbnail_path(tmp_path, 7, odd).name == expected
    assert thumbnail_path(tmp_path, 8, "a/b c.jpg", 128) != path


async def test_thumbnails_are_made_private_and_named(lib: Lib, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (640, 480), "blue").save(root / "big.jpg", quality=90)
    Image.new("RGBA", (50, 300), (0, 255, 0, 128)).save(root / "sub" / "tall.png")
    Image.new("P", (20, 20)).save(root / "sub" / "pal.gif")
    (root / "notes.txt").write_text("not an image")
    root_id = await lib.add(root)
    await lib.scan(root_id)
    result = await lib.thumbnails()
    assert (result["generated"], result["failed"], result["missing"]) == (3, 0, 0)
    cache = lib.app.library.cache_dir
    for rel, size in (("big.jpg", (256, 192)), ("sub/tall.png", (43, 256)), ("sub/pal.gif", None)):
        path = thumbnail_path(cache, root_id, rel)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with Image.open(path) as im:
            assert im.format == "PNG" and max(im.size) <= 256
            if size:
                assert im.size == size
    for d in (cache / "thumbnails", cache / "thumbnails" / "256"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert not any(TEMP_RE.fullmatch(p.name) for p in (cache / "thumbnails" / "256").iterdir())
    recs = await lib.records(root_id)
    assert recs["big.jpg"].thumb_state is ThumbState.DONE and recs["big.jpg"].thumbnail_valid
    assert recs["notes.txt"].thumb_state is ThumbState.NONE
    infos = await lib.app.library.roots()
    assert infos[0].to_json()["thumbnails"] == {"done": 3, "pending": 0, "failed": 0, "evicted": 0}


async def test_a_broken_or_huge_image_fails_only_itself(lib: Lib, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    Image.new("RGB", (30, 30), "white").save(root / "good.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    (root / "bomb.png").write_bytes(png_claiming(40_000, 40_000))
    root_id = await lib.add(root)
    await lib.scan(root_id)
    result = await lib.thumbnails()
    assert (result["generated"], result["failed"]) == (1, 3)
    errors = {f["path"]: f["error"] for f in result["failures"]}
    assert "too big" in errors["bomb.png"]
    assert set(errors) == {"broken.jpg", "empty.png", "bomb.png"}
    recs = await lib.records(root_id)
    assert recs["good.png"].thumb_state is ThumbState.DONE
    assert {recs[p].thumb_state for p in errors} == {ThumbState.FAILED}
    cache = lib.app.library.cache_dir
    assert not thumbnail_path(cache, root_id, "broken.jpg").exists()
    entry = (await lib.app.library.journal.entries(kind="library.thumbnails"))[0]
    assert "1 made, 3 failed" in entry.message


async def test_a_changed_image_gets_a_new_thumbnail(lib: Lib, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    src = root / "pic.png"
    Image.new("RGB", (100, 100), "red").save(src)
    root_id = await lib.add(root)
    await lib.scan(root_id)
    await lib.thumbnails()
    thumb = thumbnail_path(lib.app.library.cache_dir, root_id, "pic.png")
    with Image.open(thumb) as im:
        assert im.getpixel((5, 5)) == (255, 0, 0)
    first = (await lib.records(root_id))["pic.png"]
    Image.new("RGB", (100, 100), "blue").save(src)
    later = first.mtime_ns + 5_000_000_000
    os.utime(src, ns=(later, later))
    result = await lib.scan(root_id)
    assert result["changed"] == 1
    stale = (await lib.records(root_id))["pic.png"]
    assert stale.thumb_state is ThumbState.PENDING and not stale.thumbnail_valid
    again = await lib.thumbnails()
    assert again["generated"] == 1
    fresh = (await lib.records(root_id))["pic.png"]
    assert fresh.thumbnail_valid and fresh.thumb_mtime_ns == later
    with Image.open(thumb) as im:
        assert im.getpixel((5, 5)) == (0, 0, 255)
    # unchanged since: nothing to do
    await lib.scan(root_id)
    assert (await lib.thumbnails())["generated"] == 0


async def test_written_under_a_temp_name_then_renamed(
    lib: Lib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    Image.new("RGB", (10, 10)).save(root / "a.png")
    root_id = await lib.add(root)
    await lib.scan(root_id)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(thumbs.os, "replace", spy)
    await lib.thumbnails()
    final = thumbnail_path(lib.app.library.cache_dir, root_id, "a.png").name
    assert len(renames) == 1
    temp, dest = renames[0]
    assert dest == final
    assert temp == f".{final}.tmp-{os.getpid()}"
    assert fnmatch.fnmatch(temp, TEMP_PATTERN) and TEMP_RE.fullmatch(temp)
    assert not fnmatch.fnmatch(final, TEMP_PATTERN)


async def test_a_vanished_source_stays_pending(lib: Lib, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    Image.new("RGB", (10, 10)).save(root / "a.png")
    Image.new("RGB", (10, 10)).save(root / "b.png")
    root_id = await lib.add(root)
    await lib.scan(root_id)
    (root / "a.png").unlink()
    os.symlink(root / "b.png", root / "c.png")  # not scanned yet; never followed anyway
    result = await lib.thumbnails()
    assert (result["generated"], result["missing"], result["failed"]) == (1, 1, 0)
    assert (await lib.records(root_id))["a.png"].thumb_state is ThumbState.PENDING
