"""A demo library: ``create_demo(DIR, files=N)`` writes exactly N library files.

Nested folders of small real images (PNG and JPEG made with Pillow), text documents and
other files, with modification times spread over a few years. Fast (50,000 files in a few
seconds): a handful of images is encoded once, with varied content, and their bytes are
reused; documents come from a word list. Deterministic for a given ``seed``. Every file it
writes is a library file (no hidden names), so a scan of DIR finds exactly N.
"""

from __future__ import annotations

import io
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ucore.fs.errors import LibraryError

#: share of each kind (images, documents, the rest other files)
IMAGE_SHARE = 0.45
DOCUMENT_SHARE = 0.35
FILES_PER_FOLDER = 120
#: distinct encoded images reused across the library
IMAGE_VARIANTS = 16
_WORDS = ("library", "index", "folder", "photo", "archive", "scan", "thumbnail", "journal",
          "record", "summer", "winter", "holiday", "project", "report", "draft", "notes",
          "budget", "meeting", "family", "garden", "river", "mountain", "city", "street",
          "morning", "evening", "light", "shadow", "colour", "paper", "final", "review",
          "plan", "idea", "list")  # fmt: skip
_MONTHS = ("01 January", "02 February", "03 March", "04 April", "05 May", "06 June", "07 July",
           "08 August", "09 September", "10 October", "11 November", "12 December")  # fmt: skip
_DOC_EXT = ("txt", "md", "csv", "json")
_OTHER_EXT = ("bin", "dat", "cache", "pack")


class DemoError(LibraryError):
    pass


@dataclass(frozen=True)
class DemoSummary:
    path: str
    files: int
    images: int
    documents: int
    other: int
    folders: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _images(rng: random.Random) -> list[tuple[str, bytes]]:
    """A few small images with different content: (extension, encoded bytes)."""
    out: list[tuple[str, bytes]] = []
    for i in range(IMAGE_VARIANTS):
        w, h = rng.choice(((96, 64), (128, 96), (160, 120), (120, 160)))
        base = tuple(rng.randrange(40, 220) for _ in range(3))
        img = Image.new("RGB", (w, h), base)
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = rng.randrange(w), rng.randrange(h)
            box = (x0, y0, x0 + rng.randrange(10, w), y0 + rng.randrange(10, h))
            colour = tuple(rng.randrange(256) for _ in range(3))
            if rng.random() < 0.5:
                draw.ellipse(box, fill=colour)
            else:
                draw.rectangle(box, fill=colour)
        buf = io.BytesIO()
        if i % 2:
            img.save(buf, format="PNG")
            out.append(("png", buf.getvalue()))
        else:
            img.save(buf, format="JPEG", quality=80)
            out.append(("jpg", buf.getvalue()))
    return out


def _document(rng: random.Random, ext: str, n: int) -> bytes:
    words = rng.choices(_WORDS, k=rng.randrange(40, 400))
    if ext == "csv":
        rows = ["item,value,note"] + [f"{w},{rng.randrange(1000)},{n}" for w in words[:40]]
        return ("\n".join(rows) + "\n").encode()
    if ext == "json":
        return (json.dumps({"id": n, "words": words[:50]}) + "\n").encode()
    title = " ".join(words[:4]).capitalize()
    body = " ".join(words[4:])
    prefix = "# " if ext == "md" else ""
    return f"{prefix}{title}\n\n{body}\n".encode()


def _plan(total: int) -> list[tuple[str, int]]:
    """(kind, count) per folder kind, in the order they are written."""
    images = int(total * IMAGE_SHARE)
    documents = int(total * DOCUMENT_SHARE)
    return [("image", images), ("document", documents), ("other", total - images - documents)]


def _folder(kind: str, index: int) -> str:
    if kind == "image":
        return f"Photos/{2018 + index // 12 % 8}/{_MONTHS[index % 12]}"
    if kind == "document":
        return f"Documents/Projects {index // 10 + 1:02d}/Part {index % 10 + 1}"
    return f"Other/Batch {index // 10 + 1:02d}/Set {index % 10 + 1}"


def create_demo(path: str | os.PathLike[str], files: int = 2000, *, seed: int = 0) -> DemoSummary:
    """Write exactly ``files`` library files under ``path`` (new or empty folder)."""
    if files < 1:
        raise DemoError("--files must be at least 1")
    dest = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if dest.exists():
        if not dest.is_dir():
            raise DemoError(f"{dest} exists and is not a folder")
        if any(dest.iterdir()):
            raise DemoError(f"{dest} is not empty: choose a new or empty folder")
    started = time.monotonic()
    rng = random.Random(seed)
    images = _images(rng)
    now = time.time()
    folders: set[str] = set()
    counts = {"image": 0, "document": 0, "other": 0}
    for kind, count in _plan(files):
        for i in range(count):
            folder = _folder(kind, i // FILES_PER_FOLDER)
            if folder not in folders:
                (dest / folder).mkdir(parents=True, exist_ok=True)
                folders.add(folder)
            if kind == "image":
                ext, data = images[(i * 7 + i // 5) % len(images)]
                name = f"IMG_{i + 1:05d}.{ext}"
            elif kind == "document":
                ext = _DOC_EXT[i % len(_DOC_EXT)]
                name, data = f"{rng.choice(_WORDS)}-{i + 1:05d}.{ext}", _document(rng, ext, i)
            else:
                ext = _OTHER_EXT[i % len(_OTHER_EXT)]
                name, data = f"blob-{i + 1:05d}.{ext}", rng.randbytes(rng.randrange(64, 4096))
            target = dest / folder / name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            when = now - rng.randrange(3600, 4 * 365 * 86400)
            os.utime(target, (when, when))
            counts[kind] += 1
    return DemoSummary(
        path=str(dest),
        files=files,
        images=counts["image"],
        documents=counts["document"],
        other=counts["other"],
        folders=len({p for f in folders for p in _parents(f)}),
        seconds=round(time.monotonic() - started, 3),
    )


def _parents(folder: str) -> list[str]:
    parts = folder.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
