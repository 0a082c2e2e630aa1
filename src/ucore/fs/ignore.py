"""A root's ignore globs: which names and paths below the root are not part of the library.

* A glob **without** ``/`` matches a file's or folder's **name** at any depth:
  ``*.tmp``, ``node_modules``, ``Thumbs.db``.
* A glob **with** ``/`` matches the **path below the root**: ``exports/old``,
  ``raw/*.cr2``, ``**/cache``; a leading ``/`` is allowed (``/build`` = only at the top).
* ``*`` and ``?`` stay inside one path component; ``**`` crosses components; ``[abc]`` and
  ``[!abc]`` are character classes. Matching is case-sensitive.
* A folder that matches is excluded with everything below it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


class IgnoreError(ValueError):
    """An ignore glob that cannot be used."""


def _translate(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                i += 2
                if glob.startswith("/", i):  # "**/" also matches nothing at all
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2 if glob.startswith(("[!", "[]"), i) else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def check_globs(globs: Sequence[str]) -> tuple[str, ...]:
    """The globs, validated (an empty glob or one with a NUL is refused)."""
    clean: list[str] = []
    for glob in globs:
        if not isinstance(glob, str) or not glob.strip("/") or "\0" in glob:
            raise IgnoreError(f"not a usable ignore glob: {glob!r}")
        try:
            glob.encode("utf-8")
        except UnicodeEncodeError:
            raise IgnoreError(f"an ignore glob must be valid text: {glob!r}") from None
        try:
            re.compile(_translate(glob.lstrip("/")))
        except re.error as exc:
            raise IgnoreError(f"not a usable ignore glob: {glob!r} ({exc})") from None
        clean.append(glob)
    return tuple(clean)


class IgnoreRules:
    """The compiled globs of one root; ``matches(dir_rel, name)`` is the hot call."""

    def __init__(self, globs: Sequence[str]) -> None:
        self.globs = check_globs(globs)
        names = [g for g in self.globs if "/" not in g]
        paths = [g.lstrip("/") for g in self.globs if "/" in g]
        self._name = _compile(names)
        self._path = _compile(paths)

    def __bool__(self) -> bool:
        return bool(self.globs)

    def matches(self, dir_rel: str, name: str) -> bool:
        """Whether the entry ``name`` of the directory ``dir_rel`` ("" = root) is ignored."""
        if self._name is not None and self._name.match(name):
            return True
        if self._path is not None:
            return self._path.match(f"{dir_rel}/{name}" if dir_rel else name) is not None
        return False


def _compile(globs: list[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("(?s:" + "|".join(f"(?:{_translate(g)})" for g in globs) + r")\Z")
