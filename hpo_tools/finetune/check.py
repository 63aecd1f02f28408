"""``hpo-tools check`` for finetune trial files: every day, every corner, nothing launched.

For each corner point of the search space the finetune file is read (:func:`load_plan`), each
day's trial settings are built, and each day's training config (``[params_config]`` SRC with
its placeholders filled in, or the classic ``-Dconfig``) is edited in memory one parameter at a
time. Every problem is collected, not just the first.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo_tools.dates import Day
from hpo_tools.errors import ConfigError, HpoError

__all__ = ["check_finetune_file"]

# When the days come from the runner's command line (--start_time/--end_time), the file is
# checked over two stand-in days (a month end, so that chaining is checked too).
_STAND_IN_DAYS = (Day(datetime.date(2022, 5, 31)), Day(datetime.date(2022, 6, 1)))


def _edit_problems(text: str, source: str, edits: Mapping[str, Any]) -> list[str]:
    from hpo_tools.pbtxt import Document

    try:
        document = Document.parse(text, source=source)
    except ConfigError as err:
        return [str(err)]
    problems = []
    for key, value in edits.items():
        try:
            document.apply({key: value})
        except ConfigError as err:
            problems.append(str(err) if source in str(err) else f"{source}: {err}")
    return problems


def check_finetune_file(
    trial_file: str | os.PathLike[str],
    search_space_file: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Every problem of a finetune trial file over the corners of a search space.

    Returns:
        One-line problem messages; empty when all is well.
    """
    from hpo_tools import storage
    from hpo_tools.dates import substitute_dates
    from hpo_tools.finetune.plan import load_plan
    from hpo_tools.search_space import corner_points, load_search_space
    from hpo_tools.trial.settings import TrialVariables, params_to_edits

    env = dict(os.environ if environ is None else environ)
    problems: list[str] = []

    def add(message: str, corner: str = "") -> None:
        line = f"{message} [at {corner}]" if corner else message
        if message not in (p.split(" [at ")[0] for p in problems):
            problems.append(line)

    try:
        points = corner_points(load_search_space(search_space_file))
    except ConfigError as err:
        return [str(err)]
    cache: dict[str, str | None] = {}

    def read(path: str) -> str | None:
        if path not in cache:
            try:
                cache[path] = storage.read_text(path)
            except HpoError as err:
                add(str(err))
                cache[path] = None
        return cache[path]

    for index, point in enumerate(points, start=1):
        corner = f"corner {index}/{len(points)} {json.dumps(dict(point), sort_keys=True)}"
        variables = TrialVariables("check", f"corner{index}", f"./check/corner{index}", point)
        try:
            plan = load_plan(trial_file, variables=variables, environ=env,
                             default_days=_STAND_IN_DAYS)
        except HpoError as err:
            add(str(err), corner)
            continue
        edits = params_to_edits(point)
        for day in plan.days:
            try:
                settings = plan.day_settings(day)
                checkpoint = plan.checkpoint(day)
                extra = {} if plan.format == "classic" else {
                    "model_dir": plan.model_dir(day), "fine_tune_checkpoint": checkpoint}
                if settings.config_path and settings.edit_config_json is not None:
                    text = read(settings.config_path)
                    for message in _edit_problems(
                        text or "", settings.config_path, settings.edit_config_json
                    ) if text is not None else []:
                        add(message, corner)
                for edit in settings.config_edits:
                    text = read(edit.src)
                    if text is None:
                        continue
                    text = substitute_dates(text, day, where=edit.src, extra=extra)
                    for message in _edit_problems(text, edit.src, edits):
                        add(message, corner)
            except HpoError as err:
                add(f"day {day}: {err}", corner)
    return problems


def check_or_raise(
    trial_file: str | os.PathLike[str], search_space_file: str | os.PathLike[str]
) -> None:
    """:func:`check_finetune_file`, raising a one-line ConfigError when there is a problem."""
    problems = check_finetune_file(trial_file, search_space_file)
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s) in {Path(trial_file)} with {search_space_file}: "
            + "; ".join(problems)
        )
