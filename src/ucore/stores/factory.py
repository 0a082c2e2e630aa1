"""Pick the store for a ``database.url``."""

from __future__ import annotations

from ucore.foundation.config.models import DatabaseConfig
from ucore.foundation.paths import redact_url, sqlite_path
from ucore.stores.base import Store, StoreError


def open_store(url: str, db: DatabaseConfig | None = None) -> Store:
    """A store for ``url`` (not yet opened: call ``await store.open()``)."""
    db = db or DatabaseConfig()
    path = sqlite_path(url)
    if path is not None:
        from ucore.stores.sqlite.store import SQLiteStore

        return SQLiteStore(path, synchronous=db.synchronous, busy_timeout=db.busy_timeout_seconds)
    if url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"PostgreSQL store not available yet for {redact_url(url)}")
    raise StoreError(f"unsupported database url: {redact_url(url)}")
