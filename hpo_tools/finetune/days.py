"""The days of a finetune trial file: which days, and each day's own keys.

A finetune trial file gives its days by ``--start_time``/``--end_time``, by ``[finetune_config]
start_time/end_time``, or by day keys ``cmd<N>_<YYYYMMDD>`` / ``metric_source_<YYYYMMDD>`` (what a
Jinja loop over a date list renders to). This module finds them and selects one day's keys;
:mod:`hpo_tools.finetune.plan` builds the plan.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping

from hpo_tools.dates import Day, day_range, parse_date
from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.metrics.score import FinalMode

__all__ = [
    "FINETUNE_SECTION",
    "is_finetune_text",
    "split_finetune_section",
    "select_day_keys",
    "day_keys",
    "find_days",
    "source_list_final_mode",
]

FINETUNE_SECTION = "finetune_config"

_SECTION_LINE = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY_LINE = re.compile(r"^([A-Za-z_][\w.\-]*)\s*=")
_DAY_KEY = re.compile(r"^(cmd\d+|metric_source)_(\d{8})$")
_DAY_KEY_IN_RAW_TEXT = re.compile(r"^\s*(cmd\d+|metric_source)_(\d{8}|\{\{)", re.MULTILINE)


def is_finetune_text(text: str) -> bool:
    """Whether a trial file's text is a finetune trial file (has days of its own)."""
    return bool(
        re.search(r"^\s*\[finetune_config\]\s*$", text, re.MULTILINE)
        or _DAY_KEY_IN_RAW_TEXT.search(text)
    )


def split_finetune_section(text: str, source: str) -> tuple[str, dict[str, str], list[str]]:
    """Remove ``[finetune_config]`` from ``text``; return the rest, its raw values, its keys."""
    kept: list[str] = []
    section_lines: list[str] = []
    inside = False
    for line in text.splitlines():
        header = _SECTION_LINE.match(line)
        if header:
            inside = header.group(1).strip() == FINETUNE_SECTION
            if inside:
                continue
        (section_lines if inside else kept).append(line)
    if not section_lines:
        return text, {}, []
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(f"[{FINETUNE_SECTION}]\n" + "\n".join(section_lines))
    except configparser.Error as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"{source}: [{FINETUNE_SECTION}]: cannot parse: {first}") from err
    values = dict(parser[FINETUNE_SECTION])
    return "\n".join(kept) + "\n", values, list(values)


def select_day_keys(text: str, day: Day | None) -> str:
    """Keep the ``cmd<N>_<day>`` / ``metric_source_<day>`` keys of ``day`` (renamed to ``cmd<N>``
    / ``metric_source``) and drop other days' keys with their continuation lines."""
    out: list[str] = []
    dropping = False
    for line in text.splitlines():
        stripped = line.strip()
        if _SECTION_LINE.match(line) or not stripped:
            dropping = False
            out.append(line)
            continue
        if stripped[0] in "#;":
            out.append(line)
            continue
        key = _KEY_LINE.match(line) if not line[0].isspace() else None
        if key is None:  # a continuation line of the value above
            if not dropping:
                out.append(line)
            continue
        dropping = False
        match = _DAY_KEY.match(key.group(1))
        if match is None:
            out.append(line)
        elif day is not None and match.group(2) == day.bizdate:
            out.append(match.group(1) + line[key.end(1):])
        else:
            dropping = True
    return "\n".join(out) + "\n"


def day_keys(text: str) -> dict[str, set[str]]:
    """``{YYYYMMDD: {"cmd1", "metric_source", ...}}`` of the rendered text's day keys."""
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line[0].isspace():
            continue
        key = _KEY_LINE.match(line)
        match = _DAY_KEY.match(key.group(1)) if key else None
        if match:
            found.setdefault(match.group(2), set()).add(match.group(1))
    return found



def find_days(
    source: str,
    options: Mapping[str, str],
    keyed: Mapping[str, set[str]],
    start_time: str | None,
    end_time: str | None,
) -> tuple[Day, ...]:
    if (start_time is None) != (end_time is None):
        given, missing = ("--start_time", "--end_time")[:: 1 if start_time else -1]
        raise ConfigError(f"{given} is given but {missing} is missing; give both or neither")
    section_start, section_end = options.get("start_time"), options.get("end_time")
    if (section_start is None) != (section_end is None):
        missing = "end_time" if section_end is None else "start_time"
        raise ConfigError(f"{source}: [{FINETUNE_SECTION}] {missing} is required with the other")
    if keyed:
        if start_time is not None or section_start is not None:
            raise ConfigError(
                f"{source}: the days are listed twice: cmd<N>_<YYYYMMDD> keys and "
                f"{'--start_time/--end_time' if start_time else 'start_time/end_time'}; "
                "keep one"
            )
        days = [parse_date(text, what=f"{source}: key suffix") for text in sorted(keyed)]
        commands = sorted(k for k in keyed[days[0].bizdate] if k.startswith("cmd"))
        for day in days:
            names = keyed[day.bizdate]
            if sorted(k for k in names if k.startswith("cmd")) != commands:
                raise ConfigError(
                    f"{source}: day {day} has commands "
                    f"{', '.join(sorted(k for k in names if k.startswith('cmd'))) or 'none'} "
                    f"but day {days[0]} has {', '.join(commands) or 'none'}"
                )
        return tuple(days)
    if start_time is not None and end_time is not None:
        start = parse_date(start_time, what="--start_time")
        end = parse_date(end_time, what="--end_time")
        return tuple(day_range(start, end, what="--start_time/--end_time"))
    if section_start is not None and section_end is not None:
        start = parse_date(section_start, what=f"{source}: [{FINETUNE_SECTION}] start_time")
        end = parse_date(section_end, what=f"{source}: [{FINETUNE_SECTION}] end_time")
        return tuple(day_range(start, end, what=f"{source}: [{FINETUNE_SECTION}]"))
    raise ConfigError(
        f"{source}: a finetune trial needs its days: --start_time/--end_time, "
        f"[{FINETUNE_SECTION}] start_time/end_time, or cmd<N>_<YYYYMMDD> keys"
    )


def source_list_final_mode(text: str, source: str) -> str:
    """``[metric_config] source_list_final_mode``: how the days' scores combine (default avg)."""
    match = re.search(r"^source_list_final_mode\s*=\s*(\S+)\s*$", text, re.MULTILINE)
    if match is None:
        return "avg"
    value = match.group(1).lower()
    modes = tuple(mode.value for mode in FinalMode)
    if value not in modes:
        raise ConfigError(
            f"{source}: [metric_config] source_list_final_mode: expected one of final, best, "
            f"avg, got {match.group(1)!r}" + did_you_mean(value, modes)
        )
    return value
