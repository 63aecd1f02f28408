"""``[schedule_config]``: the hours (and days) in which a trial may start its jobs.

hpo_tools 0.1.x's section: ``day = everyday | weekend``, ``start_time`` and ``end_time`` as
``HH:MM`` (local time). A window whose end is before its start runs over midnight
(``22:00``-``06:00``); one whose start and end are equal is open all day; with ``weekend`` it
opens on Saturday and Sunday only. A trial started
outside its window waits, saying when it will start, and stops at once on SIGINT/SIGTERM while
it waits (the runner looks at its cancel flag every tick).
"""

from __future__ import annotations

import datetime
import enum
import re
from dataclasses import dataclass

__all__ = ["ScheduleDays", "ScheduleWindow", "parse_clock"]

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_SATURDAY = 5


class ScheduleDays(enum.Enum):
    """Which days a window opens on."""

    EVERYDAY = "everyday"
    WEEKEND = "weekend"


def parse_clock(text: str) -> datetime.time:
    """``HH:MM`` (00:00 to 23:59) -> a time; ValueError naming what is expected."""
    match = _CLOCK.match(text.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"expected HH:MM from 00:00 to 23:59, got {text!r}")
    return datetime.time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class ScheduleWindow:
    """The daily window in which a trial may start.

    Example:
        >>> window = ScheduleWindow(ScheduleDays.EVERYDAY, parse_clock("22:00"),
        ...                         parse_clock("06:00"))
        >>> window.next_start(datetime.datetime(2026, 12, 4, 12, 0))
        datetime.datetime(2026, 12, 4, 22, 0)
        >>> window.next_start(datetime.datetime(2026, 12, 5, 1, 0)) is None   # inside
        True
    """

    days: ScheduleDays
    start: datetime.time
    end: datetime.time

    def _opens_on(self, day: datetime.date) -> bool:
        return self.days is ScheduleDays.EVERYDAY or day.weekday() >= _SATURDAY

    def is_open(self, now: datetime.datetime) -> bool:
        """Whether ``now`` is inside the window."""
        clock = now.time()
        if self.start == self.end:  # the whole day
            return self._opens_on(now.date())
        if self.start < self.end:
            return self._opens_on(now.date()) and self.start <= clock < self.end
        # Over midnight: the evening part belongs to today's window, the morning part to
        # yesterday's.
        if clock >= self.start:
            return self._opens_on(now.date())
        return clock < self.end and self._opens_on(now.date() - datetime.timedelta(days=1))

    def next_start(self, now: datetime.datetime) -> datetime.datetime | None:
        """When the window next opens; None when ``now`` is inside it."""
        if self.is_open(now):
            return None
        for ahead in range(8):
            day = now.date() + datetime.timedelta(days=ahead)
            start = datetime.datetime.combine(day, self.start)
            if start > now and self._opens_on(day):
                return start
        raise AssertionError("a window opens within a week")  # pragma: no cover

    def __str__(self) -> str:
        return f"{self.days.value} {self.start:%H:%M}-{self.end:%H:%M}"
