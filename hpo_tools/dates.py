"""Days of a finetune window and the date placeholders of a trial file.

A finetune trial replays consecutive days. For each day the trial file may say

- ``{bizdate}``: the day being trained, ``YYYYMMDD``;
- ``{eval_ymd}``: the next day, the one evaluated on, ``YYYYMMDD``;
- ``{predate}``: the day before, ``YYYYMMDD`` (the previous day's model lives there).

Substitution replaces exactly these names (plus any extra names the caller adds, such as
finetune's ``{model_dir}`` and ``{fine_tune_checkpoint}``). Any other ``{word}`` that looks like a
placeholder is an error with a "did you mean", so a mistyped ``{bizdat}`` never reaches a table
name. JSON values such as ``{"ps": {"count": 1}}``, the trial file's ``${name}`` variables and
Jinja's ``{{ name }}`` do not look like placeholders and pass through untouched.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from hpo_tools.errors import ConfigError, did_you_mean

__all__ = [
    "Day",
    "DATE_VARIABLES",
    "parse_date",
    "day_range",
    "substitute_dates",
    "placeholder_names",
]

DATE_VARIABLES: tuple[str, ...] = ("bizdate", "eval_ymd", "predate")

_COMPACT = "%Y%m%d"
# "{word}", but not "${word}" (a trial-file variable) nor "{{word}}" (Jinja).
_PLACEHOLDER = re.compile(r"(?<![\${])\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_ONE_DAY = _dt.timedelta(days=1)


@dataclass(frozen=True, order=True)
class Day:
    """One day of a finetune window.

    Example:
        >>> Day(_dt.date(2022, 12, 31)).variables()
        {'bizdate': '20221231', 'eval_ymd': '20230101', 'predate': '20221230'}
    """

    date: _dt.date

    @property
    def bizdate(self) -> str:
        return self.date.strftime(_COMPACT)

    @property
    def eval_ymd(self) -> str:
        return (self.date + _ONE_DAY).strftime(_COMPACT)

    @property
    def predate(self) -> str:
        return (self.date - _ONE_DAY).strftime(_COMPACT)

    def previous(self) -> Day:
        return Day(self.date - _ONE_DAY)

    def variables(self) -> dict[str, str]:
        """The placeholder values for this day."""
        return {"bizdate": self.bizdate, "eval_ymd": self.eval_ymd, "predate": self.predate}

    def __str__(self) -> str:
        return self.bizdate


def parse_date(text: str, *, what: str = "date") -> Day:
    """Parse ``YYYY-MM-DD`` or ``YYYYMMDD``.

    Args:
        text: the date as the user wrote it.
        what: where it came from, for the error message (e.g. ``"--start_time"``).

    Raises:
        ConfigError: when ``text`` is not a real calendar date in one of the two spellings.
    """
    cleaned = text.strip()
    for fmt in ("%Y-%m-%d", _COMPACT):
        try:
            return Day(_dt.datetime.strptime(cleaned, fmt).date())
        except ValueError:
            continue
    raise ConfigError(f"{what}: {text!r} is not a date; expected YYYY-MM-DD or YYYYMMDD")


def day_range(start: Day, end: Day, *, what: str = "date range") -> list[Day]:
    """Every day from ``start`` to ``end``, both included.

    Raises:
        ConfigError: when ``end`` is before ``start``.
    """
    if end < start:
        raise ConfigError(f"{what}: end {end} is before start {start}; expected start <= end")
    return list(_iter_days(start, end))


def _iter_days(start: Day, end: Day) -> Iterator[Day]:
    current = start.date
    while current <= end.date:
        yield Day(current)
        current += _ONE_DAY


def substitute_dates(
    text: str,
    day: Day,
    *,
    where: str = "text",
    extra: Mapping[str, str] | None = None,
) -> str:
    """Replace ``{bizdate}``, ``{eval_ymd}`` and ``{predate}`` in ``text`` with ``day``'s values.

    Args:
        text: a command, table name, path or config value.
        day: the day being trained.
        where: what ``text`` is (file, section, key), for the error message.
        extra: more ``{name}`` -> value pairs known for this day (they cannot shadow the dates).

    Raises:
        ConfigError: when ``text`` holds another ``{word}`` placeholder.
    """
    values = {**dict(extra or {}), **day.variables()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        raise ConfigError(
            f"{where}: unknown date placeholder {{{name}}}{did_you_mean(name, values)}"
            f"{_line_of(text, match.start())}; "
            f"known: {', '.join('{' + v + '}' for v in values)}"
        )

    return _PLACEHOLDER.sub(replace, text)


def _line_of(text: str, offset: int) -> str:
    """`` in line '...'`` naming the line of ``offset`` in a text of several lines, else ``""``."""
    if "\n" not in text.strip("\n"):
        return ""
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    line = text[start:] if end < 0 else text[start:end]
    line = line.strip()
    return f" in line {line if len(line) <= 80 else line[:77] + '...'!r}"


def placeholder_names(text: str) -> list[str]:
    """The ``{word}`` placeholders of ``text``, in order (``${x}`` and ``{{x}}`` excluded)."""
    return [match.group(1) for match in _PLACEHOLDER.finditer(text)]
