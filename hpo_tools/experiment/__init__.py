"""Headless NNI experiments: start, follow to the end, summarise, export the best trial.

``hpo-tools experiment run CONFIG.yml`` drives an NNI experiment through NNI's Python API
(imported lazily, only on the paths that start or stop an experiment) and handles two NNI 3.0
traps (``../shared/API-NOTES.md`` §0):

* ``Experiment.run()`` never returns when the tuner runs out of points (status
  ``TUNER_NO_MORE_TRIAL``), so the status is polled here and "no more trials and none running" is
  an end (:func:`experiment_finished`).
* NNI's database may pair a plain NNI trial with another trial's parameters when trials run
  concurrently (our runner's trials adopt the set NNI recorded, see ``trial.reporter``), so
  scores and parameters come from the trial's own record (``params.json`` / ``result.json``
  written by the trial runner in the trial directory), never from ``export_data()``.

Everything that reads results works on the experiment directory ``E`` alone (no NNI connection),
so ``hpo-tools experiment best ID`` works on finished and running experiments alike.

Modules, one job each (this package re-exports their public names):

* ``status``: when an experiment has ended; what became of a trial; a dead dispatcher and why
  it died (the tuner's or assessor's own error).
* ``records``: a trial's own record (and its first error line), assessor decisions, the files
  of ``E``.
* ``config``: the experiment YAML, the trial file it names, NNI's stored profile.
* ``best``: best-trial selection and export to ``E/best/`` (incl. classic configs).
* ``outputs``: ``[output_config]``: the best trial's event files and model, copied.
* ``progress``: snapshots, the progress line and the summary table.
* ``run``: ``run_experiment`` (the NNI lifecycle) and ``export_best_of_experiment``.

The names are imported on first use (PEP 562), so that importing one module, e.g.
``hpo_tools.experiment.records`` from ``hpo_tools.tuners`` inside NNI's dispatcher, does not load
the others (``run`` and ``best`` with their dependencies).

Example:
    >>> result = run_experiment("examples/search/local_easyrec/begin/config.yml", timeout=600)
    >>> result.export.config_path  # E/best/pipeline.config
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpo_tools.experiment.best import (
        BestExport,
        classic_edited_config,
        export_best,
        select_best,
        trial_file_oss_credentials,
    )
    from hpo_tools.experiment.config import (
        DEFAULT_WORKING_DIRECTORY,
        experiment_files,
        find_experiment_dir,
        given_experiment_dir,
        load_experiment_config,
        optimize_mode_of,
        stored_optimize_mode,
        stored_trial_file,
        trial_file_from_command,
    )
    from hpo_tools.experiment.outputs import (
        OutputCopy,
        copy_best_outputs,
        copy_outputs,
        trial_outputs,
    )
    from hpo_tools.experiment.progress import (
        Snapshot,
        TrialView,
        build_snapshot,
        format_progress,
        format_summary,
    )
    from hpo_tools.experiment.records import (
        ExperimentFiles,
        TrialRun,
        read_assessor_decisions,
        read_trial_run,
        trial_error,
    )
    from hpo_tools.experiment.run import (
        HEARTBEAT_INTERVAL,
        POLL_INTERVAL,
        Checker,
        RunResult,
        default_checker,
        export_best_of_experiment,
        free_port,
        path_with_interpreter_first,
        run_experiment,
    )
    from hpo_tools.experiment.status import (
        DispatcherFailure,
        Outcome,
        classify_trial,
        dispatcher_failure,
        experiment_error,
        experiment_finished,
        find_dispatcher_failure,
        settled_status,
    )

_EXPORTS = {
    "BestExport": "best",
    "classic_edited_config": "best",
    "export_best": "best",
    "select_best": "best",
    "trial_file_oss_credentials": "best",
    "DEFAULT_WORKING_DIRECTORY": "config",
    "experiment_files": "config",
    "find_experiment_dir": "config",
    "given_experiment_dir": "config",
    "load_experiment_config": "config",
    "optimize_mode_of": "config",
    "stored_optimize_mode": "config",
    "stored_trial_file": "config",
    "trial_file_from_command": "config",
    "OutputCopy": "outputs",
    "copy_best_outputs": "outputs",
    "copy_outputs": "outputs",
    "trial_outputs": "outputs",
    "Snapshot": "progress",
    "TrialView": "progress",
    "build_snapshot": "progress",
    "format_progress": "progress",
    "format_summary": "progress",
    "ExperimentFiles": "records",
    "TrialRun": "records",
    "read_assessor_decisions": "records",
    "read_trial_run": "records",
    "trial_error": "records",
    "HEARTBEAT_INTERVAL": "run",
    "POLL_INTERVAL": "run",
    "Checker": "run",
    "RunResult": "run",
    "default_checker": "run",
    "export_best_of_experiment": "run",
    "free_port": "run",
    "path_with_interpreter_first": "run",
    "run_experiment": "run",
    "Outcome": "status",
    "classify_trial": "status",
    "dispatcher_failure": "status",
    "DispatcherFailure": "status",
    "experiment_error": "status",
    "find_dispatcher_failure": "status",
    "experiment_finished": "status",
    "settled_status": "status",
}
"""Public name -> the module of this package that defines it."""


__all__ = [
    "POLL_INTERVAL",
    "Outcome",
    "TrialRun",
    "TrialView",
    "Snapshot",
    "BestExport",
    "RunResult",
    "ExperimentFiles",
    "experiment_finished",
    "settled_status",
    "classify_trial",
    "read_trial_run",
    "read_assessor_decisions",
    "select_best",
    "trial_file_oss_credentials",
    "export_best",
    "build_snapshot",
    "format_progress",
    "format_summary",
    "load_experiment_config",
    "trial_file_from_command",
    "optimize_mode_of",
    "find_experiment_dir",
    "given_experiment_dir",
    "stored_optimize_mode",
    "export_best_of_experiment",
    "run_experiment",
    "path_with_interpreter_first",
    "free_port",
    "dispatcher_failure",
    "DispatcherFailure",
    "find_dispatcher_failure",
    "experiment_error",
    "trial_error",
    "classic_edited_config",
    "stored_trial_file",
    "experiment_files",
    "DEFAULT_WORKING_DIRECTORY",
    "HEARTBEAT_INTERVAL",
    "Checker",
    "default_checker",
    "OutputCopy",
    "copy_best_outputs",
    "copy_outputs",
    "trial_outputs",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
