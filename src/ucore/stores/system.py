"""The store as a system: opened (and migrated) first, closed last."""

from __future__ import annotations

import logging

from ucore.foundation.context import Context
from ucore.foundation.system import BaseSystem
from ucore.stores.base import Store
from ucore.stores.factory import open_store

log = logging.getLogger("ucore.stores")


class StoreSystem(BaseSystem):
    name = "store"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.store: Store = open_store(ctx.locations.database_url, ctx.config.config.database)

    async def initialize(self) -> None:
        await self.store.open()
        log.debug("store open: %s", self.store.display_url)

    async def shutdown(self) -> None:
        await self.store.close()
