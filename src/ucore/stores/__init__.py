"""Storage: the async :class:`Store` interface and its backends. All SQL lives here."""

from ucore.stores.base import Store, StoreError, StoreLockedError
from ucore.stores.factory import open_store

__all__ = ["Store", "StoreError", "StoreLockedError", "open_store"]
