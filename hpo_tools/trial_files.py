"""The one place that decides how a trial file becomes a plan, for the entry points.

``python -m hpo_tools.run``, ``hpo-tools run``, ``hpo-tools check`` and ``hpo-tools
finetune-daily`` call :func:`load_trial_plan`: a file with days of its own (or any file given a
``--start_time``/``--end_time`` window) is a finetune trial (:mod:`hpo_tools.finetune.plan`);
every other file is a plain trial (:mod:`hpo_tools.trial.settings`). Nothing below the entry
points makes that choice, so :mod:`hpo_tools.trial` never imports :mod:`hpo_tools.finetune`.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, TextIO

from hpo_tools.dates import Day
from hpo_tools.failpoints import failpoint
from hpo_tools.storage import write_json_atomic
from hpo_tools.trial.outcome import TrialOutcome, TrialStatus
from hpo_tools.trial.paths import TrialPaths, resolve_paths
from hpo_tools.trial.plan import TrialPlan, TrialVariables
from hpo_tools.trial.reporter import Reporter
from hpo_tools.trial.runner import TrialContext, run_plan
from hpo_tools.trial.signals import TrialCancelled
from hpo_tools.trial.trial_log import TrialLogging, build_masker

__all__ = [
    "is_finetune_file",
    "load_trial_plan",
    "prepare_trial",
    "run_trial_file",
    "previous_day_finished",
    "export_oss_credentials",
    "trial_oss_credentials",
]

_logger = logging.getLogger(__name__)


def trial_oss_credentials(plan: TrialPlan, environ: Mapping[str, str]) -> Any:
    """``[oss_config]``'s keys as :class:`~hpo_tools.storage.OssCredentials`, when the trial
    file gives all three and the environment sets none of ``OSS_ACCESS_KEY_ID`` /
    ``OSS_ACCESS_KEY_SECRET`` / ``OSS_ENDPOINT`` (a partial override would mix two accounts'
    keys); else None. ``run`` and ``check`` read OSS with the same credentials this way."""
    return _oss_credentials(plan.oss, plan.source, environ)


def file_oss_credentials(
    path: str | os.PathLike[str], variables: TrialVariables, environ: Mapping[str, str]
) -> Any:
    """:func:`trial_oss_credentials` of a trial file of any format (finetune files included),
    reading only its ``[oss_config]`` (rendered with ``variables``).

    Raises:
        ConfigError: the file cannot be read or rendered, or the section is wrong.
    """
    from hpo_tools.trial.sections import oss_settings
    from hpo_tools.trial.settings import read_text, read_trial_text

    source = str(path)
    trial_file = read_trial_text(read_text(path), source=source, variables=variables,
                                 environ=environ)
    return _oss_credentials(oss_settings(trial_file), source, environ)


def _oss_credentials(oss: Any, source: str, environ: Mapping[str, str]) -> Any:
    from hpo_tools.storage import (
        ENV_ACCESS_KEY_ID,
        ENV_ACCESS_KEY_SECRET,
        ENV_ENDPOINT,
        OssCredentials,
    )

    names = (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ENDPOINT)
    if oss is None or any(environ.get(name) for name in names):
        return None
    if not (oss.access_key_id and oss.access_key_secret and oss.endpoint):
        return None
    return OssCredentials(oss.access_key_id, oss.access_key_secret, oss.endpoint,
                          source=f"{source} [oss_config]")


def export_oss_credentials(plan: TrialPlan, environ: MutableMapping[str, str]) -> list[str]:
    """Make ``[oss_config]``'s keys the process's OSS credentials, where none are set.

    ``hpo_tools.storage`` (edited configs, ``oss://`` metric sources) and Local jobs read OSS
    credentials from ``OSS_ACCESS_KEY_ID`` / ``OSS_ACCESS_KEY_SECRET`` / ``OSS_ENDPOINT``; see
    :func:`trial_oss_credentials` for when the trial file's are set in ``environ`` (never
    written anywhere; the masker hides the values).

    Returns:
        The names set.
    """
    return set_oss_credentials(trial_oss_credentials(plan, environ), environ)


def set_oss_credentials(creds: Any, environ: MutableMapping[str, str]) -> list[str]:
    """Set ``creds`` (:class:`~hpo_tools.storage.OssCredentials` or None) as ``environ``'s OSS
    variables; return the names set."""
    from hpo_tools.storage import ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ENDPOINT

    if creds is None:
        return []
    names = (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ENDPOINT)
    for name, value in zip(names, (creds.access_key_id, creds.access_key_secret, creds.endpoint)):
        environ[name] = value
    if environ is os.environ:  # not the user's names: never recorded as where keys are
        from hpo_tools.platforms.credentials import mark_exported

        mark_exported(names)
    _logger.info("OSS credentials from [oss_config] exported as %s", ", ".join(names))
    return list(names)


def is_finetune_file(config_path: str | os.PathLike[str]) -> bool:
    """Whether the trial file has days of its own (``[finetune_config]``, ``cmd1_<day>`` keys)."""
    from hpo_tools.finetune.plan import is_finetune_text

    try:
        return is_finetune_text(Path(config_path).read_text(encoding="utf-8"))
    except OSError:
        return False  # the plain parser reports the unreadable file


def previous_day_finished(paths: TrialPaths, trial_id: str, day: Day) -> bool:
    """Whether the job registry has the day before ``day`` finished for this trial."""
    from hpo_tools.jobs import JobRegistry

    record = JobRegistry(paths.experiment_dir).load(trial_id)
    return record is not None and day.previous().bizdate in record.finished_stages


def load_trial_plan(
    config_path: str | os.PathLike[str],
    variables: TrialVariables,
    *,
    environ: Mapping[str, str] | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
    paths: TrialPaths | None = None,
) -> TrialPlan:
    """The plan of a trial file: finetune when it has days (or a window is given), else plain.

    Args:
        config_path: the trial file.
        variables: the trial's identity and parameters.
        environ: the environment for ``${ENV_VAR}`` (default ``os.environ``).
        start_time, end_time: a finetune window from the command line.
        paths: the trial's directories; a finetune trial whose registry has the day before its
            first day finished starts from that day's model.

    Raises:
        ConfigError: anything wrong in the file.
    """
    if start_time or end_time or is_finetune_file(config_path):
        from hpo_tools.finetune.plan import read_finetune_file

        finetune = read_finetune_file(
            config_path, variables=variables, environ=environ,
            start_time=start_time, end_time=end_time,
        )
        chain = paths is not None and previous_day_finished(
            paths, variables.trial_id, finetune.days[0]
        )
        return finetune.to_plan(chain_first_day=chain)
    from hpo_tools.trial.settings import load_trial_file

    return load_trial_file(config_path, variables=variables, environ=environ)


def prepare_trial(
    config_path: str | os.PathLike[str],
    reporter: Reporter,
    *,
    exp_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
) -> tuple[TrialPlan, TrialContext]:
    """Get the parameters, resolve the directories and read the trial file into its plan.

    Raises:
        ConfigError: anything wrong in the trial file (nothing has been launched).
        ReporterChannelLost: NNI's channel is gone.
    """
    env = os.environ if environ is None else environ
    params = reporter.get_parameters()
    exp_id, trial_id = reporter.experiment_id, reporter.trial_id
    paths = resolve_paths(exp_id, trial_id, exp_dir=exp_dir, environ=env)
    variables = TrialVariables(exp_id, trial_id, str(paths.trial_dir), params)
    failpoint("read_trial_file")
    plan = load_trial_plan(
        config_path, variables, environ=env, start_time=start_time, end_time=end_time,
        paths=paths,
    )
    return plan, TrialContext(exp_id, trial_id, params, paths, reporter.parameter_id)


def run_trial_file(
    config_path: str | os.PathLike[str],
    reporter: Reporter,
    *,
    exp_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    interval: float = 1.0,
    stderr: TextIO | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
    schema: Any = None,
) -> TrialOutcome:
    """Everything an entry point does: read the trial file, log to trial.log, run the plan.

    ``schema`` is what the config edits use (``run_plan``'s: None for an installed EasyRec's,
    if any; see :mod:`hpo_tools.trial.schema`).

    A ``KeyboardInterrupt`` (SIGINT) or a :class:`~hpo_tools.trial.signals.TrialCancelled`
    (SIGTERM, when the entry point raises it: ``python -m hpo_tools.run``) before ``run_plan``
    takes the signals over is recorded as the trial's cancellation in ``result.json`` and goes
    on up, so that the process dies by that signal.

    Raises:
        HpoError: a problem in the trial file, found before anything was launched.
        KeyboardInterrupt, TrialCancelled: a signal before ``run_plan`` handled it.
    """
    env = os.environ if environ is None else environ
    try:
        plan, context = prepare_trial(
            config_path, reporter, exp_dir=exp_dir, environ=env,
            start_time=start_time, end_time=end_time,
        )
        masker = build_masker(plan.secrets, env)
        if environ is None:
            export_oss_credentials(plan, os.environ)
        with TrialLogging(context.paths, masker):
            return run_plan(plan, reporter, context, masker=masker, interval=interval,
                            stderr=stderr, schema=schema)
    except (KeyboardInterrupt, TrialCancelled) as err:
        # SIGINT/SIGTERM before run_plan took the signals over (while NNI hands out the
        # parameters, which takes seconds, or the trial file is read): nothing was launched,
        # but the trial's record says it stopped, and by which signal.
        signum = int(getattr(err, "signum", signal.SIGINT))
        paths = resolve_paths(reporter.experiment_id, reporter.trial_id, exp_dir=exp_dir,
                              environ=env)
        if not paths.result_path.exists():
            outcome = TrialOutcome(
                TrialStatus.CANCELLED, 128 + signum,
                message=f"interrupted by {signal.Signals(signum).name} before any job was "
                "launched")
            write_json_atomic(paths.result_path, outcome.to_dict())
        raise

