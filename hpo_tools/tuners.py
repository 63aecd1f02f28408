"""NNI 3.0 tuners, guarded against NNI 3.0 bugs that kill its dispatcher.

* :class:`SafeTpeTuner`: TPE, safe from the parameter mix-up between concurrent trials.
* ``SafeHyperband`` and ``SafeBOHB``: NNI's Hyperband and BOHB advisors, safe from their
  string parameter ids (microsoft/nni#5263).
* ``SafeMetis`` and ``SafeGP``: NNI's Metis and GP tuners, working with SciPy >= 1.11.

The last four are built on first use (module ``__getattr__``), so that importing this module
loads none of NNI's algorithms (BOHB needs ``ConfigSpace`` and ``statsmodels``, the extra
``hpo-tools[tuners]``).

**TPE.** With ``trialConcurrency > 1``, NNI 3.0's local training service hands the queued
parameters to whichever trial asks first (microsoft/nni#5726, API-NOTES §0.1), but tells the
dispatcher that each trial ran the parameters it was *submitted* with. The dispatcher then calls
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

**Hyperband, BOHB.** Their parameter ids are strings (``"0-2_0_1"``: bracket, round, number),
and NNI 3.0's ``Recoverable.is_created_in_previous_exp`` compares them with an int
(``param_id <= self.recovered_max_param_id``, ``nni/recoverable.py``): ``TypeError`` on the first
metric or trial end, the dispatcher dies. The safe classes override only that method: a
parameter id that is not an int was never recorded by NNI's resume (``recover_parameter_id``
skips such ids), so it was not created in a previous experiment.

**Metis, GP.** NNI 3.0's Metis and GP pass a 2-D ``x0`` (``reshape(1, -1)``) to
``scipy.optimize.minimize`` (``metis_tuner/lib_acquisition_function.py``, ``gp_tuner/util.py``),
which SciPy >= 1.11 refuses (``ValueError: 'x0' must only have one dimension.``) once the cold
start is over: the dispatcher's command thread dies and the experiment hangs in RUNNING. GP also
indexes ``res.fun``, a float in SciPy >= 1.11. ``SafeMetis`` / ``SafeGP`` hand that module a
``minimize`` that behaves as the old one (:func:`minimize_flat_x0`; only the module's own name is
rebound, in the dispatcher process that runs the tuner).

Use them in an experiment config::

    tuner:
      codeDirectory: .              # required by NNI for a class name; hpo_tools is installed
      className: hpo_tools.tuners.SafeTpeTuner
      classArgs: {optimize_mode: maximize, seed: 7}   # TpeTuner's arguments

    tuner:                          # an advisor is configured as the tuner in NNI 3.0
      codeDirectory: .
      className: hpo_tools.tuners.SafeHyperband       # or SafeBOHB
      classArgs: {optimize_mode: maximize, R: 9, eta: 3}   # Hyperband's (BOHB's) arguments
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

# SafeHyperband, SafeBOHB, SafeMetis and SafeGP are not in __all__: a star import would build
# them, and BOHB needs the extra.
__all__ = ["SafeTpeTuner", "created_in_previous_exp", "ended_without_result",
           "minimize_flat_x0"]

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


_ADVISORS = {
    "SafeHyperband": ("nni.algorithms.hpo.hyperband_advisor", "Hyperband"),
    "SafeBOHB": ("nni.algorithms.hpo.bohb_advisor", "BOHB"),
}
"""The safe advisors this module builds on first use: name -> (NNI's module, NNI's class)."""


def created_in_previous_exp(advisor: Any, param_id: Any) -> bool:
    """``Recoverable.is_created_in_previous_exp`` that takes the advisors' string ids.

    Args:
        advisor: the advisor (a ``Recoverable``).
        param_id: an int from a resumed experiment, a Hyperband/BOHB string id, or None.

    Returns:
        Whether ``param_id`` belongs to a trial of the experiment being resumed; never for an id
        that is not an int (NNI's ``recover_parameter_id`` skips those).
    """
    if not isinstance(param_id, int) or isinstance(param_id, bool):
        return False
    return bool(param_id <= advisor.recovered_max_param_id)


def _safe_advisor(name: str) -> type:
    import importlib

    module, base_name = _ADVISORS[name]
    base = getattr(importlib.import_module(module), base_name)

    def is_created_in_previous_exp(self: Any, param_id: Any) -> bool:
        return created_in_previous_exp(self, param_id)

    doc = (f"NNI's ``{module}.{base_name}`` (same ``classArgs``) that survives its string "
           "parameter ids (microsoft/nni#5263): see the module docstring.")
    return type(name, (base,), {
        "__module__": __name__, "__qualname__": name, "__doc__": doc,
        "is_created_in_previous_exp": is_created_in_previous_exp,
    })


def minimize_flat_x0(fun: Any, x0: Any, *args: Any, **kwargs: Any) -> Any:
    """``scipy.optimize.minimize`` as SciPy < 1.11 behaved for NNI's Metis and GP tuners.

    ``x0`` is flattened (SciPy >= 1.11 refuses a 2-D one), and the result's ``fun`` has the
    shape the objective returns (SciPy >= 1.11 makes it a float; NNI's GP tuner indexes it).
    Positional arguments after ``x0`` are ``args``, as for ``minimize``.
    """
    import numpy as np
    from scipy.optimize import minimize

    x0 = np.ravel(x0)
    fun_args = args[0] if args else kwargs.get("args", ())
    shape = np.shape(fun(x0, *(fun_args if isinstance(fun_args, tuple) else (fun_args,))))
    result = minimize(fun, x0, *args, **kwargs)
    result.fun = np.reshape(result.fun, shape)
    return result


_FLAT_X0 = {
    "SafeMetis": ("nni.algorithms.hpo.metis_tuner", "MetisTuner",
                  "nni.algorithms.hpo.metis_tuner.lib_acquisition_function"),
    "SafeGP": ("nni.algorithms.hpo.gp_tuner", "GPTuner", "nni.algorithms.hpo.gp_tuner.util"),
}
"""Tuners whose ``minimize`` this module replaces: name -> (NNI's module, NNI's class, the
module whose ``minimize`` is rebound)."""


def _flat_x0_tuner(name: str) -> type:
    import importlib

    module, base_name, calls_minimize = _FLAT_X0[name]
    base = getattr(importlib.import_module(module), base_name)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        importlib.import_module(calls_minimize).minimize = minimize_flat_x0
        base.__init__(self, *args, **kwargs)

    return type(name, (base,), {
        "__module__": __name__, "__qualname__": name, "__init__": __init__,
        "__doc__": f"NNI's ``{module}.{base_name}`` (same ``classArgs``) working with SciPy "
                   ">= 1.11: see the module docstring.",
    })


def __getattr__(name: str) -> Any:
    """``SafeHyperband`` / ``SafeBOHB`` / ``SafeMetis`` / ``SafeGP``, built (and NNI's algorithm
    imported) on first use."""
    if name in _ADVISORS or name in _FLAT_X0:
        cls = _flat_x0_tuner(name) if name in _FLAT_X0 else _safe_advisor(name)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
