"""The journal: an append-only record of what happened to the library.

Entries (time, kind, message, JSON data, task id) are written by scans, thumbnail runs,
root additions and removals, and the maintenance tasks; they are never changed, only purged
by age (``database_cleanup``). Kinds are dotted names; a query for ``library`` also returns
``library.scan`` and every other ``library.*`` entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ucore.foundation.clock import Clock
from ucore.stores.base import Store
from ucore.stores.records import JournalEntry, JournalFilter, NewJournalEntry

#: The kinds the library writes.
SCAN = "library.scan"
THUMBNAILS = "library.thumbnails"
ROOT_ADDED = "library.add"
ROOT_REMOVED = "library.remove"


class Journal:
    """Write and read journal entries (times from the injected clock)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def write(
        self,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        task_id: int | None = None,
    ) -> int:
        if not kind or kind != kind.strip():
            raise ValueError(f"a journal kind is a non-empty name: {kind!r}")
        entry = NewJournalEntry(self.clock.now(), kind, message, dict(data or {}), task_id)
        return await self.store.add_journal(entry)

    async def entries(
        self,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[JournalEntry]:
        """Newest first; ``kind`` includes its dotted sub-kinds; ``until`` is exclusive."""
        return await self.store.list_journal(JournalFilter(kind, since, until, limit))
