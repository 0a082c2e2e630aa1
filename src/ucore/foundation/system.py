"""Systems and their lifecycle (DESIGN.md §1).

A system is a long-lived part of a process (the store, the TaskSystem, the scheduler, …).
:class:`SystemSpec` says how to build one, for which roles, after which others; the
:class:`Lifecycle` initializes the built systems in dependency order and shuts them down in
reverse. If one fails to initialize, those already started are shut down and the error names
the failing system.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ucore.foundation.errors import SystemInitError, UCoreError

if TYPE_CHECKING:
    from ucore.foundation.context import Context

log = logging.getLogger("ucore.systems")


class Role(enum.StrEnum):
    """What a process is for (DESIGN.md §1)."""

    #: ``ucore run`` and UExplorer: workers and the scheduler.
    SERVICE = "service"
    #: Every other CLI command: store access only; never fires a schedule.
    CLIENT = "client"
    #: ``--wait`` with no live service: runs only the task it submitted.
    RUNNER = "runner"


class BaseSystem(ABC):
    """A part of the process with a lifecycle.

    Subclasses set ``name`` and ``depends_on`` (names of systems that must be initialized
    first) and implement :meth:`initialize` and :meth:`shutdown`. ``shutdown`` is called only
    after a successful ``initialize`` and must not raise for an ordinary stop.
    """

    name: str = ""
    depends_on: tuple[str, ...] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abstractmethod
    async def initialize(self) -> None: ...

    @abstractmethod
    async def shutdown(self) -> None: ...


S = TypeVar("S", bound=BaseSystem)


@dataclass(frozen=True)
class SystemSpec:
    """How to build one system: a factory, the roles it runs in, its dependencies."""

    name: str
    factory: Callable[[Context], BaseSystem]
    roles: frozenset[Role] = frozenset(Role)
    depends_on: tuple[str, ...] = ()
    #: Build it only when this returns True for the context (for example, config switches).
    enabled: Callable[[Context], bool] = field(default=lambda ctx: True)


class SystemOrderError(UCoreError):
    pass


def order_specs(specs: Sequence[SystemSpec]) -> list[SystemSpec]:
    """Dependency order, stable in declaration order; unknown names and cycles are errors."""
    by_name: dict[str, SystemSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            raise SystemOrderError(f"two systems are named '{spec.name}'")
        by_name[spec.name] = spec
    ordered: list[SystemSpec] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(spec: SystemSpec, chain: tuple[str, ...]) -> None:
        if state.get(spec.name) == 2:
            return
        if state.get(spec.name) == 1:
            raise SystemOrderError(f"dependency cycle: {' -> '.join((*chain, spec.name))}")
        state[spec.name] = 1
        for dep in spec.depends_on:
            if dep not in by_name:
                raise SystemOrderError(f"system '{spec.name}' depends on unknown system '{dep}'")
            visit(by_name[dep], (*chain, spec.name))
        state[spec.name] = 2
        ordered.append(spec)

    for spec in specs:
        visit(spec, ())
    return ordered


class Lifecycle:
    """Initializes systems in order and shuts the started ones down in reverse."""

    def __init__(self) -> None:
        self.started: list[BaseSystem] = []

    async def start(self, systems: Iterable[BaseSystem]) -> None:
        for system in systems:
            log.debug("initializing %s", system.name)
            try:
                await system.initialize()
            except BaseException as exc:
                # a failed shutdown here is logged by stop(); the error to report is this one
                with contextlib.suppress(UCoreError):
                    await self.stop()
                if isinstance(exc, Exception):
                    raise SystemInitError(system.name, exc) from exc
                raise
            self.started.append(system)

    async def stop(self) -> None:
        errors: list[tuple[str, Exception]] = []
        while self.started:
            system = self.started.pop()
            log.debug("shutting down %s", system.name)
            try:
                await system.shutdown()
            except Exception as exc:  # keep shutting the others down
                log.error("system '%s' failed to shut down: %s", system.name, exc)
                errors.append((system.name, exc))
        if errors:
            name, first = errors[0]
            raise UCoreError(f"system '{name}' failed to shut down: {first}") from first


def filter_specs(specs: Iterable[SystemSpec], role: Role, ctx: Any) -> list[SystemSpec]:
    """The specs that apply to ``role`` (and are enabled for ``ctx``)."""
    return [s for s in specs if role in s.roles and s.enabled(ctx)]
