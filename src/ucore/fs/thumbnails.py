"""Thumbnails: where they live (one public naming function) and how one is made.

**Naming.** ``thumbnail_path(cache_dir, root_id, rel_path, size)`` =
``cache_dir/thumbnails/<size>/<sha256 of "<root_id>:<rel_path>">.png`` (the path encoded as
UTF-8 with ``surrogateescape``, i.e. its bytes on disk). Nothing else names thumbnails; the
cache cleanup recognises ours by :data:`NAME_RE` and stale temp files by :data:`TEMP_RE`.

**Writing.** A thumbnail is written to ``.<hash>.png.tmp-<pid>`` in the same folder
(:data:`TEMP_PATTERN`), then renamed over the final name: a reader never sees half a file.
Folders are created 0700, files 0600.

**Validity.** The record keeps the source's ``mtime_ns`` the thumbnail was made from
(``thumb_mtime_ns``); a thumbnail is valid while it equals the record's ``mtime_ns``. A scan
that sees the file change sets the thumbnail back to ``pending``.

**Failures.** The source is opened through the library filter (no symlink, same file
system), decoded by Pillow with a pixel limit (:data:`MAX_PIXELS`); a broken, unsupported
or huge image raises :class:`ThumbnailFailed` for that file only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps

from ucore.fs.filter import LibraryFilter

THUMBNAILS_DIR = "thumbnails"
DEFAULT_SIZE = 256
#: glob of a thumbnail's temp file while it is written (in the thumbnail's folder)
TEMP_PATTERN = ".*.png.tmp-*"
#: a thumbnail's file name
NAME_RE = re.compile(r"[0-9a-f]{64}\.png")
#: a temp file's name (the number is the writer's pid)
TEMP_RE = re.compile(r"\.[0-9a-f]{64}\.png\.tmp-[0-9]+")
#: the most pixels a source image may have (Pillow's own bomb limit)
MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
#: the formats Pillow may decode here (no exotic plugins on files we did not make)
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM", "TGA", "MPO")

# We check the pixel count ourselves (and fail that file); Pillow's warning is noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ThumbnailFailed(Exception):
    """This image cannot get a thumbnail (broken, unsupported, too big, unreadable)."""


def thumbnail_name(root_id: int, rel_path: str) -> str:
    key = f"{root_id}:{rel_path}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest() + ".png"


def thumbnail_path(
    cache_dir: str | os.PathLike[str], root_id: int, rel_path: str, size: int = DEFAULT_SIZE
) -> Path:
    """Where the thumbnail of ``rel_path`` in root ``root_id`` lives (the one naming rule)."""
    return Path(cache_dir) / THUMBNAILS_DIR / str(size) / thumbnail_name(root_id, rel_path)


def size_dirs(cache_dir: str | os.PathLike[str]) -> list[Path]:
    """The size folders that exist under the cache's thumbnail folder."""
    base = Path(cache_dir) / THUMBNAILS_DIR
    try:
        return [
            Path(e.path)
            for e in os.scandir(base)
            if e.name.isdigit() and e.is_dir(follow_symlinks=False)
        ]
    except OSError:
        return []


def delete_thumbnails(
    cache_dir: str | os.PathLike[str], root_id: int, rel_paths: Iterable[str]
) -> int:
    """Delete the thumbnails (every size) of these files; returns how many were deleted."""
    dirs = size_dirs(cache_dir)
    deleted = 0
    if not dirs:
        return 0
    for rel_path in rel_paths:
        name = thumbnail_name(root_id, rel_path)
        for d in dirs:
            try:
                os.unlink(d / name)
                deleted += 1
            except FileNotFoundError:
                pass
    return deleted


def private_dir(path: Path) -> None:
    """Create ``path`` and each missing parent with mode 0700 (existing ones are left)."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another writer
        os.chmod(folder, 0o700)  # whatever the umask


def make_thumbnail(flt: LibraryFilter, rel_path: str, dest: Path, size: int) -> int:
    """Make the thumbnail of ``rel_path`` at ``dest``; returns the source's mtime_ns.

    Raises FileNotFoundError when the source is gone, NotALibraryFile when it is no
    longer a library file, ThumbnailFailed when it cannot be made; an OSError while
    writing the thumbnail (disk full, …) propagates: that is not this image's fault.
    """
    try:
        fd, st = flt.open_file(rel_path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ThumbnailFailed(f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as source:
        image = _render(source, size)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    private_dir(dest.parent)
    try:
        out = os.open(tmp, flags, 0o600)
    except FileNotFoundError:
        # the cache cleanup removed the (empty) size folder in between: make it again
        private_dir(dest.parent)
        out = os.open(tmp, flags, 0o600)
    try:
        os.fchmod(out, 0o600)
        with os.fdopen(out, "wb") as f:
            image.save(f, format="PNG")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return st.st_mtime_ns


def _render(source: IO[bytes], size: int) -> Image.Image:
    try:
        with Image.open(source, formats=FORMATS) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ThumbnailFailed(f"too big: {im.width}x{im.height} pixels")
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
            small = ImageOps.exif_transpose(im) or im
            small.thumbnail((size, size))
            if small.mode not in ("RGB", "RGBA", "L", "LA"):
                alpha = "A" in small.getbands() or "transparency" in small.info
                small = small.convert("RGBA" if alpha else "RGB")
            small.load()
            return small
    except ThumbnailFailed:
        raise
    except Image.DecompressionBombError as exc:
        raise ThumbnailFailed(f"too big: {exc}") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, MemoryError) as exc:
        raise ThumbnailFailed(f"not a readable image: {exc}") from None
    except Exception as exc:  # a decoder bug on a hostile file fails this file only
        raise ThumbnailFailed(f"cannot decode: {type(exc).__name__}: {exc}") from None
