"""Maintenance windows: daily spans of local time in which a schedule may fire.

A window ``{"start": "01:00", "end": "05:00"}`` is read in the schedule's time zone (the
machine's local zone by default); when ``end`` is before ``start`` it crosses midnight. A due
time inside a window fires as it is; one outside is deferred to a **random point** of the
next window, which spreads the load of many machines sharing one database. The chosen point is
stored as the schedule's next fire time, so every process agrees on it.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, tzinfo

from ucore.foundation.clock import utc, zone
from ucore.foundation.config.schedule import Window


def _at(day: date, moment: time, tz: tzinfo) -> datetime:
    # fold=0: in a repeated hour the first occurrence; in a skipped hour zoneinfo maps the
    # wall time with the offset before the change, i.e. just after the gap in UTC terms
    return datetime.combine(day, moment, tzinfo=tz)


def openings(window: Window, around: datetime, tz: tzinfo) -> list[tuple[datetime, datetime]]:
    """The window's spans (open, close) as UTC datetimes, from the day before ``around``."""
    local_day = utc(around).astimezone(tz).date()
    spans = []
    for offset in range(-1, 3):
        day = local_day + timedelta(days=offset)
        start = _at(day, window.start_time, tz)
        end_day = day + timedelta(days=1) if window.end_time <= window.start_time else day
        end = _at(end_day, window.end_time, tz)
        opened, closed = utc(start), utc(end)
        if closed > opened:
            spans.append((opened, closed))
    return spans


def place(
    due: datetime, window: Window, rng: random.Random, timezone: str | None = None
) -> datetime:
    """The fire time for ``due``: itself inside the window, else a random point of the next one."""
    tz = zone(timezone)
    for opened, closed in openings(window, due, tz):
        if closed <= due:
            continue
        if opened <= due:
            return due
        span = (closed - opened).total_seconds()
        return opened + timedelta(seconds=rng.uniform(0, span))
    raise ValueError(f"window {window.start}-{window.end} never opens")  # pragma: no cover


def inside(moment: datetime, window: Window, timezone: str | None = None) -> bool:
    tz = zone(timezone)
    return any(o <= moment < c for o, c in openings(window, moment, tz))
