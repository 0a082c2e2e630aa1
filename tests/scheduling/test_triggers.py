"""Triggers (DESIGN.md §4): pure ``next_fire`` and ``describe``; cron and daylight saving.

The golden DST cases follow Debian cron: a fixed-time job whose time falls in the skipped hour
runs right after the change (once); in the repeated hour a fixed-time job runs once (at the
first occurrence), a job with a wildcard hour in both occurrences. Every result is an aware
UTC datetime strictly after its input, whatever instant the input is (also one inside the
second occurrence of a repeated hour).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest

from ucore.scheduling.triggers import CronTrigger, IntervalTrigger, ManualTrigger, Trigger

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def u(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def fires(trigger: Trigger, start: datetime, end: datetime) -> list[datetime]:
    """Every fire in (start, end], by chaining next_fire."""
    out: list[datetime] = []
    current = start
    while True:
        nxt = trigger.next_fire(current)
        assert nxt is not None
        if nxt > end:
            return out
        out.append(nxt)
        current = nxt


def local(times: list[datetime], zone: str) -> list[str]:
    return [t.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") for t in times]


def assert_utc_after(result: datetime | None, after: datetime) -> datetime:
    assert result is not None
    assert result.tzinfo is not None and result.utcoffset() == timedelta(0), result
    assert result.tzinfo == UTC, result.tzinfo
    assert result > after, f"{result} is not strictly after {after}"
    return result


# -- interval ---------------------------------------------------------------------------
class TestInterval:
    def test_next_fire_is_after_plus_interval(self) -> None:
        trig = IntervalTrigger(3600)
        base = u(2026, 1, 5, 12, 0)
        assert trig.next_fire(base) == u(2026, 1, 5, 13, 0)
        assert trig.next_fire(trig.next_fire(base)) == u(2026, 1, 5, 14, 0)
        assert trig.period == 3600

    def test_fractional_seconds(self) -> None:
        assert IntervalTrigger(0.25).next_fire(u(2026, 1, 1)) == u(2026, 1, 1) + timedelta(
            milliseconds=250
        )

    def test_result_is_aware_utc_even_for_another_zone(self) -> None:
        plus2 = datetime(2026, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
        result = assert_utc_after(IntervalTrigger(60).next_fire(plus2), plus2)
        assert result == u(2026, 6, 1, 12, 1)

    def test_naive_datetime_refused(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            IntervalTrigger(60).next_fire(datetime(2026, 1, 1))

    @pytest.mark.parametrize("seconds", [0, -1, -0.5])
    def test_non_positive_interval_refused(self, seconds: float) -> None:
        with pytest.raises(ValueError):
            IntervalTrigger(seconds)

    @pytest.mark.parametrize(
        ("seconds", "words"),
        [
            (6 * 3600, "every 6 hours"),
            (300, "every 5 minutes"),
            (7 * 86400, "every 7 days"),
            (12 * 3600, "every 12 hours"),
            (86400, "every day"),
            (3600, "every hour"),
            (90, "every 90 seconds"),
            (2, "every 2 seconds"),
        ],
    )
    def test_describe(self, seconds: float, words: str) -> None:
        assert IntervalTrigger(seconds).describe() == words


# -- cron: basics -----------------------------------------------------------------------
class TestCronBasics:
    def test_describe_daily(self) -> None:
        assert CronTrigger("0 3 * * *").describe() == "daily at 03:00"
        assert CronTrigger("30 2 * * *").describe() == "daily at 02:30"
        assert CronTrigger("0 3 * * *", BERLIN).describe() == "daily at 03:00 (Europe/Berlin)"

    def test_describe_other_expressions_in_words(self) -> None:
        words = CronTrigger("*/30 * * * *").describe()
        assert words and words[0].islower() and "30" in words

    def test_next_fire_in_zone(self) -> None:
        trig = CronTrigger("0 3 * * *", BERLIN)
        # winter: 03:00 CET = 02:00 UTC; summer: 03:00 CEST = 01:00 UTC
        assert trig.next_fire(u(2026, 1, 5, 12)) == u(2026, 1, 6, 2)
        assert trig.next_fire(u(2026, 7, 5, 12)) == u(2026, 7, 6, 1)

    def test_strictly_after_an_exact_fire_time(self) -> None:
        trig = CronTrigger("0 3 * * *", BERLIN)
        first = u(2026, 1, 6, 2)
        assert trig.next_fire(first) == u(2026, 1, 7, 2)
        # a microsecond before: the fire time itself
        assert trig.next_fire(first - timedelta(microseconds=1)) == first

    def test_input_in_another_offset(self) -> None:
        ny_evening = datetime(2026, 1, 5, 20, 0, tzinfo=ZoneInfo(NEW_YORK))  # 01:00 UTC
        result = assert_utc_after(
            CronTrigger("0 3 * * *", BERLIN).next_fire(ny_evening), ny_evening
        )
        assert result == u(2026, 1, 6, 2)

    def test_manual_trigger_never_fires_by_itself(self) -> None:
        assert ManualTrigger().next_fire(u(2026, 1, 1)) is None
        assert ManualTrigger().describe() == "no timer"


# -- cron: daylight saving, golden ------------------------------------------------------
class DstCase(NamedTuple):
    zone: str
    expr: str
    start: datetime  # the window, in UTC
    end: datetime
    utc_times: list[datetime]  # every fire in (start, end]
    labels: list[str]  # the same fires in local time


GOLDEN: list[DstCase] = [
    # Berlin spring forward 2026-03-29: 02:00 CET -> 03:00 CEST (01:00 UTC)
    DstCase(
        BERLIN,
        "30 2 * * *",
        u(2026, 3, 28, 12),
        u(2026, 3, 30, 12),
        [u(2026, 3, 29, 1, 0), u(2026, 3, 30, 0, 30)],
        ["2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST"],
    ),
    DstCase(
        BERLIN,
        "*/30 * * * *",
        u(2026, 3, 29, 0, 29),  # 01:29 CET
        u(2026, 3, 29, 1, 31),  # 03:31 CEST
        [u(2026, 3, 29, 0, 30), u(2026, 3, 29, 1, 0), u(2026, 3, 29, 1, 30)],
        ["2026-03-29 01:30 CET", "2026-03-29 03:00 CEST", "2026-03-29 03:30 CEST"],
    ),
    # Berlin fall back 2026-10-25: 03:00 CEST -> 02:00 CET (01:00 UTC)
    DstCase(
        BERLIN,
        "30 2 * * *",
        u(2026, 10, 24, 12),
        u(2026, 10, 26, 12),
        [u(2026, 10, 25, 0, 30), u(2026, 10, 26, 1, 30)],
        ["2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"],
    ),
    DstCase(
        BERLIN,
        "*/30 * * * *",
        u(2026, 10, 24, 23, 59),  # 01:59 CEST
        u(2026, 10, 25, 2, 1),  # 03:01 CET
        [
            u(2026, 10, 25, 0, 0),
            u(2026, 10, 25, 0, 30),
            u(2026, 10, 25, 1, 0),
            u(2026, 10, 25, 1, 30),
            u(2026, 10, 25, 2, 0),
        ],
        [
            "2026-10-25 02:00 CEST",
            "2026-10-25 02:30 CEST",
            "2026-10-25 02:00 CET",
            "2026-10-25 02:30 CET",
            "2026-10-25 03:00 CET",
        ],
    ),
    # New York spring forward 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC)
    DstCase(
        NEW_YORK,
        "30 2 * * *",
        u(2026, 3, 7, 12),
        u(2026, 3, 9, 12),
        [u(2026, 3, 8, 7, 0), u(2026, 3, 9, 6, 30)],
        ["2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT"],
    ),
    DstCase(
        NEW_YORK,
        "*/30 * * * *",
        u(2026, 3, 8, 6, 29),  # 01:29 EST
        u(2026, 3, 8, 7, 31),  # 03:31 EDT
        [u(2026, 3, 8, 6, 30), u(2026, 3, 8, 7, 0), u(2026, 3, 8, 7, 30)],
        ["2026-03-08 01:30 EST", "2026-03-08 03:00 EDT", "2026-03-08 03:30 EDT"],
    ),
    # New York fall back 2026-11-01: 02:00 EDT -> 01:00 EST (06:00 UTC); 01:xx repeats
    DstCase(
        NEW_YORK,
        "30 1 * * *",
        u(2026, 10, 31, 12),
        u(2026, 11, 2, 12),
        [u(2026, 11, 1, 5, 30), u(2026, 11, 2, 6, 30)],
        ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"],
    ),
    DstCase(
        NEW_YORK,
        "30 2 * * *",  # 02:30 exists once that night (after the repeated hour)
        u(2026, 10, 31, 12),
        u(2026, 11, 2, 12),
        [u(2026, 11, 1, 7, 30), u(2026, 11, 2, 7, 30)],
        ["2026-11-01 02:30 EST", "2026-11-02 02:30 EST"],
    ),
    DstCase(
        NEW_YORK,
        "*/30 * * * *",
        u(2026, 11, 1, 4, 59),  # 00:59 EDT
        u(2026, 11, 1, 7, 1),  # 02:01 EST
        [
            u(2026, 11, 1, 5, 0),
            u(2026, 11, 1, 5, 30),
            u(2026, 11, 1, 6, 0),
            u(2026, 11, 1, 6, 30),
            u(2026, 11, 1, 7, 0),
        ],
        [
            "2026-11-01 01:00 EDT",
            "2026-11-01 01:30 EDT",
            "2026-11-01 01:00 EST",
            "2026-11-01 01:30 EST",
            "2026-11-01 02:00 EST",
        ],
    ),
]
GOLDEN_IDS = [f"{c.zone.split('/')[1]}-{c.start:%m-%d}-{c.expr.replace(' ', '_')}" for c in GOLDEN]


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_dst_golden(case: DstCase) -> None:
    got = fires(CronTrigger(case.expr, case.zone), case.start, case.end)
    assert got == case.utc_times
    assert local(got, case.zone) == case.labels
    previous = case.start
    for t in got:
        assert_utc_after(t, previous)
        previous = t


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_dst_any_input_gives_the_next_golden_time(case: DstCase) -> None:
    """Stateless: from any instant of the window (every 5 min, also inside a repeated hour's
    second occurrence, e.g. a process started then), the first golden time after it."""
    trig = CronTrigger(case.expr, case.zone)
    x = case.start
    while x < case.utc_times[-1]:
        expected = min(t for t in case.utc_times if t > x)
        got = assert_utc_after(trig.next_fire(x), x)
        where = local([x], case.zone)[0]
        assert got == expected, f"from {x} ({where}): {got}, expected {expected}"
        x += timedelta(minutes=5)


def test_fixed_job_started_in_second_occurrence_of_repeated_hour() -> None:
    """Berlin 2026-10-25 02:10 CET (01:10 UTC), after the 02:30 CEST run: not again that day."""
    trig = CronTrigger("30 2 * * *", BERLIN)
    after = u(2026, 10, 25, 1, 10)
    assert assert_utc_after(trig.next_fire(after), after) == u(2026, 10, 26, 1, 30)
    ny = CronTrigger("30 1 * * *", NEW_YORK)
    after = u(2026, 11, 1, 6, 10)  # 01:10 EST, after the 01:30 EDT run
    assert assert_utc_after(ny.next_fire(after), after) == u(2026, 11, 2, 6, 30)


def test_wildcard_job_from_second_occurrence() -> None:
    trig = CronTrigger("*/30 * * * *", BERLIN)
    after = u(2026, 10, 25, 1, 10)  # 02:10 CET
    assert assert_utc_after(trig.next_fire(after), after) == u(2026, 10, 25, 1, 30)
