"""``ucore.bootstrap``: build the default systems for a role and start them.

This module sits above every layer: it is the one place that knows the default systems of
each layer. Later layers add their specs to :data:`DEFAULT_SYSTEMS`; an app passes its own
with ``systems=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ucore.foundation.clock import Clock, SystemClock
from ucore.foundation.config.loader import LoadedConfig, load_config
from ucore.foundation.context import Context
from ucore.foundation.errors import SystemInitError
from ucore.foundation.system import (
    BaseSystem,
    Lifecycle,
    Role,
    SystemSpec,
    filter_specs,
    order_specs,
)
from ucore.fs.system import LibrarySystem
from ucore.maintenance.service import MaintenanceService
from ucore.scheduling.scheduler import PeriodicTaskScheduler
from ucore.stores.system import StoreSystem
from ucore.tasks.system import TaskSystem


class LocationsSystem(BaseSystem):
    """Creates the data, cache and log directories (0700) before anything uses them."""

    name = "locations"

    async def initialize(self) -> None:
        self.ctx.locations.ensure()

    async def shutdown(self) -> None:
        return None


#: The systems every Foundation app gets, in declaration order (dependencies first).
DEFAULT_SYSTEMS: list[SystemSpec] = [
    SystemSpec("locations", LocationsSystem),
    SystemSpec("store", StoreSystem, depends_on=("locations",)),
    SystemSpec("tasks", TaskSystem, depends_on=("store",)),
    SystemSpec("library", LibrarySystem, depends_on=("tasks",)),
    SystemSpec("scheduler", PeriodicTaskScheduler, depends_on=("tasks",)),
    SystemSpec("maintenance", MaintenanceService, depends_on=("library",)),
]


class App:
    """A started process: its context and systems; ``await app.shutdown()`` or ``async with``."""

    def __init__(self, ctx: Context, lifecycle: Lifecycle) -> None:
        self.ctx = ctx
        self._lifecycle = lifecycle

    @property
    def config(self) -> LoadedConfig:
        return self.ctx.config

    @property
    def role(self) -> Role:
        return self.ctx.role

    @property
    def systems(self) -> dict[str, BaseSystem]:
        return dict(self.ctx.systems)

    def system(self, name: str) -> BaseSystem:
        return self.ctx.system(name)

    @property
    def tasks(self) -> TaskSystem:
        return self.ctx.typed("tasks", TaskSystem)

    @property
    def library(self) -> LibrarySystem:
        return self.ctx.typed("library", LibrarySystem)

    @property
    def maintenance(self) -> MaintenanceService:
        return self.ctx.typed("maintenance", MaintenanceService)

    @property
    def scheduler(self) -> PeriodicTaskScheduler:
        return self.ctx.typed("scheduler", PeriodicTaskScheduler)

    async def shutdown(self) -> None:
        await self._lifecycle.stop()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


async def bootstrap(
    config: LoadedConfig | None = None,
    *,
    role: Role | str = Role.SERVICE,
    clock: Clock | None = None,
    systems: Sequence[SystemSpec] = (),
    defaults: bool = True,
    **context: Any,
) -> App:
    """Build the systems for ``role`` from ``config`` and initialize them in dependency order.

    ``systems`` are the app's own, added after the defaults (they may depend on them). If one
    system fails to initialize, the ones started before it are shut down and
    :class:`~ucore.foundation.errors.SystemInitError` names it.
    """
    cfg = config if config is not None else load_config()
    ctx = Context(config=cfg, role=Role(role), clock=clock or SystemClock(), **context)
    specs = order_specs([*(DEFAULT_SYSTEMS if defaults else []), *systems])
    chosen = filter_specs(specs, ctx.role, ctx)
    names = {s.name for s in chosen}
    built: list[BaseSystem] = []
    for spec in chosen:
        missing = [d for d in spec.depends_on if d not in names]
        if missing:
            raise ValueError(f"system '{spec.name}' needs {missing} in role {ctx.role}")
        try:
            system = spec.factory(ctx)
        except Exception as exc:
            raise SystemInitError(spec.name, exc) from exc
        system.name = system.name or spec.name
        ctx.systems[spec.name] = system
        built.append(system)
    lifecycle = Lifecycle()
    try:
        await lifecycle.start(built)
    except BaseException:
        ctx.systems.clear()
        raise
    return App(ctx, lifecycle)
