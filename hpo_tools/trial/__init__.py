"""One trial: trial files -> settings, templating, the runner, reporters, and `check`.

See docs/trial-files.md and docs/running-trials.md.
"""

from __future__ import annotations

from hpo_tools.trial.reporter import ConsoleReporter, NniReporter, Reporter, ReporterChannelLost
from hpo_tools.trial.runner import (
    TrialCancelled,
    TrialContext,
    TrialOutcome,
    TrialPaths,
    prepare_trial,
    resolve_paths,
    run_trial,
    run_trial_file,
)
from hpo_tools.trial.settings import (
    Command,
    ConfigEdit,
    MetricSettings,
    OdpsSettings,
    OssSettings,
    TrialSettings,
    TrialVariables,
    load_trial_file,
    parse_trial_text,
)

__all__ = [
    "Command",
    "ConfigEdit",
    "ConsoleReporter",
    "MetricSettings",
    "NniReporter",
    "OdpsSettings",
    "OssSettings",
    "Reporter",
    "ReporterChannelLost",
    "TrialCancelled",
    "TrialContext",
    "TrialOutcome",
    "TrialPaths",
    "TrialSettings",
    "TrialVariables",
    "load_trial_file",
    "parse_trial_text",
    "prepare_trial",
    "resolve_paths",
    "run_trial",
    "run_trial_file",
]
