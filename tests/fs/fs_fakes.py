"""Stand-ins for ``os.scandir`` entries: a file on another device, an entry that cannot be
stat-ed, one that vanishes between the listing and its ``lstat``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

Tweak = Callable[[Any], Any]


class Entry:
    """Wraps a real DirEntry; ``tweak(real_entry)`` decides what ``stat`` gives."""

    def __init__(self, real: os.DirEntry[str], tweak: Tweak) -> None:
        self._real = real
        self._tweak = tweak
        self.name = real.name
        self.path = real.path

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        result = self._tweak(self._real)
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, os.stat_result)
        return result

    def is_symlink(self) -> bool:
        return self._real.is_symlink()

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._real.is_dir(follow_symlinks=follow_symlinks)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._real.is_file(follow_symlinks=follow_symlinks)


class Listing:
    """What the patched ``os.scandir`` returns: a context manager over wrapped entries."""

    def __init__(self, entries: list[Any]) -> None:
        self._entries = entries

    def __enter__(self) -> Iterator[Any]:
        return iter(self._entries)

    def __exit__(self, *exc: object) -> None:
        return None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries)


def with_device(st: os.stat_result, device: int) -> os.stat_result:
    values = list(st)
    values[2] = device  # st_dev
    return os.stat_result(values)


def patch_scandir(
    monkeypatch: Any, tweaks: dict[str, Tweak], before_stat: Callable[[str], None] | None = None
) -> None:
    """Make ``os.scandir`` (as the filter calls it, on a descriptor) wrap the entries whose
    name is in ``tweaks``; ``before_stat(name)`` runs after the listing, before any stat."""
    real = os.scandir

    def fake(target: Any = ".") -> Any:
        with real(target) as it:
            entries = list(it)
        wrapped: list[Any] = []
        for e in entries:
            tweak = tweaks.get(e.name)
            wrapped.append(Entry(e, tweak) if tweak else e)
        if before_stat is not None:
            for e in entries:
                before_stat(e.name)
        return Listing(wrapped)

    monkeypatch.setattr(os, "scandir", fake)


def real_lstat(entry: Any) -> os.stat_result:
    return entry.stat(follow_symlinks=False)  # type: ignore[no-any-return]
