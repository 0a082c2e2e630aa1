"""What every system of a process shares: its config, role, clock and identity."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from ucore.foundation.events import EventBus

if TYPE_CHECKING:
    from ucore.foundation.clock import Clock
    from ucore.foundation.config.loader import LoadedConfig
    from ucore.foundation.paths import Locations
    from ucore.foundation.system import BaseSystem, Role


S = TypeVar("S")


def new_node_id() -> str:
    """A fresh node id: 12 hex digits of a random UUID."""
    return uuid.uuid4().hex[:12]


@dataclass
class Context:
    """Handed to every system's factory; systems find each other through it."""

    config: LoadedConfig
    role: Role
    clock: Clock
    #: this process among those sharing the database: 48 random bits (12 hex digits). Every
    #: task row and history row of an attempt carries it, and they grow by it when claimed:
    #: a full UUID's 32 digits cost a tenth more WAL pages per task (docs/performance.md)
    node_id: str = field(default_factory=new_node_id)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    systems: dict[str, BaseSystem] = field(default_factory=dict)
    events: EventBus = field(default_factory=EventBus)

    @property
    def locations(self) -> Locations:
        return self.config.locations

    def system(self, name: str) -> BaseSystem:
        try:
            return self.systems[name]
        except KeyError:
            raise KeyError(f"no system '{name}' in this process ({self.role})") from None

    def typed(self, name: str, kind: type[S]) -> S:
        """The system ``name``, checked to be a ``kind`` (for typed accessors)."""
        system = self.system(name)
        if not isinstance(system, kind):
            raise TypeError(f"system '{name}' is a {type(system).__name__}, not a {kind.__name__}")
        return system
