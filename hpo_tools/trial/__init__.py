"""One trial: trial files -> a :class:`TrialPlan`, and the one runner that executes any plan.

- :mod:`~hpo_tools.trial.plan`: the neutral plan (stages of config writes and commands, the
  metric settings, the platform spec);
- :mod:`~hpo_tools.trial.settings`: a (non-finetune) trial file -> its plan, through
  :mod:`~hpo_tools.trial.ini` (sections), :mod:`~hpo_tools.trial.trial_ini` (platform format),
  :mod:`~hpo_tools.trial.classic` (classic format), :mod:`~hpo_tools.trial.sections` (what
  both read alike) and :mod:`~hpo_tools.trial.templating`;
- :mod:`~hpo_tools.trial.runner`: :func:`run_plan`, with :mod:`~hpo_tools.trial.paths`,
  :mod:`~hpo_tools.trial.signals`, :mod:`~hpo_tools.trial.trial_log`,
  :mod:`~hpo_tools.trial.registry`, :mod:`~hpo_tools.trial.outcome` and
  :mod:`~hpo_tools.trial.reporter`.

Which producer reads a given file (plain or finetune) is decided by the entry points
(:mod:`hpo_tools.trial_files`). See docs/trial-files.md and docs/running-trials.md.
"""

from __future__ import annotations

from hpo_tools.trial.outcome import TrialOutcome, TrialStatus
from hpo_tools.trial.paths import TrialPaths, resolve_paths
from hpo_tools.trial.plan import (
    Command,
    ConfigWrite,
    MetricSettings,
    OssSettings,
    PlatformSpec,
    Stage,
    TrialPlan,
    TrialVariables,
)
from hpo_tools.trial.reporter import ConsoleReporter, NniReporter, Reporter, ReporterChannelLost
from hpo_tools.trial.runner import TrialContext, run_plan
from hpo_tools.trial.settings import load_trial_file, parse_trial_text
from hpo_tools.trial.signals import TrialCancelled

__all__ = [
    "Command",
    "ConfigWrite",
    "ConsoleReporter",
    "MetricSettings",
    "NniReporter",
    "OssSettings",
    "PlatformSpec",
    "Reporter",
    "ReporterChannelLost",
    "Stage",
    "TrialCancelled",
    "TrialContext",
    "TrialOutcome",
    "TrialPaths",
    "TrialPlan",
    "TrialStatus",
    "TrialVariables",
    "load_trial_file",
    "parse_trial_text",
    "resolve_paths",
    "run_plan",
]
