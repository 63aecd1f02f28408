"""A (non-finetune) trial file -> its :class:`~hpo_tools.trial.plan.TrialPlan`.

Two formats, told apart by their sections:

* **classic** (``config_begin.ini``, ``[easyrec_cmd_config]``): :mod:`hpo_tools.trial.classic`;
* **platform** (``trial.ini``, ``[platform_config]``): :mod:`hpo_tools.trial.trial_ini`.

:func:`load_trial_file` reads the file, renders it (Jinja, then ``${...}`` per value; see
:mod:`hpo_tools.trial.templating`), reads its sections (:mod:`hpo_tools.trial.ini`) and hands
them to the format's parser. Every problem is a one-line
:class:`~hpo_tools.errors.ConfigError` naming file, section and key (also as data), raised
before anything runs. Finetune files are another producer's (:mod:`hpo_tools.finetune.plan`);
the entry points decide which applies (:mod:`hpo_tools.trial_files`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.trial import classic, trial_ini
from hpo_tools.trial.ini import TrialFile, read_trial_file
from hpo_tools.trial.plan import TrialPlan, TrialVariables
from hpo_tools.trial.sections import OSS_SECTION, platform_sections

__all__ = [
    "read_trial_text",
    "plan_from_file",
    "parse_trial_text",
    "load_trial_file",
    "read_text",
    "undefined_placeholders",
]


def read_text(path: str | os.PathLike[str]) -> str:
    """A trial file's text.

    Raises:
        ConfigError: it cannot be read.
    """
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            f"{source}: cannot read trial file: {err.strerror or err}", source=source
        ) from err


def read_trial_text(
    text: str,
    *,
    source: str,
    variables: TrialVariables,
    environ: Mapping[str, str] | None = None,
) -> TrialFile:
    """Render and read a trial file's text into sections (nothing interpreted yet).

    Raises:
        ConfigError: Jinja or INI syntax.
    """
    env = dict(os.environ if environ is None else environ)
    return read_trial_file(
        text,
        source=source,
        variables=variables.as_dict(),
        environ=env,
        one_line_sections=(OSS_SECTION, *platform_sections()),
    )


def plan_from_file(
    trial_file: TrialFile,
    variables: TrialVariables,
    *,
    extra_edits: Mapping[str, Any] | None = None,
) -> TrialPlan:
    """The plan of a read trial file, by its format.

    Args:
        trial_file: the sections.
        variables: the trial's identity and parameters.
        extra_edits: config edits applied after the parameters (a finetune day's checkpoint,
            for formats that chain by edit).

    Raises:
        ConfigError: not a trial file, or any problem in it.
    """
    if trial_file.has(classic.SECTION):
        return classic.build_plan(trial_file, variables, extra_edits=extra_edits)
    if trial_file.has(trial_ini.SECTION):
        return trial_ini.build_plan(trial_file, variables.params, extra_edits=extra_edits)
    formats = (trial_ini.SECTION, classic.SECTION)
    hint = next((did_you_mean(n, formats) for n in trial_file.names()
                 if did_you_mean(n, formats)), "")
    source = trial_file.source
    raise ConfigError(
        f"{source}: not a trial file: expected a [{trial_ini.SECTION}] section (platform "
        f"format) or an [{classic.SECTION}] section (classic format){hint}",
        source=source,
    )


def parse_trial_text(
    text: str,
    *,
    source: str,
    variables: TrialVariables,
    environ: Mapping[str, str] | None = None,
    extra_edits: Mapping[str, Any] | None = None,
) -> TrialPlan:
    """Render, read and parse a trial file's text into its plan.

    Raises:
        ConfigError: on any problem, naming file, section and key.
    """
    trial_file = read_trial_text(text, source=source, variables=variables, environ=environ)
    return plan_from_file(trial_file, variables, extra_edits=extra_edits)


def load_trial_file(
    path: str | os.PathLike[str],
    *,
    variables: TrialVariables,
    environ: Mapping[str, str] | None = None,
) -> TrialPlan:
    """Read, render and parse a trial file (see :func:`parse_trial_text`).

    Raises:
        ConfigError: the file cannot be read, or any problem in it.
    """
    return parse_trial_text(
        read_text(path), source=str(path), variables=variables, environ=environ
    )


def undefined_placeholders(trial_file: TrialFile) -> list[tuple[str, str]]:
    """Every ``${name}`` of a trial file that is neither a trial variable nor in its environment.

    Used by ``hpo-tools check`` to report them all at once (parsing stops at the first).

    Returns:
        ``(name, "file: [section] key: ${name} is not defined ...")`` in file order.
    """
    names, env = trial_file.variables, trial_file.environ
    found: list[tuple[str, str]] = []
    for section, key, name in trial_file.placeholders():
        if name in names or name in env:
            continue
        hint = did_you_mean(name, list(names) + list(env))
        found.append((
            name,
            f"{trial_file.source}: [{section}] {key}: ${{{name}}} is not defined: not a trial "
            f"variable and not set in the environment{hint}",
        ))
    return found
