"""File names and relative paths as the database keeps them.

Python gives file names as ``str``; a name that is not valid UTF-8 on disk arrives with its
bad bytes as lone surrogates (``surrogateescape``, what ``os.scandir`` and ``os.fsdecode``
do). Such a string cannot be stored as SQL text (SQLite's driver and PostgreSQL both refuse
lone surrogates), yet the index must give every name back exactly.

The rule, identical for every backend:

* a name or relative path that is valid Unicode is stored **as it is** (nearly every name:
  readable, searchable, sortable in SQL);
* any other is stored as ``"/"`` followed by its bytes (``os.fsencode``) percent-encoded.

A relative path never starts with ``"/"``, so the two forms cannot be confused and the
mapping is one-to-one: distinct names stay distinct (the unique indexes hold) and
:func:`from_db` gives back the exact ``str`` that :func:`to_db` got.

Absolute paths (a root's folder) always start with ``"/"``; :func:`abs_to_db` marks their
escaped form with ``"%"`` instead, which no absolute path starts with.
"""

from __future__ import annotations

import os
from urllib.parse import quote_from_bytes, unquote_to_bytes

#: The first character of an escaped name (never the first of a relative path).
ESCAPE = "/"
#: The first character of an escaped absolute path (never the first of an absolute path).
ABS_ESCAPE = "%"


def to_db(name: str) -> str:
    """The stored form of a name or relative path."""
    escaped = _escape(name)
    return name if escaped is None else ESCAPE + escaped


def from_db(text: str) -> str:
    """The name or relative path a stored form stands for."""
    if text[:1] == ESCAPE:
        return os.fsdecode(unquote_to_bytes(text[1:]))
    return text


def _escape(name: str) -> str | None:
    """The percent-encoded bytes of a name that is not valid Unicode, else None."""
    if name.isascii():
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return quote_from_bytes(os.fsencode(name), safe="/")
    return None


def abs_to_db(path: str) -> str:
    """The stored form of an absolute path."""
    escaped = _escape(path)
    return path if escaped is None else ABS_ESCAPE + escaped


def abs_from_db(text: str) -> str:
    if text[:1] == ABS_ESCAPE:
        return os.fsdecode(unquote_to_bytes(text[1:]))
    return text
