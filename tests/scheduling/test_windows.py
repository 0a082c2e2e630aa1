"""Maintenance windows and jitter (DESIGN.md §4, issue 6): a due time inside the window fires
as it is, one outside is deferred to a random point of the next window (also across midnight
and across daylight-saving changes); the point is stored, so every process fires at it; the
global ``maintenance.window`` applies unless a schedule has its own; jitter stays in bounds.

Local time is pinned with ``TZ`` (the cached local zone is cleared) or a schedule's
``timezone`` key; time moves only through FakeClocks.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sched_helpers import (
    DEFAULTS_OFF,
    START,
    AppFactory,
    all_finished,
    at,
    idle,
    maintenance_config,
    schedule_tasks,
    tick_schedule,
)

from ucore.app import App
from ucore.foundation import clock as clock_module
from ucore.foundation.config import Window
from ucore.scheduling.base import build_schedules
from ucore.scheduling.planner import fire_time
from ucore.scheduling.windows import inside, place
from ucore.stores.records import FireResult
from ucore.testing import FakeClock

BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type]


def window(start: str, end: str) -> Window:
    return Window(start=start, end=end)


def daily(**overrides: Any) -> dict[str, Any]:
    """The test schedule (task ``sleep``), every 24 hours, with ``overrides``."""
    entry = tick_schedule(interval_hours=24, **overrides)
    del entry["interval_seconds"]
    return entry


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``local_tz("Europe/Berlin")`` makes that the machine's local zone for the test."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        clock_module._local_zone.cache_clear()

    yield set_zone
    clock_module._local_zone.cache_clear()


def samples(due: datetime, win: Window, tz: str | None, n: int = 300) -> list[datetime]:
    return [place(due, win, random.Random(seed), tz) for seed in range(n)]


def assert_spread(points: list[datetime], opened: datetime, closed: datetime) -> None:
    """Every point in [opened, closed), and together they cover the window."""
    assert all(opened <= p < closed for p in points), (min(points), max(points))
    span = closed - opened
    assert len(set(points)) > len(points) * 0.9, "the random point barely varies"
    assert min(points) - opened < span * 0.05, "nothing near the window's opening"
    assert closed - max(points) < span * 0.05, "nothing near the window's close"
    # each quarter of the window gets a share of the points
    quarters = Counter(int((p - opened) / span * 4) for p in points)
    assert set(quarters) == {0, 1, 2, 3} and min(quarters.values()) > len(points) / 10


# -- place(): the rule itself ------------------------------------------------------------
def test_inside_fires_as_is_outside_deferred_to_the_next_window() -> None:
    win = window("01:00", "05:00")
    rng = random.Random(7)
    due = utc(2026, 1, 5, 3, 17, 11)
    assert place(due, win, rng, "UTC") == due
    assert place(utc(2026, 1, 5, 1, 0), win, rng, "UTC") == utc(2026, 1, 5, 1, 0)  # opening
    # at the close (exclusive) and after it: the next day's window
    for late in (utc(2026, 1, 5, 5, 0), utc(2026, 1, 5, 12, 0), utc(2026, 1, 5, 23, 59)):
        got = place(late, win, rng, "UTC")
        assert utc(2026, 1, 6, 1, 0) <= got < utc(2026, 1, 6, 5, 0), (late, got)
    # before the opening on the same day: that day's window
    got = place(utc(2026, 1, 5, 0, 30), win, rng, "UTC")
    assert utc(2026, 1, 5, 1, 0) <= got < utc(2026, 1, 5, 5, 0)
    assert inside(due, win, "UTC") and not inside(utc(2026, 1, 5, 5, 0), win, "UTC")


def test_random_point_is_spread_over_the_window() -> None:
    points = samples(utc(2026, 1, 5, 12, 0), window("01:00", "05:00"), "UTC")
    assert_spread(points, utc(2026, 1, 6, 1, 0), utc(2026, 1, 6, 5, 0))
    # the same seed gives the same point (the rng is the only source of randomness)
    due = utc(2026, 1, 5, 12, 0)
    win = window("01:00", "05:00")
    assert place(due, win, random.Random(3), "UTC") == place(due, win, random.Random(3), "UTC")


def test_window_crossing_midnight() -> None:
    win = window("22:00", "06:00")
    rng = random.Random(1)
    for due in (utc(2026, 1, 5, 23, 0), utc(2026, 1, 6, 3, 0), utc(2026, 1, 5, 22, 0)):
        assert place(due, win, rng, "UTC") == due
    points = samples(utc(2026, 1, 5, 12, 0), win, "UTC")
    assert_spread(points, utc(2026, 1, 5, 22, 0), utc(2026, 1, 6, 6, 0))
    # 06:00 closes the span begun the evening before: deferred to the same evening
    points = samples(utc(2026, 1, 6, 6, 0), win, "UTC", n=50)
    assert all(utc(2026, 1, 6, 22, 0) <= p < utc(2026, 1, 7, 6, 0) for p in points)


def test_local_zone_from_tz(local_tz: Any) -> None:
    """Without a timezone key the window is in the machine's zone (here: TZ=Europe/Berlin)."""
    local_tz(BERLIN)
    win = window("01:00", "05:00")  # CET = UTC+1 in January
    points = samples(utc(2026, 1, 5, 12, 0), win, None, n=100)
    assert all(utc(2026, 1, 6, 0, 0) <= p < utc(2026, 1, 6, 4, 0) for p in points)
    assert place(utc(2026, 1, 6, 0, 30), win, random.Random(0), None) == utc(2026, 1, 6, 0, 30)
    local_tz("UTC")
    assert place(utc(2026, 1, 6, 0, 30), win, random.Random(0), None) != utc(2026, 1, 6, 0, 30)


@pytest.mark.parametrize("via", ["tz_env", "timezone_key"])
def test_spring_forward_window_is_three_hours(local_tz: Any, via: str) -> None:
    """Berlin, 29 March 2026: 02:00 CET jumps to 03:00 CEST. 01:00–05:00 that night is
    00:00Z–03:00Z (three hours); no point may land in a fourth hour."""
    local_tz(BERLIN if via == "tz_env" else "UTC")
    tz = None if via == "tz_env" else BERLIN
    points = samples(utc(2026, 3, 28, 12, 0), window("01:00", "05:00"), tz)
    assert_spread(points, utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 3, 0))


def test_fall_back_window_is_five_hours() -> None:
    """Berlin, 25 October 2026: 03:00 CEST falls back to 02:00 CET. 01:00–05:00 that night
    is 23:00Z–04:00Z (five hours)."""
    points = samples(utc(2026, 10, 24, 12, 0), window("01:00", "05:00"), BERLIN)
    assert_spread(points, utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 4, 0))


def test_midnight_crossing_window_on_a_dst_night() -> None:
    """22:00 CET on 28 March to 06:00 CEST on 29 March: 21:00Z–04:00Z (seven hours)."""
    win = window("22:00", "06:00")
    points = samples(utc(2026, 3, 28, 12, 0), win, BERLIN)
    assert_spread(points, utc(2026, 3, 28, 21, 0), utc(2026, 3, 29, 4, 0))
    # a due time inside the night, after the change, fires as it is
    assert place(utc(2026, 3, 29, 2, 0), win, random.Random(0), BERLIN) == utc(2026, 3, 29, 2, 0)


# -- the scheduler: stored points, global and own windows -------------------------------
async def tick_state(app: App, name: str = "tick") -> Any:
    return (await app.tasks.store.schedule_states())[name]


async def test_due_inside_window_fires_as_is_outside_deferred(
    apps: AppFactory, local_tz: Any
) -> None:
    """Every 30 min, window 11:00–13:00 UTC, start 12:00: fires at 12:00 and 12:30; 13:00 is
    deferred to a random point of the next day's window, stored with the nominal 13:00."""
    local_tz("UTC")
    clock = FakeClock(START)
    cfg = apps.config(
        {
            **DEFAULTS_OFF,
            "tick": tick_schedule(interval_seconds=1800, window={"start": "11:00", "end": "13:00"}),
        }
    )
    app = await apps(cfg, clock)
    await idle(clock)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [START]
    state = await tick_state(app)
    assert state.next_fire == at(1800) and state.nominal_next == at(1800)
    await clock.advance(1800)
    await idle(clock)
    await all_finished(app)
    state = await tick_state(app)
    assert state.nominal_next == at(3600)  # 13:00: the window's close, outside
    point = state.next_fire
    assert utc(2026, 1, 6, 11, 0) <= point < utc(2026, 1, 6, 13, 0)
    await clock.advance_to(point - timedelta(seconds=1))
    await idle(clock)
    assert len(await schedule_tasks(app)) == 2, "fired before the stored point"
    await clock.advance(1)
    await idle(clock)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [START, at(1800), point]
    after = await tick_state(app)
    assert after.last_fire == point
    assert inside(after.next_fire, Window(start="11:00", end="13:00"), "UTC")


async def test_dst_window_through_the_scheduler(apps: AppFactory) -> None:
    """The schedule's own timezone key: Berlin's spring-forward night, stored point in the
    three real hours of 01:00–05:00."""
    start = utc(2026, 3, 28, 12, 0)
    clock = FakeClock(start)
    cfg = apps.config(
        {**DEFAULTS_OFF, "tick": daily(window={"start": "01:00", "end": "05:00"}, timezone=BERLIN)}
    )
    app = await apps(cfg, clock)
    await idle(clock)
    assert await schedule_tasks(app) == []
    state = await tick_state(app)
    assert state.nominal_next == start
    assert utc(2026, 3, 29, 0, 0) <= state.next_fire < utc(2026, 3, 29, 3, 0)
    await clock.advance_to(state.next_fire)
    await idle(clock)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == [state.next_fire]


async def test_global_window_applies_and_own_window_replaces_it(
    apps: AppFactory, local_tz: Any
) -> None:
    local_tz("UTC")
    clock = FakeClock(START)
    cfg = maintenance_config(
        apps.data_dir,
        {
            "window": {"start": "01:00", "end": "05:00"},
            "schedule": {
                "tick": daily(),
                "own": daily(window={"start": "20:00", "end": "21:00"}),
            },
        },
    )
    app = await apps(cfg, clock)
    await idle(clock)
    assert await schedule_tasks(app) == [] and await schedule_tasks(app, "own") == []
    states = await app.tasks.store.schedule_states()
    assert utc(2026, 1, 6, 1, 0) <= states["tick"].next_fire < utc(2026, 1, 6, 5, 0)
    assert utc(2026, 1, 5, 20, 0) <= states["own"].next_fire < utc(2026, 1, 5, 21, 0)
    # the defaults get the global window too
    bv = states["background_verification"]
    assert utc(2026, 1, 6, 1, 0) <= bv.next_fire < utc(2026, 1, 6, 5, 0)
    assert app.scheduler.schedules["tick"].window == Window(start="01:00", end="05:00")
    assert app.scheduler.schedules["own"].window == Window(start="20:00", end="21:00")


async def test_two_processes_agree_on_the_stored_point(apps: AppFactory, local_tz: Any) -> None:
    """Two services on one database, own clocks, own rngs: one fire per due time, at the
    point stored in schedule_states, never at a point of their own."""
    local_tz("UTC")
    clock1, clock2 = FakeClock(START), FakeClock(START)
    cfg = apps.config(
        {
            **DEFAULTS_OFF,
            "tick": daily(jitter_seconds=600, window={"start": "01:00", "end": "05:00"}),
        }
    )
    # started together: both choose a first point, the first stored one wins for both
    app1, app2 = await asyncio.gather(apps(cfg, clock1), apps(cfg, clock2))
    app1.scheduler.rng = random.Random(1)
    app2.scheduler.rng = random.Random(2)
    assert random.Random(1).random() != random.Random(2).random()
    await idle(clock1)
    await idle(clock2)

    results: Counter[str] = Counter()
    for app in (app1, app2):
        store = app.tasks.store
        original = store.fire_schedule

        async def fire_schedule(name: str, _orig: Any = original, **kwargs: Any) -> FireResult:
            result: FireResult = await _orig(name, **kwargs)
            if name == "tick":
                results["fired" if result.fired else (result.reason or "?")] += 1
            return result

        store.fire_schedule = fire_schedule  # type: ignore[method-assign]

    fired_at: list[datetime] = []
    for day in (6, 7, 8):
        state = await tick_state(app1)
        point = state.next_fire
        assert utc(2026, 1, day, 1, 0) <= point < utc(2026, 1, day, 5, 0)
        sched = app1.scheduler.schedules["tick"]
        assert app1.scheduler.due_at(sched, state) == point
        assert app2.scheduler.due_at(app2.scheduler.schedules["tick"], state) == point
        await asyncio.gather(
            clock1.advance_to(point - timedelta(seconds=1)),
            clock2.advance_to(point - timedelta(seconds=1)),
        )
        await idle(clock1)
        await idle(clock2)
        assert len(await schedule_tasks(app1)) == len(fired_at)
        await asyncio.gather(clock1.advance(1), clock2.advance(1))
        await idle(clock1)
        await idle(clock2)
        await all_finished(app1)
        fired_at.append(point)
        assert [t.submitted_at for t in await schedule_tasks(app1)] == fired_at
    assert results["fired"] == 3
    assert set(results) <= {"fired", "taken"}


async def test_jitter_bounds_stored_and_varying(apps: AppFactory) -> None:
    """jitter_seconds 30 on every 60 s: each stored next_fire is in [nominal, nominal+30],
    the task fires exactly then, the offsets vary, and the nominal times do not drift."""
    clock = FakeClock(START)
    app = await apps(apps.config({"tick": tick_schedule(jitter_seconds=30), **DEFAULTS_OFF}), clock)
    await idle(clock)
    offsets = []
    fired = []
    for k in range(8):
        await all_finished(app)
        state = await tick_state(app)
        assert state.nominal_next == at(60 * k)
        offset = (state.next_fire - state.nominal_next).total_seconds()
        assert 0 <= offset <= 30
        offsets.append(offset)
        await clock.advance_to(state.next_fire)
        await idle(clock)
        fired.append(state.next_fire)
    await all_finished(app)
    assert [t.submitted_at for t in await schedule_tasks(app)] == fired
    assert len(set(offsets)) >= 6, offsets


def test_jitter_then_window(tmp_path: Path) -> None:
    """fire_time: jitter in [0, J]; a point outside the window moves into the next one."""
    cfg = maintenance_config(
        tmp_path,
        {
            "schedule": {
                "j": tick_schedule(jitter_seconds=3600),
                "w": tick_schedule(window={"start": "12:00", "end": "14:00"}, timezone="UTC"),
            }
        },
    )
    schedules = build_schedules(cfg)
    j = schedules["j"]
    nominal = utc(2026, 1, 5, 12, 0)
    got = [fire_time(j, nominal, random.Random(s)) or nominal for s in range(200)]
    assert all(nominal <= g <= nominal + timedelta(hours=1) for g in got)
    assert max(got) - min(got) > timedelta(minutes=40)
    w = schedules["w"]
    late = utc(2026, 1, 5, 15, 0)
    got = [fire_time(w, late, random.Random(s)) or late for s in range(50)]
    assert all(utc(2026, 1, 6, 12, 0) <= g < utc(2026, 1, 6, 14, 0) for g in got)
