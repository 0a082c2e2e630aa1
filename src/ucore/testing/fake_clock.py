"""A clock that only moves when a test says so.

Sleepers (``sleep``/``sleep_until``) wait on futures that :meth:`FakeClock.advance` resolves
exactly when the fake time reaches their deadline, so scheduling code is tested without any
real waiting::

    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(10))
    await clock.wait_for_sleepers(1)
    await clock.advance(9.999)   # still asleep
    await clock.advance(0.001)   # wakes now
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

from ucore.foundation.clock import utc

_DEFAULT_START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# Deadlines within this much of the target count as reached: float sums of small advances
# (7 x 0.01) fall a hair short of the same sum computed at once (0.07).
_EPSILON = 1e-9


class FakeClock:
    def __init__(self, start: datetime | None = None, monotonic_start: float = 1000.0) -> None:
        self._wall = utc(start) if start is not None else _DEFAULT_START
        self._mono = monotonic_start
        self._seq = itertools.count()
        # (deadline in monotonic seconds, sequence, future)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._changed: asyncio.Event | None = None

    # -- Clock protocol -------------------------------------------------------------------
    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        await self._sleep_to(self._mono + max(0.0, seconds))

    async def sleep_until(self, when: datetime) -> None:
        delta = (utc(when) - self._wall).total_seconds()
        await self._sleep_to(self._mono + max(0.0, delta))

    # -- test controls --------------------------------------------------------------------
    @property
    def sleepers(self) -> int:
        """How many coroutines are asleep on this clock now."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    def next_deadline(self) -> float | None:
        """Seconds until the earliest sleeper wakes, or None when nobody sleeps."""
        live = [d for d, _, fut in self._sleepers if not fut.done()]
        return (min(live) - self._mono) if live else None

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline is reached, in order.

        Sleepers are woken one deadline at a time and the event loop runs in between, so a
        woken coroutine that goes back to sleep for a short time inside the advanced span is
        woken again within the same call, just as it would be in real time.
        """
        if seconds < 0:
            raise ValueError("a FakeClock cannot go backwards")
        end = self._mono + seconds
        while True:
            await _settle()
            self._drop_done()
            if not self._sleepers or self._sleepers[0][0] > end + _EPSILON:
                break
            deadline = self._sleepers[0][0]
            self._move_to(deadline)
            while self._sleepers and self._sleepers[0][0] <= deadline:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
        self._move_to(end)
        await _settle()

    async def advance_to(self, when: datetime) -> None:
        """Move wall time forward to ``when``."""
        await self.advance(max(0.0, (utc(when) - self._wall).total_seconds()))

    def jump_wall(self, seconds: float) -> None:
        """Step the wall clock alone (like an NTP step or a suspend); sleepers stay asleep."""
        self._wall += timedelta(seconds=seconds)

    async def wait_for_sleepers(self, count: int = 1, *, max_yields: int = 10_000) -> None:
        """Let the event loop run until at least ``count`` coroutines sleep on this clock."""
        for _ in range(max_yields):
            if self.sleepers >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"expected {count} sleepers, have {self.sleepers}")

    # -- internals ------------------------------------------------------------------------
    async def _sleep_to(self, deadline: float) -> None:
        if deadline <= self._mono:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    def _move_to(self, mono: float) -> None:
        if mono > self._mono:
            self._wall += timedelta(seconds=mono - self._mono)
            self._mono = mono

    def _drop_done(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


async def _settle(rounds: int = 20) -> None:
    """Give woken coroutines a few loop iterations to run (and maybe sleep again)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
