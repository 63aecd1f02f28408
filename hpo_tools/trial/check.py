"""``hpo-tools check``: render a trial file and its edited configs at every corner of the search
space, launching nothing, and collect every problem at once.

For each corner point (:func:`hpo_tools.search_space.corner_points`) the trial file is rendered
and parsed with those parameters, and each edited training config (``[params_config]`` sources,
or the classic ``-Dconfig`` with ``-Dedit_config_json``) is read and edited in memory, one
parameter at a time, so every key that does not resolve and every value that does not fit is
reported, not just the first. Nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError, HpoError
from hpo_tools.search_space import corner_points, load_search_space
from hpo_tools.trial.settings import (
    TrialSettings,
    TrialVariables,
    params_to_edits,
    parse_trial_text,
    rendered_without,
    undefined_placeholders,
)

__all__ = ["check_trial_file", "check_or_raise"]

_logger = logging.getLogger(__name__)

_UNDEFINED = "<undefined>"
# At most this many bad keys are skipped over in one file before giving up on it.
_MAX_SETTING_ERRORS = 50
# "file: [section] key: ..." (a bad key or value) and "file: unknown section [name]...".
_BAD_KEY = re.compile(r"\[(?P<section>[^\]]+)\] (?P<key>[^\s:]+): ")
_BAD_SECTION = re.compile(r"unknown section \[(?P<section>[^\]]+)\]")


class _Problems:
    """Ordered, de-duplicated problem messages; a corner label is added where it matters."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self.messages: list[str] = []

    def add(self, message: str, corner: str | None = None) -> None:
        if message in self._seen:
            return
        self._seen.add(message)
        self.messages.append(f"{message} [at {corner}]" if corner else message)


def _corner_label(index: int, count: int, point: Mapping[str, Any]) -> str:
    return f"corner {index}/{count} {json.dumps(dict(point), sort_keys=True)}"


def _check_edits(
    text: str,
    source: str,
    edits: Mapping[str, Any],
    problems: _Problems,
    corner: str,
    schema: Any,
) -> None:
    from hpo_tools.pbtxt import Document

    try:
        document = Document.parse(text, source=source)
    except ConfigError as err:
        problems.add(str(err))
        return
    for key, value in edits.items():
        try:
            document.apply({key: value}, schema=schema)
        except ConfigError as err:
            problems.add(f"{source}: {err}" if source not in str(err) else str(err), corner)


def _read(path: str, problems: _Problems, cache: dict[str, str | None]) -> str | None:
    if path not in cache:
        from hpo_tools import storage

        try:
            cache[path] = storage.read_text(path)
        except HpoError as err:
            message = str(err)
            problems.add(message if path in message else f"{path}: cannot read: {message}")
            cache[path] = None
    return cache[path]


def _check_metrics(settings: TrialSettings, problems: _Problems) -> None:
    """Build the trial's metric sources as the runner would, on the trial's own platform.

    Creating a platform contacts nothing (MaxCompute builds its client on first use), and the
    sources read nothing until polled, so this launches and reads nothing.
    """
    from hpo_tools.platforms import create_platform
    from hpo_tools.trial.runner import build_follower

    try:
        platform = create_platform(settings.platform, **settings.platform_options())
    except ConfigError as err:
        problems.add(str(err))
        return
    try:
        follower = build_follower(settings, Path("trial.log"), platform=platform)
    except ConfigError as err:
        problems.add(str(err))
        return
    finally:
        platform.close()
    for source in follower.sources:
        source.close()


def _parse_reporting_all(
    text: str,
    source: str,
    variables: TrialVariables,
    environ: Mapping[str, str],
    problems: _Problems,
    corner: str,
) -> TrialSettings | None:
    """Parse the trial file; on a bad key or section, report it, drop it and parse again.

    The parser stops at its first problem; dropping the culprit lets the next one show, so
    every unknown key and bad value is reported at once. None when a problem cannot be skipped
    (a missing required key) or after :data:`_MAX_SETTING_ERRORS`.
    """
    for _ in range(_MAX_SETTING_ERRORS):
        try:
            return parse_trial_text(text, source=source, variables=variables, environ=environ)
        except ConfigError as err:
            message = str(err)
            problems.add(message, corner)
            where = message[len(source) + 2 :] if message.startswith(f"{source}: ") else ""
            bad_key = _BAD_KEY.match(where)
            bad_section = _BAD_SECTION.match(where)
            if bad_key:
                section, key = bad_key.group("section"), bad_key.group("key")
            elif bad_section:
                section, key = bad_section.group("section"), None
            else:
                return None
            try:
                text = rendered_without(
                    text, source=source, variables=variables, section=section, key=key,
                    environ=environ,
                )
            except ConfigError:
                return None
    return None


def check_trial_file(
    trial_file: str | os.PathLike[str],
    search_space_file: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    schema: Any = None,
) -> list[str]:
    """Every problem of a trial file over the corners of a search space.

    Args:
        trial_file: the trial file (either format).
        search_space_file: the NNI search-space JSON file.
        environ: the environment for ``${ENV_VAR}`` (default ``os.environ``).
        schema: the training config's root message ``Descriptor``
            (:func:`hpo_tools.pbtxt.schema.load_schema`): values are then checked against the
            field types, and fields absent from the config but known to the schema may be set.

    Returns:
        One-line problem messages; empty when all is well.
    """
    env = dict(os.environ if environ is None else environ)
    problems = _Problems()
    source = str(trial_file)
    try:
        space = load_search_space(search_space_file)
        text = Path(trial_file).read_text(encoding="utf-8")
    except ConfigError as err:
        return [str(err)]
    except OSError as err:
        return [f"{source}: cannot read trial file: {err.strerror or err}"]
    from hpo_tools.finetune.plan import is_finetune_text

    if is_finetune_text(text):  # days of its own: checked day by day
        from hpo_tools.finetune.check import check_finetune_file

        return check_finetune_file(trial_file, search_space_file, environ=env, schema=schema)
    points = corner_points(space)
    cache: dict[str, str | None] = {}
    for index, point in enumerate(points, start=1):
        corner = _corner_label(index, len(points), point)
        variables = TrialVariables("check", f"corner{index}", f"./check/corner{index}", point)
        try:
            undefined = undefined_placeholders(
                text, source=source, variables=variables, environ=env
            )
        except ConfigError as err:  # Jinja or INI syntax: nothing further can be checked
            problems.add(str(err))
            break
        for _, message in undefined:
            problems.add(message)
        # Stand-ins for the undefined names, so the other checks still run.
        stand_in = {**env, **{name: _UNDEFINED for name, _ in undefined}}
        settings = _parse_reporting_all(text, source, variables, stand_in, problems, corner)
        if settings is None:
            continue
        _check_metrics(settings, problems)
        edits = params_to_edits(point)
        if settings.edit_config_json is not None and settings.config_path:
            config_text = _read(settings.config_path, problems, cache)
            if config_text is not None:
                _check_edits(
                    config_text,
                    settings.config_path,
                    settings.edit_config_json,
                    problems,
                    corner,
                    schema,
                )
        for config_edit in settings.config_edits:
            config_text = _read(config_edit.src, problems, cache)
            if config_text is not None:
                _check_edits(config_text, config_edit.src, edits, problems, corner, schema)
    _logger.info("checked %s over %d corner points", source, len(points))
    return problems.messages


def check_or_raise(
    trial_file: str | os.PathLike[str],
    search_space_file: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    schema: Any = None,
) -> None:
    """:func:`check_trial_file`, raising when there is any problem.

    Raises:
        ConfigError: ``"<n> problem(s) in <file>: <first>; <second>; ..."`` (one line).
    """
    problems = check_trial_file(trial_file, search_space_file, environ=environ, schema=schema)
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s) in {trial_file} with {search_space_file}: "
            + "; ".join(problems)
        )
