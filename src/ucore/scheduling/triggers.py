"""Triggers: small immutable values with a pure ``next_fire(after)``.

Times go in and come out as aware UTC datetimes. Cron expressions are evaluated in their time
zone by cronsim, which handles daylight-saving changes as Debian's cron does: a job whose time
falls in a skipped hour runs right after the change; in a repeated hour a job with a fixed
hour runs once, a job with a wildcard hour in both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from cronsim import CronSim

from ucore.foundation.clock import utc, zone

_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


class Trigger(ABC):
    @abstractmethod
    def next_fire(self, after: datetime) -> datetime | None:
        """The first due time strictly after ``after`` (None: never by itself)."""

    @abstractmethod
    def describe(self) -> str:
        """In words, for status output: "every 6 hours", "daily at 03:00"."""

    @property
    def period(self) -> float | None:
        """About how many seconds lie between two fires (for "overdue" checks)."""
        return None


@dataclass(frozen=True)
class IntervalTrigger(Trigger):
    """Every ``seconds``, counted from the last fire."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("an interval must be > 0")

    def next_fire(self, after: datetime) -> datetime:
        return utc(after) + timedelta(seconds=self.seconds)

    def describe(self) -> str:
        return "every " + _duration_words(self.seconds)

    @property
    def period(self) -> float:
        return self.seconds


@dataclass(frozen=True)
class CronTrigger(Trigger):
    """A cron expression in a time zone (default: the machine's local zone)."""

    expression: str
    timezone: str | None = None

    def zone(self) -> tzinfo:
        return zone(self.timezone)

    def next_fire(self, after: datetime) -> datetime:
        after = utc(after)
        # cronsim evaluates fixed-time jobs on naive local time: from an instant in the second
        # occurrence of a repeated hour it may answer the first one (in the past); skip it.
        for candidate in CronSim(self.expression, after.astimezone(self.zone())):
            result = candidate.astimezone(UTC)
            if result > after:
                return result
        raise ValueError(f"cron '{self.expression}' has no time after {after.isoformat()}")

    def describe(self) -> str:
        words = _cron_words(self.expression)
        return f"{words} ({self.timezone})" if self.timezone else words

    @property
    def period(self) -> float:
        start = datetime.now(UTC)
        first = self.next_fire(start)
        second = self.next_fire(first)
        return (second - first).total_seconds()


@dataclass(frozen=True)
class ManualTrigger(Trigger):
    """No time of its own: the schedule fires only at startup, after others, or by hand."""

    def next_fire(self, after: datetime) -> None:
        return None

    def describe(self) -> str:
        return "no timer"


def _duration_words(seconds: float) -> str:
    for unit, name in _UNITS:
        if seconds >= unit and seconds % unit == 0:
            count = int(seconds // unit)
            return f"{count} {name}s" if count != 1 else name
    return f"{seconds:g} seconds"


def _cron_words(expr: str) -> str:
    fields = expr.split()
    if len(fields) == 5:
        minute, hour, dom, month, dow = fields
        if minute.isdigit() and hour.isdigit() and dom == month == dow == "*":
            return f"daily at {int(hour):02d}:{int(minute):02d}"
    try:
        text = CronSim(expr, datetime.now(UTC)).explain()
    except Exception:
        return f"cron '{expr}'"
    return text[:1].lower() + text[1:]
