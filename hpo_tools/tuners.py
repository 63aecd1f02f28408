"""NNI's TPE tuner, safe from NNI 3.0's parameter mix-up between concurrent trials.

With ``trialConcurrency > 1``, NNI 3.0's local training service hands the queued parameters to
whichever trial asks first (microsoft/nni#5726, API-NOTES §0.1), but tells the dispatcher that
each trial ran the parameters it was *submitted* with. The dispatcher then calls
``tuner.trial_end(<another trial's parameter id>)`` when a trial ends. NNI's ``TpeTuner`` drops
that id from its running set, and the other trial's final result then raises ``KeyError`` inside
``receive_trial_result``: the dispatcher dies, no further trial is ever submitted and the
experiment hangs in RUNNING (seen in `make demo`: ``KeyError: 1`` in ``dispatcher.log``).

:class:`SafeTpeTuner` wraps ``TpeTuner`` by composition (public methods only):

* final results are forwarded once per parameter id the tuner generated (final results carry the
  parameter id the trial really received, so they are reliable);
* ``trial_end`` is **not** forwarded with the dispatcher's (possibly wrong) id. For a trial that
  ended without a final result (failed, or stopped by the assessor), the right id comes from the
  trial's own record (``params.json`` / ``result.json`` written by the trial runner in the
  experiment directory), and only that is forwarded.

Use it in an experiment config::

    tuner:
      codeDirectory: .              # required by NNI for a class name; hpo_tools is installed
      className: hpo_tools.tuners.SafeTpeTuner
      classArgs: {optimize_mode: maximize, seed: 7}   # TpeTuner's arguments
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from nni.tuner import Tuner

# Only the record reader: hpo_tools.experiment imports its modules lazily, so neither the
# experiment runner nor the best-trial export is loaded into NNI's dispatcher.
from hpo_tools.experiment.records import ExperimentFiles

__all__ = ["SafeTpeTuner", "ended_without_result"]

_logger = logging.getLogger(__name__)


def ended_without_result(experiment_dir: Path) -> dict[Any, str]:
    """Parameter ids of trials whose own record says they ended without a final result.

    The records are read by :func:`hpo_tools.experiment.records.read_trial_run`, the reader
    ``hpo-tools experiment`` uses, so a record that is not (yet) valid JSON or not a JSON object
    is skipped, never an exception in NNI's dispatcher.

    Args:
        experiment_dir: ``E``; trials are ``E/environments/*/trials/<id>/``.

    Returns:
        ``{parameter_id: trial_id}`` for trials with ``result.json`` status failed or cancelled.
    """
    ended: dict[Any, str] = {}
    for run in ExperimentFiles(Path(experiment_dir)).trial_runs():
        if run.status in ("failed", "cancelled") and not run.final and run.parameter_id is not None:
            ended[run.parameter_id] = run.trial_id
    return ended


class SafeTpeTuner(Tuner):
    """``nni.algorithms.hpo.tpe_tuner.TpeTuner`` that survives mis-paired ``trial_end`` calls.

    Args:
        experiment_dir: where the trials' own records are; default: NNI's experiment directory
            (the parent of ``NNI_LOG_DIRECTORY``, set in NNI's dispatcher).
        **tpe_args: ``TpeTuner``'s arguments (``optimize_mode``, ``seed``, ``tpe_args``).
    """

    def __init__(self, experiment_dir: str | os.PathLike[str] | None = None,
                 **tpe_args: Any) -> None:
        from nni.algorithms.hpo.tpe_tuner import TpeTuner

        self.tpe = TpeTuner(**tpe_args)
        if experiment_dir is None and os.environ.get("NNI_LOG_DIRECTORY"):
            experiment_dir = Path(os.environ["NNI_LOG_DIRECTORY"]).parent
        self.experiment_dir = Path(experiment_dir) if experiment_dir is not None else None
        self.open_ids: set[Any] = set()  # generated, no final result and no end seen yet

    def update_search_space(self, search_space: dict[str, Any]) -> None:
        self.tpe.update_search_space(search_space)

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> Any:
        params = self.tpe.generate_parameters(parameter_id, **kwargs)
        self.open_ids.add(parameter_id)
        return params

    def receive_trial_result(self, parameter_id: Any, parameters: Any, value: Any,
                             **kwargs: Any) -> None:
        if parameter_id not in self.open_ids:
            _logger.warning("final result for parameter id %s that is not open; ignored",
                            parameter_id)
            return
        self.open_ids.discard(parameter_id)
        self.tpe.receive_trial_result(parameter_id, parameters, value, **kwargs)

    def trial_end(self, parameter_id: Any, success: bool, **kwargs: Any) -> None:
        # `parameter_id` may be another trial's (nni#5726): never forwarded as such.
        if self.experiment_dir is None:
            return
        for real_id, trial_id in ended_without_result(self.experiment_dir).items():
            if real_id in self.open_ids:
                _logger.info("trial %s ended without a result (parameter id %s)",
                             trial_id, real_id)
                self.open_ids.discard(real_id)
                self.tpe.trial_end(real_id, False)

    def import_data(self, data: Any) -> None:
        self.tpe.import_data(data)
