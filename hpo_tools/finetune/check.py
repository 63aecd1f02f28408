"""``hpo-tools check`` for finetune trial files: every day, every corner, nothing launched.

For each corner point of the search space the finetune file is read (:func:`load_plan`), each
day's trial settings are built, and each day's training config (``[params_config]`` SRC with
its placeholders filled in, or the classic ``-Dconfig``) is edited in memory one parameter at a
time. Every problem is collected, not just the first. Problems are collected, files read and
edits checked by the same helpers as :mod:`hpo_tools.trial.check` (which calls this module for
finetune files).
"""

from __future__ import annotations

import datetime
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


def check_finetune_file(
    trial_file: str | os.PathLike[str],
    search_space_file: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    schema: Any = None,
) -> list[str]:
    """Every problem of a finetune trial file over the corners of a search space.

    Args:
        trial_file: the finetune trial file (either format).
        search_space_file: the NNI search-space JSON file.
        environ: the environment for ``${ENV_VAR}`` (default ``os.environ``).
        schema: the training config's root message ``Descriptor``, as for
            :func:`hpo_tools.trial.check.check_trial_file`.

    Returns:
        One-line problem messages; empty when all is well.
    """
    from hpo_tools.dates import substitute_dates
    from hpo_tools.finetune.plan import load_plan
    from hpo_tools.search_space import corner_points, load_search_space
    from hpo_tools.trial.check import _UNDEFINED, _check_edits, _corner_label, _Problems, _read
    from hpo_tools.trial.settings import TrialVariables, params_to_edits, undefined_placeholders

    env = dict(os.environ if environ is None else environ)
    problems = _Problems()
    try:
        points = corner_points(load_search_space(search_space_file))
    except ConfigError as err:
        return [str(err)]
    try:
        text: str | None = Path(trial_file).read_text(encoding="utf-8")
    except OSError:
        text = None  # load_plan reports the unreadable file
    cache: dict[str, str | None] = {}
    for index, point in enumerate(points, start=1):
        corner = _corner_label(index, len(points), point)
        variables = TrialVariables("check", f"corner{index}", f"./check/corner{index}", point)
        stand_in = env
        if text is not None:
            try:
                undefined = undefined_placeholders(
                    text, source=str(trial_file), variables=variables, environ=env
                )
            except ConfigError:  # Jinja or INI syntax: load_plan reports it
                undefined = []
            # Every undefined ${...} at once (reading the plan stops at the first), then
            # stand-ins for them so that the rest of the file is still checked.
            for _, message in undefined:
                problems.add(message)
            stand_in = {**env, **{name: _UNDEFINED for name, _ in undefined}}
        try:
            plan = load_plan(trial_file, variables=variables, environ=stand_in,
                             default_days=_STAND_IN_DAYS)
        except HpoError as err:
            problems.add(str(err), corner)
            continue
        edits = params_to_edits(point)
        for day in plan.days:
            try:
                settings = plan.day_settings(day)
                extra = {} if plan.format == "classic" else {
                    "model_dir": plan.model_dir(day), "fine_tune_checkpoint": plan.checkpoint(day)}
                if settings.config_path and settings.edit_config_json is not None:
                    text = _read(settings.config_path, problems, cache)
                    if text is not None:
                        _check_edits(text, settings.config_path, settings.edit_config_json,
                                     problems, corner, schema)
                for edit in settings.config_edits:
                    text = _read(edit.src, problems, cache)
                    if text is None:
                        continue
                    text = substitute_dates(text, day, where=edit.src, extra=extra)
                    _check_edits(text, edit.src, edits, problems, corner, schema)
            except HpoError as err:
                problems.add(f"day {day}: {err}", corner)
    return problems.messages
