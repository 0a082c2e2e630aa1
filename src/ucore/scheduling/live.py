"""Live changes to schedules: enable/disable, a new trigger, a window, new parameters.

One API for the CLI (``ucore schedule set``) and the panel. A change is validated by the same
models as the config file (the whole file is validated again, so every rule holds), written
back to the config file atomically, keeping every other key as the user wrote it, and takes
effect at once in this process: the next fire is recomputed and a sleeping loop woken.

A service also watches its config file: a hand edit is picked up within
:data:`WATCH_SECONDS`; an invalid one is refused with its errors logged, and the running
schedules are kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ucore.foundation.clock import aligned_delay
from ucore.foundation.config.loader import LoadedConfig, parse_config
from ucore.foundation.config.schedule import TRIGGER_KEYS
from ucore.foundation.config.writer import read_document, update_config_file
from ucore.foundation.errors import ConfigError, UsageError
from ucore.foundation.events import Event
from ucore.foundation.system import Role
from ucore.scheduling.base import SchedulerBase, build_schedules
from ucore.scheduling.schedules import Schedule

log = logging.getLogger("ucore.scheduler")

#: How often a service looks at its config file for hand edits (a stat, nothing more).
WATCH_SECONDS = 5.0

_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_KEY = {
    "s": "interval_seconds",
    "m": "interval_minutes",
    "h": "interval_hours",
    "d": "interval_days",
}
_WINDOW = re.compile(r"^\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")


def parse_every(text: str) -> tuple[str, float]:
    """``6h``, ``30m``, ``45s``, ``7d`` → (config key, number)."""
    match = _EVERY.match(text)
    if not match:
        raise UsageError(f"--every takes a number and a unit s, m, h or d (like 6h), not '{text}'")
    value = float(match.group(1))
    if value <= 0:
        raise UsageError("--every must be > 0")
    number: float = int(value) if value.is_integer() else value
    return _UNIT_KEY[match.group(2)], number


def parse_window(text: str) -> dict[str, str]:
    """``01:00-05:00`` → {"start": "01:00", "end": "05:00"}."""
    match = _WINDOW.match(text)
    if not match:
        raise UsageError(f"--window takes HH:MM-HH:MM (like 01:00-05:00), not '{text}'")
    start, end = (f"{int(t.split(':')[0]):02d}:{t.split(':')[1]}" for t in match.groups())
    return {"start": start, "end": end}


@dataclass(frozen=True)
class ScheduleChange:
    enabled: bool | None = None
    #: (interval key, number), e.g. ("interval_hours", 6)
    every: tuple[str, float] | None = None
    cron: str | None = None
    timezone: str | None = None
    window: dict[str, str] | None = None
    clear_window: bool = False
    #: the schedules it runs after (an empty tuple removes the chain)
    after: tuple[str, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def empty(self) -> bool:
        return (
            self.enabled is None
            and self.every is None
            and self.cron is None
            and self.timezone is None
            and self.window is None
            and not self.clear_window
            and self.after is None
            and not self.params
        )


def edit(name: str, change: ScheduleChange) -> Callable[[dict[str, Any]], None]:
    """The edit of the config document that makes ``change`` to schedule ``name``."""

    def apply(document: dict[str, Any]) -> None:
        maintenance = document.setdefault("maintenance", {})
        if not isinstance(maintenance, dict):
            raise ConfigError(["maintenance: must be an object"])
        schedules = maintenance.setdefault("schedule", {})
        if not isinstance(schedules, dict):
            raise ConfigError(["maintenance.schedule: must be an object"])
        entry = schedules.setdefault(name, {})
        if not isinstance(entry, dict):
            raise ConfigError([f"maintenance.schedule.{name}: must be an object"])
        if change.enabled is not None:
            entry["enabled"] = change.enabled
        if change.every is not None or change.cron is not None:
            # the new trigger replaces the old one; the zone stays (it may be the window's)
            for key in TRIGGER_KEYS:
                if key != "timezone":
                    entry.pop(key, None)
            if change.every is not None:
                key, value = change.every
                entry[key] = value
            if change.cron is not None:
                entry["cron"] = change.cron
        if change.timezone is not None:
            entry["timezone"] = change.timezone
        if change.clear_window:
            entry.pop("window", None)
        if change.window is not None:
            entry["window"] = change.window
        if change.after is not None:
            if change.after:
                entry["after"] = list(change.after)
            else:
                entry.pop("after", None)
        if change.timezone is None and "cron" not in entry and "window" not in entry:
            # a zone left without a cron or a window to apply to (the entry would be invalid)
            entry.pop("timezone", None)
        entry.update(change.params)

    return apply


def write_change(loaded: LoadedConfig, name: str, change: ScheduleChange) -> LoadedConfig:
    """Validate and write the change; returns the new config. ConfigError: file unchanged."""
    path = loaded.locations.config_file

    def validate(document: dict[str, Any]) -> LoadedConfig:
        return parse_config(
            document, source=path, config_file=path, data_dir=loaded.data_dir, env=os.environ
        )

    return update_config_file(path, edit(name, change), validate)


def reload(loaded: LoadedConfig) -> LoadedConfig:
    """The config file as it is now (ConfigError when it is invalid)."""
    path = loaded.locations.config_file
    return parse_config(
        read_document(path), source=path, config_file=path, data_dir=loaded.data_dir, env=os.environ
    )


def file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def outside_schedules(old: LoadedConfig, new: LoadedConfig) -> list[str]:
    """Sections that changed but only take effect after a restart."""
    a, b = old.config.model_dump(), new.config.model_dump()
    changed = [k for k in a if k != "maintenance" and a[k] != b[k]]
    ma, mb = dict(a["maintenance"]), dict(b["maintenance"])
    for key in ("schedule", "enabled", "window"):
        ma.pop(key, None)
        mb.pop(key, None)
    changed += [f"maintenance.{k}" for k in ma if ma[k] != mb.get(k)]
    return changed


class LiveChangesMixin(SchedulerBase):
    async def change(self, name: str, change: ScheduleChange) -> Schedule:
        """Change a schedule: validated, written to the config file, in effect at once."""
        self.get(name)
        if change.empty():
            raise UsageError("nothing to change")
        loaded = await asyncio.to_thread(write_change, self.ctx.config, name, change)
        self._own_write = file_signature(loaded.locations.config_file)
        await self.apply(loaded)
        self.ctx.events.publish(Event("schedule.changed", {"name": name}))
        return self.schedules[name]

    async def apply(self, loaded: LoadedConfig) -> None:
        """Use a new config's schedules: recompute what changed, wake the loop."""
        self.ctx.config = loaded
        self.schedules = build_schedules(loaded)
        states = await self.tasks.store.schedule_states()
        for schedule in self.schedules.values():
            state = states.get(schedule.name)
            if state is not None and state.definition_hash != schedule.definition_hash:
                await self._ensure_state(schedule, state)
            elif state is None and self.ctx.role is Role.SERVICE:
                await self._ensure_state(schedule, None)
        await self._announce()
        self.wake()

    async def _watch_config(self) -> None:
        path = self.ctx.config.locations.config_file
        seen = file_signature(path)
        while True:
            await asyncio.sleep(aligned_delay(WATCH_SECONDS))
            current = file_signature(path)
            if current == seen:
                continue
            seen = current
            if current is not None and current == self._own_write:
                continue
            try:
                loaded = await asyncio.to_thread(reload, self.ctx.config)
            except ConfigError as exc:
                for line in exc.lines():
                    log.error("config change refused, schedules kept: %s", line)
                continue
            except Exception as exc:
                log.error("config change not read: %s", exc)
                continue
            restart = outside_schedules(self.ctx.config, loaded)
            await self.apply(loaded)
            log.info("config file changed: schedules reloaded")
            if restart:
                log.warning("changes to %s take effect at the next start", ", ".join(restart))
