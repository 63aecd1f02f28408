"""``hpo-tools check``: build a trial file's plan at every corner of the search space, launching
nothing, and collect every problem at once.

For each corner point (:func:`hpo_tools.search_space.corner_points`) the trial file is read with
those parameters and its plan is built the way the runner builds it (a finetune file: every
day's stage). A problem in the trial file carries its section and key
(:class:`~hpo_tools.errors.ConfigError`): it is reported, that key (or section) is dropped from
the sections already read, and the plan is built again, so every unknown key and bad value
shows, not just the first. Then each stage's metric sources are built on the trial's own
platform (contacting nothing) and each edited training config is read and edited in memory,
one edit at a time, so every key that does not resolve and every value that does not fit is
reported, with the schema and the rules the runner applies them with
(:mod:`hpo_tools.trial.schema`, ``ConfigWrite.left_to_platform``); a ``[params_config]
budget_path`` must name a numeric field of each config, with or without a ``TRIAL_BUDGET``
among the parameters. Nothing is written.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo_tools.dates import Day
from hpo_tools.errors import ConfigError, HpoError
from hpo_tools.search_space import corner_points, load_search_space
from hpo_tools.trial.ini import TrialFile
from hpo_tools.trial.plan import ConfigWrite, TrialPlan, TrialVariables
from hpo_tools.trial.schema import ConfigSchema, config_schema
from hpo_tools.trial.settings import plan_from_file, read_trial_text, undefined_placeholders

__all__ = ["check_trial_file", "check_or_raise"]

_logger = logging.getLogger(__name__)

_UNDEFINED = "<undefined>"
# At most this many bad keys are skipped over in one file before giving up on it.
_MAX_SETTING_ERRORS = 50
# When a finetune file's days come from the runner's command line (--start_time/--end_time),
# it is checked over two stand-in days (a month end, so that chaining is checked too).
_STAND_IN_DAYS = (Day(datetime.date(2022, 5, 31)), Day(datetime.date(2022, 6, 1)))


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


def _tuner_added(index: int) -> dict[str, Any]:
    """Stand-ins for the parameters NNI's tuners add to a point (``TRIAL_BUDGET`` of
    Hyperband/BOHB, PBT's checkpoint directories), which a search space never lists."""
    return {"TRIAL_BUDGET": 1, "load_checkpoint_dir": f"./check/corner{index}/checkpoint",
            "save_checkpoint_dir": f"./check/corner{index}/checkpoint"}


def _corner_label(index: int, count: int, point: Mapping[str, Any]) -> str:
    return f"corner {index}/{count} {json.dumps(dict(point), sort_keys=True)}"


def _plan_reporting_all(
    trial_file: TrialFile, variables: TrialVariables, problems: _Problems, corner: str
) -> TrialPlan | None:
    """Build the plan; on a bad key or section, report it, drop it and build again.

    None when a problem cannot be skipped (a missing required key, which has no value to
    drop) or after :data:`_MAX_SETTING_ERRORS`.
    """
    for _ in range(_MAX_SETTING_ERRORS):
        try:
            return plan_from_file(trial_file, variables)
        except ConfigError as err:
            problems.add(str(err), corner)
            section = err.section
            if section is None or not trial_file.has(section):
                return None
            if err.key is not None:
                found = trial_file.section(section)
                if found is None or err.key not in found.keys():
                    return None
            trial_file = trial_file.without(section, err.key)
    return None


def _check_metrics(plan: TrialPlan, problems: _Problems) -> None:
    """Build each stage's metric sources as the runner would, on the trial's own platform.

    Creating a platform contacts nothing (clients are built on first use), and the sources
    read nothing until polled.
    """
    from hpo_tools.trial.follow import build_follower

    try:
        platform = plan.platform.create()
    except ConfigError as err:
        problems.add(str(err))
        return
    try:
        for stage in plan.stages:
            try:
                follower = build_follower(
                    stage.metric, Path("trial.log"), platform=platform,
                    where=f"{plan.source}: [metric_config]",
                )
            except ConfigError as err:
                problems.add(str(err))
                continue
            for source in follower.sources:
                source.close()
    finally:
        platform.close()


def _storage_for(plan: TrialPlan, environ: Mapping[str, str]) -> Any:
    """What the runner would read OSS with: the trial file's ``[oss_config]`` keys when the
    environment has none (:func:`hpo_tools.trial_files.trial_oss_credentials`), else the
    process's storage (environment, ``~/.ossutilconfig``)."""
    from hpo_tools import storage
    from hpo_tools.trial_files import trial_oss_credentials

    creds = trial_oss_credentials(plan, environ)
    return storage if creds is None else storage.Storage(oss=creds)


def _read(
    path: str, problems: _Problems, cache: dict[str, str | None], store: Any
) -> str | None:
    if path not in cache:
        try:
            cache[path] = store.read_text(path)
        except HpoError as err:
            message = str(err)
            problems.add(message if path in message else f"{path}: cannot read: {message}")
            cache[path] = None
    return cache[path]


def _check_write(
    write: ConfigWrite,
    problems: _Problems,
    corner: str,
    cache: dict[str, str | None],
    schema: ConfigSchema,
    store: Any,
    noticed: set[str],
) -> None:
    """Edit ``write``'s source in memory one edit at a time, reporting every edit that fails."""
    from hpo_tools.pbtxt import Document

    text = _read(write.src, problems, cache, store)
    if text is None:
        return
    source = write.src
    if not write.edits and write.budget is None:  # written as it is (replacements made):
        return  # need not be protobuf text
    try:
        document = Document.parse(write.source_text(text), source=source)
    except ConfigError as err:
        problems.add(str(err))
        return
    descriptor = schema.for_document(document)
    left = write.left_to_platform(document, descriptor)  # set by EasyRec on the platform
    for path in left:
        if path not in noticed:
            noticed.add(path)
            _logger.warning("%s", write.passthrough_notice(path))
    for key, value in write.edits.items():
        if key in left:
            continue
        try:
            document.apply({key: value}, schema=descriptor)
        except ConfigError as err:
            problems.add(f"{source}: {err}" if source not in str(err) else str(err), corner)
    if write.budget is not None:  # with or without TRIAL_BUDGET (the corners have none)
        try:
            document.apply(write.budget.edit(document, descriptor), schema=descriptor)
        except ConfigError as err:
            problems.add(str(err), corner)


def _finetune_plan(
    trial_file: str | os.PathLike[str],
    text: str,
    variables: TrialVariables,
    environ: Mapping[str, str],
) -> TrialPlan:
    from hpo_tools.finetune.plan import read_finetune_file

    finetune = read_finetune_file(
        trial_file, variables=variables, environ=environ, text=text,
        default_days=_STAND_IN_DAYS,
    )
    return finetune.to_plan()


def check_trial_file(
    trial_file: str | os.PathLike[str],
    search_space_file: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    schema: Any = None,
) -> list[str]:
    """Every problem of a trial file (plain or finetune) over the corners of a search space.

    Args:
        trial_file: the trial file (either format, finetune or not).
        search_space_file: the NNI search-space JSON file.
        environ: the environment for ``${ENV_VAR}`` (default ``os.environ``).
        schema: what the edits are checked against, as for the runner
            (:func:`hpo_tools.trial.schema.config_schema`): a
            :class:`~hpo_tools.trial.schema.ConfigSchema`, the training config's root message
            ``Descriptor`` (:func:`hpo_tools.pbtxt.schema.load_schema`), or None for an
            installed EasyRec's, if any. With a schema, values are checked against the field
            types, and fields absent from the config but known to the schema may be set.

    Returns:
        One-line problem messages; empty when all is well.
    """
    from hpo_tools.finetune.plan import is_finetune_text

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
    finetune = is_finetune_text(text)
    points = corner_points(space)
    cache: dict[str, str | None] = {}
    config = config_schema(schema)
    noticed: set[str] = set()  # passthrough paths noticed (once a check, not once a corner)
    for index, point in enumerate(points, start=1):
        corner = _corner_label(index, len(points), point)
        # Parameters a tuner adds (not in the space): a stand-in where the file uses them.
        added = {name: value for name, value in _tuner_added(index).items()
                 if f"${{{name}}}" in text and name not in point}
        variables = TrialVariables("check", f"corner{index}", f"./check/corner{index}",
                                   {**added, **point})
        try:
            sections: TrialFile | None = read_trial_text(
                text, source=source, variables=variables, environ=env
            )
        except ConfigError as err:  # Jinja or INI syntax: nothing further can be checked
            if not finetune:
                problems.add(str(err))
                break
            sections = None  # reading the finetune file reports it, with its days
        undefined = undefined_placeholders(sections) if sections is not None else []
        for _, message in undefined:
            problems.add(message)
        # Stand-ins for the undefined names, so the other checks still run.
        stand_in = {**env, **{name: _UNDEFINED for name, _ in undefined}}
        if finetune:
            try:
                plan: TrialPlan | None = _finetune_plan(trial_file, text, variables, stand_in)
            except HpoError as err:
                problems.add(str(err), corner)
                continue
        else:
            assert sections is not None
            plan = _plan_reporting_all(
                sections.with_environ(stand_in), variables, problems, corner
            )
        if plan is None:
            continue
        _check_metrics(plan, problems)
        store = _storage_for(plan, env)
        for stage in plan.stages:
            for write in stage.config_writes:
                try:
                    _check_write(write, problems, corner, cache, config, store, noticed)
                except HpoError as err:
                    prefix = f"{stage.label}: " if stage.label else ""
                    problems.add(f"{prefix}{err}", corner)
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
