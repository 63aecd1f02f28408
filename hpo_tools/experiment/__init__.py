"""Headless NNI experiments: start, follow to the end, summarise, export the best trial.

``hpo-tools experiment run CONFIG.yml`` drives an NNI experiment through NNI's Python API
(imported lazily, only on the paths that start or stop an experiment) and handles two NNI 3.0
traps (``../shared/API-NOTES.md`` §0):

* ``Experiment.run()`` never returns when the tuner runs out of points (status
  ``TUNER_NO_MORE_TRIAL``), so the status is polled here and "no more trials and none running" is
  an end (:func:`experiment_finished`).
* NNI's database may pair a trial with another trial's parameters when trials run concurrently, so
  scores and parameters come from the trial's own record (``params.json`` / ``result.json``
  written by the trial runner in the trial directory), never from ``export_data()``.

Everything that reads results works on the experiment directory ``E`` alone (no NNI connection),
so ``hpo-tools experiment best ID`` works on finished and running experiments alike.

Modules, one job each (this package re-exports their public names):

* ``status``: when an experiment has ended; what became of a trial; a dead dispatcher.
* ``records``: a trial's own record, assessor decisions, the files of ``E``.
* ``config``: the experiment YAML, the trial file it names, NNI's stored profile.
* ``best``: best-trial selection and export to ``E/best/`` (incl. classic configs).
* ``progress``: snapshots, the progress line and the summary table.
* ``run``: ``run_experiment`` (the NNI lifecycle) and ``export_best_of_experiment``.

Example:
    >>> result = run_experiment("examples/search/local_easyrec/begin/config.yml", timeout=600)
    >>> result.export.config_path  # E/best/pipeline.config
"""

from __future__ import annotations

from hpo_tools.experiment.best import (
    BestExport,
    classic_edited_config,
    export_best,
    select_best,
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
    Outcome,
    classify_trial,
    dispatcher_failure,
    experiment_finished,
)

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
    "classify_trial",
    "read_trial_run",
    "read_assessor_decisions",
    "select_best",
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
    "classic_edited_config",
    "stored_trial_file",
    "experiment_files",
    "DEFAULT_WORKING_DIRECTORY",
    "HEARTBEAT_INTERVAL",
    "Checker",
    "default_checker",
]
