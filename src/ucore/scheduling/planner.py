"""When a schedule fires next: the trigger's due time, then jitter, then the window.

The nominal time is the trigger's own; the fire time adds a random jitter in
``[0, jitter_seconds]`` and, when that falls outside the schedule's window, moves to a random
point of the next window. Both are stored, so every process agrees on the chosen point.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from ucore.scheduling.schedules import Schedule
from ucore.scheduling.triggers import IntervalTrigger
from ucore.scheduling.windows import place


def first_nominal(schedule: Schedule, start: datetime) -> datetime | None:
    """The due time of a schedule that never fired, for a process started at ``start``.

    An interval schedule is due at start + initial delay; a cron schedule at its first time
    from then on (a cron time is a wall-clock promise: "at 03:00" never means "at start");
    a schedule without a timer has none.
    """
    earliest = start + timedelta(seconds=schedule.initial_delay)
    if isinstance(schedule.trigger, IntervalTrigger):
        return earliest
    return schedule.trigger.next_fire(earliest - timedelta(microseconds=1))


def next_nominal(schedule: Schedule, previous: datetime | None, now: datetime) -> datetime | None:
    """The due time after the one that fired (or was skipped) at ``now``.

    Counted from the previous due time, so fires do not drift; when that lies in the past
    (runs were missed while nothing ran) it continues from now: never a burst of catch-up.
    """
    base = previous if previous is not None else now
    nxt = schedule.trigger.next_fire(base)
    if nxt is None:
        return None
    if nxt <= now:
        nxt = schedule.trigger.next_fire(now)
    return nxt


def fire_time(schedule: Schedule, nominal: datetime | None, rng: random.Random) -> datetime | None:
    """The stored fire time for a nominal due time: jitter, then window deferral."""
    if nominal is None:
        return None
    when = nominal
    if schedule.jitter > 0:
        when += timedelta(seconds=rng.uniform(0, schedule.jitter))
    if schedule.window is not None:
        when = place(when, schedule.window, rng, schedule.timezone)
    return when
