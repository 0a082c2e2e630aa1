"""Clock (DESIGN.md §1): SystemClock is aware UTC; FakeClock drives sleepers without waiting."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucore.foundation.clock import Clock, SystemClock, utc
from ucore.testing import FakeClock

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# -- SystemClock --------------------------------------------------------------------------


def test_system_clock_now_is_aware_utc() -> None:
    clock = SystemClock()
    now = clock.now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert abs((now - datetime.now(UTC)).total_seconds()) < 5
    assert isinstance(clock, Clock)
    assert isinstance(FakeClock(), Clock)


def test_system_clock_monotonic_never_goes_back() -> None:
    clock = SystemClock()
    values = [clock.monotonic() for _ in range(1000)]
    assert values == sorted(values)


async def test_system_clock_sleep_until() -> None:
    clock = SystemClock()
    target = clock.now() + timedelta(milliseconds=50)
    await clock.sleep_until(target)
    assert clock.now() >= target
    # in the past: returns at once
    t0 = time.perf_counter()
    await clock.sleep_until(clock.now() - timedelta(hours=1))
    await clock.sleep(-5)
    assert time.perf_counter() - t0 < 0.5


async def test_system_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        await SystemClock().sleep_until(datetime(2026, 1, 1, 12, 0))


def test_utc_helper() -> None:
    berlin = timezone(timedelta(hours=1))
    value = utc(datetime(2026, 1, 1, 13, 0, tzinfo=berlin))
    assert value == START
    assert value.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        utc(datetime(2026, 1, 1))


# -- FakeClock ----------------------------------------------------------------------------


async def test_fake_clock_wakes_exactly_at_the_deadline_without_waiting() -> None:
    clock = FakeClock(start=START)
    t0 = time.perf_counter()
    task = asyncio.create_task(clock.sleep(10))
    await clock.wait_for_sleepers(1)
    assert clock.sleepers == 1
    assert clock.next_deadline() == pytest.approx(10)
    await clock.advance(9.999)
    assert not task.done()
    assert clock.sleepers == 1
    await clock.advance(0.001)
    assert task.done()
    await task
    assert clock.sleepers == 0
    assert clock.next_deadline() is None
    assert clock.now() == START + timedelta(seconds=10)
    assert time.perf_counter() - t0 < 0.5


async def test_fake_clock_time_at_wakeup_is_the_deadline() -> None:
    clock = FakeClock(start=START, monotonic_start=50.0)
    seen: list[tuple[float, datetime]] = []

    async def sleeper() -> None:
        await clock.sleep(7)
        seen.append((clock.monotonic(), clock.now()))

    task = asyncio.create_task(sleeper())
    await clock.wait_for_sleepers(1)
    await clock.advance(100)  # one big step still wakes it at its own time
    await task
    assert seen == [(57.0, START + timedelta(seconds=7))]
    assert clock.monotonic() == 150.0
    assert clock.now() == START + timedelta(seconds=100)


async def test_fake_clock_sleep_until_aware_datetimes() -> None:
    clock = FakeClock(start=START)
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2026, 1, 1, 14, 0, 30, tzinfo=plus_two)  # 12:00:30 UTC
    task = asyncio.create_task(clock.sleep_until(when))
    await clock.wait_for_sleepers(1)
    await clock.advance(29.9)
    assert not task.done()
    await clock.advance(0.1)
    assert task.done()
    assert clock.now() == when


async def test_fake_clock_sleep_until_the_past_returns_at_once() -> None:
    clock = FakeClock(start=START)
    await asyncio.wait_for(clock.sleep_until(START - timedelta(days=1)), 1)
    await asyncio.wait_for(clock.sleep(0), 1)
    await asyncio.wait_for(clock.sleep(-3), 1)
    assert clock.now() == START
    assert clock.sleepers == 0


async def test_fake_clock_refuses_naive_datetimes() -> None:
    clock = FakeClock(start=START)
    with pytest.raises(ValueError, match="naive"):
        await clock.sleep_until(datetime(2026, 1, 1, 13, 0))
    with pytest.raises(ValueError, match="naive"):
        FakeClock(start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        await clock.advance_to(datetime(2026, 1, 1, 13, 0))
    with pytest.raises(ValueError):
        await clock.advance(-1)


async def test_fake_clock_wakes_several_sleepers_in_deadline_order() -> None:
    clock = FakeClock(start=START)
    woken: list[tuple[str, float]] = []
    base = clock.monotonic()

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append((name, clock.monotonic() - base))

    tasks = [
        asyncio.create_task(sleeper(name, secs))
        for name, secs in [("c", 5), ("a", 1), ("d", 8), ("b", 3), ("b2", 3)]
    ]
    await clock.wait_for_sleepers(5)
    await clock.advance(4)
    assert woken == [("a", 1), ("b", 3), ("b2", 3)]
    await clock.advance(10)
    await asyncio.gather(*tasks)
    assert woken == [("a", 1), ("b", 3), ("b2", 3), ("c", 5), ("d", 8)]


async def test_fake_clock_resleeper_is_woken_again_within_one_advance() -> None:
    clock = FakeClock(start=START)
    base = clock.monotonic()
    ticks: list[float] = []

    async def periodic() -> None:
        while True:
            await clock.sleep(1.5)
            ticks.append(clock.monotonic() - base)

    task = asyncio.create_task(periodic())
    await clock.wait_for_sleepers(1)
    await clock.advance(10)
    assert ticks == pytest.approx([1.5, 3.0, 4.5, 6.0, 7.5, 9.0])
    assert clock.sleepers == 1  # asleep again until 10.5
    await clock.advance(0.5)
    assert len(ticks) == 7
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0


async def test_fake_clock_interleaves_two_periodic_sleepers() -> None:
    clock = FakeClock(start=START)
    base = clock.monotonic()
    events: list[tuple[str, float]] = []

    async def periodic(name: str, every: float) -> None:
        for _ in range(4):
            await clock.sleep(every)
            events.append((name, clock.monotonic() - base))

    tasks = [asyncio.create_task(periodic("x", 2)), asyncio.create_task(periodic("y", 3))]
    await clock.wait_for_sleepers(2)
    await clock.advance(12)
    await asyncio.gather(*tasks)
    times = [t for _, t in events]
    assert times == sorted(times)
    assert [e for e in events if e[0] == "x"] == [("x", 2), ("x", 4), ("x", 6), ("x", 8)]
    assert [e for e in events if e[0] == "y"] == [("y", 3), ("y", 6), ("y", 9), ("y", 12)]


async def test_fake_clock_cancelled_sleeper_is_dropped() -> None:
    clock = FakeClock(start=START)
    task = asyncio.create_task(clock.sleep(5))
    await clock.wait_for_sleepers(1)
    task.cancel()
    await asyncio.sleep(0)
    assert clock.sleepers == 0
    await clock.advance(10)  # nothing to wake, no error
    assert clock.now() == START + timedelta(seconds=10)


async def test_fake_clock_advance_to_and_jump_wall() -> None:
    clock = FakeClock(start=START)
    task = asyncio.create_task(clock.sleep(60))
    await clock.wait_for_sleepers(1)
    clock.jump_wall(3600)  # wall clock steps; monotonic sleepers stay asleep
    assert clock.now() == START + timedelta(hours=1)
    await clock.advance(0)
    assert not task.done()
    await clock.advance_to(START + timedelta(hours=1, seconds=60))
    assert task.done()


async def test_wait_for_sleepers_fails_when_nobody_sleeps() -> None:
    with pytest.raises(AssertionError):
        await FakeClock().wait_for_sleepers(1, max_yields=10)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=12))
def test_fake_clock_wake_order_property(millis: list[int]) -> None:
    """Any set of sleepers wakes in deadline order (ties in start order), each at its time."""

    async def scenario() -> list[tuple[float, int]]:
        clock = FakeClock(start=START, monotonic_start=0.0)
        woken: list[tuple[float, int]] = []

        async def sleeper(i: int, seconds: float) -> None:
            await clock.sleep(seconds)
            woken.append((clock.monotonic(), i))

        tasks = [asyncio.create_task(sleeper(i, ms / 1000)) for i, ms in enumerate(millis)]
        await clock.wait_for_sleepers(sum(1 for ms in millis if ms > 0))
        await clock.advance(11)
        await asyncio.gather(*tasks)
        return woken

    woken = asyncio.run(scenario())
    expected = sorted(((ms / 1000, i) for i, ms in enumerate(millis)), key=lambda p: p[0])
    zero = [i for i, ms in enumerate(millis) if ms == 0]
    # zero-length sleeps return without waiting for advance(); the others in deadline order
    assert sorted(i for t, i in woken if t == 0) == zero
    assert [(t, i) for t, i in woken if i not in zero] == [
        (t, i) for t, i in expected if i not in zero
    ]


@pytest.mark.parametrize(("step", "steps"), [(0.01, 7), (0.01, 100), (0.1, 10), (1 / 3, 9)])
async def test_many_small_advances_reach_the_deadline(step: float, steps: int) -> None:
    """Float rounding must not leave a sleeper asleep once the advances add up to its time."""
    clock = FakeClock(start=START)
    task = asyncio.create_task(clock.sleep(step * steps))
    await clock.wait_for_sleepers(1)
    for _ in range(steps - 1):
        await clock.advance(step)
    assert not task.done()
    await clock.advance(step)
    assert task.done()
