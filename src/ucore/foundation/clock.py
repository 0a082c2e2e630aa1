"""Time for the whole framework comes from an injected :class:`Clock`.

Wall time is an aware UTC datetime; monotonic time is seconds as a float. Code that waits
calls ``clock.sleep`` or ``clock.sleep_until`` so that tests can drive time with
:class:`ucore.testing.FakeClock` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A wall-clock sleep is cut into slices of at most this long, so that a jump of the system
# clock (suspend, NTP step) is noticed within this time. It costs one wake-up per slice.
_WALL_SLICE_SECONDS = 30.0


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall time, an aware datetime in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of monotonic time."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Wait until the wall time reaches ``when`` (an aware datetime)."""
        ...


def utc(dt: datetime) -> datetime:
    """``dt`` as an aware UTC datetime; a naive datetime is refused."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime not allowed here: {dt!r}")
    return dt.astimezone(UTC)


def zone(name: str | None = None) -> tzinfo:
    """The time zone ``name``, or the machine's local zone (with its DST rules) for None."""
    if name:
        return ZoneInfo(name)
    return _local_zone(os.environ.get("TZ", ""))


@cache
def _local_zone(tz_env: str) -> tzinfo:
    # A named zone keeps DST rules; datetime.now().astimezone().tzinfo would be a fixed offset.
    candidates = [tz_env.lstrip(":")] if tz_env else []
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    for key in candidates:
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (the CLI's and the JSON's time format), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: datetime) -> None:
        target = utc(when)
        while True:
            remaining = (target - self.now()).total_seconds()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, _WALL_SLICE_SECONDS))


def aligned_delay(period: float) -> float:
    """Seconds until the next multiple of ``period`` on the running event loop's clock.

    Periodic timers of one process that sleep this way expire at the same instants (the
    loop runs them in one iteration): one wake-up where timers started at different times
    would each wake the process on their own (docs/performance.md, idle cost).
    """
    now = asyncio.get_running_loop().time()
    return period - (now % period)


def aligned_deadline(loop: asyncio.AbstractEventLoop, period: float) -> float:
    """The next multiple of ``period`` on ``loop``'s clock (:func:`aligned_delay`'s instant):
    the same value for every call within one period, so a timer armed for it can be kept."""
    return (loop.time() // period + 1.0) * period
