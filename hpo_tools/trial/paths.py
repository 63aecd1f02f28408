"""Where a trial writes: the experiment directory ``E`` and the trial's own directory.

See docs/architecture.md, "Directories of an experiment".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TrialPaths", "resolve_paths", "STANDALONE_ID"]

#: The experiment and trial id of a run outside NNI.
STANDALONE_ID = "standalone"


@dataclass(frozen=True)
class TrialPaths:
    """The experiment directory ``E`` and this trial's directory.

    ``nni_experiment_dir`` is NNI's own experiment directory when ``E`` is elsewhere (a runner
    given ``--exp_dir`` under NNI): the job registry leaves a link there, so NNI-side sweeps
    (the assessor's ``trial_end``, ``hpo-tools kill``) find the trial's jobs.
    """

    experiment_dir: Path
    trial_dir: Path
    nni_experiment_dir: Path | None = None

    @property
    def log_path(self) -> Path:
        """``<trial dir>/trial.log``: runner log and relayed job output, masked."""
        return self.trial_dir / "trial.log"

    @property
    def params_path(self) -> Path:
        return self.trial_dir / "params.json"

    @property
    def result_path(self) -> Path:
        return self.trial_dir / "result.json"

    def stage(self, directory: str) -> TrialPaths:
        """The paths of a stage whose directory is ``directory`` under the trial directory
        (``""``: the trial directory itself)."""
        if not directory:
            return self
        return TrialPaths(self.experiment_dir, self.trial_dir / directory,
                          self.nni_experiment_dir)


def resolve_paths(
    exp_id: str,
    trial_id: str,
    *,
    exp_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TrialPaths:
    """Find the experiment and trial directories (docs/architecture.md).

    ``E`` is ``<exp_dir>/<exp_id>`` when ``exp_dir`` is given; else NNI's experiment directory
    (``NNI_OUTPUT_DIR`` = ``E/environments/<env>/trials/<trial_id>``, or ``NNI_LOG_DIRECTORY`` =
    ``E/log``); else ``./exp/<exp_id>``. The trial directory is ``NNI_OUTPUT_DIR`` when set, else
    ``E/trials/<trial_id>``.
    """
    env = os.environ if environ is None else environ
    output_dir = env.get("NNI_OUTPUT_DIR")
    nni_experiment: Path | None = None
    if output_dir and Path(output_dir).parent.name == "trials":
        nni_experiment = Path(output_dir).parents[3]
    elif env.get("NNI_LOG_DIRECTORY"):
        nni_experiment = Path(env["NNI_LOG_DIRECTORY"]).parent
    if exp_dir:
        experiment = Path(exp_dir) / exp_id
    elif nni_experiment is not None:
        experiment = nni_experiment
    else:
        experiment = Path("exp") / exp_id
    trial = Path(output_dir) if output_dir else experiment / "trials" / trial_id
    elsewhere = None
    if nni_experiment is not None and nni_experiment.absolute() != experiment.absolute():
        elsewhere = nni_experiment.absolute()
    return TrialPaths(experiment.absolute(), trial.absolute(), elsewhere)
