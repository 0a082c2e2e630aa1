"""The kind of a file, from its extension alone (no content sniffing: scanning stays fast).

Kinds: ``image``, ``video``, ``audio``, ``document``, ``other``. Only images get thumbnails.
"""

from __future__ import annotations

import enum


class Kind(enum.StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    OTHER = "other"


_EXTENSIONS: dict[Kind, tuple[str, ...]] = {
    Kind.IMAGE: (
        "jpg", "jpeg", "jpe", "png", "gif", "bmp", "tif", "tiff", "webp", "ico", "ppm",
        "pgm", "pbm", "pnm", "tga", "heic", "heif", "avif", "jxl", "svg", "psd", "xcf",
        "cr2", "cr3", "nef", "arw", "dng", "orf", "rw2", "raf",
    ),
    Kind.VIDEO: (
        "mp4", "m4v", "mov", "avi", "mkv", "webm", "wmv", "flv", "mpg", "mpeg", "3gp",
        "ogv", "mts", "m2ts", "ts", "vob",
    ),
    Kind.AUDIO: (
        "mp3", "m4a", "aac", "flac", "wav", "ogg", "oga", "opus", "wma", "aiff", "aif",
        "alac", "ape", "mid", "midi",
    ),
    Kind.DOCUMENT: (
        "txt", "md", "rst", "pdf", "doc", "docx", "odt", "rtf", "xls", "xlsx", "ods", "csv",
        "tsv", "ppt", "pptx", "odp", "epub", "html", "htm", "xml", "json", "yaml", "yml",
        "tex", "log",
    ),
}  # fmt: skip

#: lower-case extension (without the dot) -> kind
BY_EXTENSION: dict[str, str] = {
    ext: kind.value for kind, exts in _EXTENSIONS.items() for ext in exts
}

#: the kinds that get a thumbnail
THUMBNAIL_KINDS = frozenset({Kind.IMAGE.value})
_OTHER = Kind.OTHER.value  # a plain str: an enum's .value is slow in the scan's hot loop


def kind_of(name: str) -> str:
    """The kind of a file named ``name`` (case does not matter; no extension: other)."""
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a name like ".profile"
        return _OTHER
    return BY_EXTENSION.get(name[dot + 1 :].lower(), _OTHER)
