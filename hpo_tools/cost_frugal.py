"""Cost-frugal search: FLAML's CFO and BlendSearch as NNI tuners (extra ``flaml``).

CFO (Frugal Optimization for Cost-related Hyperparameters) is a randomized local search that
starts at a *low-cost* point and moves towards costlier regions only when that pays off;
BlendSearch adds a global search (Optuna's TPE) and blends the two. Both take the measured cost
of every trial. The natural low-cost, known-good point of an hpo-tools experiment is the user's
own training config, so the tuners here read it from ``base_config``::

    tuner:
      codeDirectory: /path/to/hpo-tools/core   # required by NNI for a class name
      className: hpo_tools.cost_frugal.CfoTuner          # or ...BlendSearchTuner
      classArgs:
        optimize_mode: maximize
        base_config: samples/pipeline.config   # relative to trialCodeDirectory, or absolute
        cost: seconds                          # or steps

How the tuners talk to FLAML (``flaml.tune.searcher.blendsearch``'s ``suggest`` /
``on_trial_complete``, imported only when a tuner is created):

* NNI's search space becomes FLAML domains (``choice``, ``randint``, ``uniform``, ``quniform``,
  ``loguniform``, ``qloguniform``, ``normal``, ``qnormal``); ``lognormal``, ``qlognormal`` and
  nested choices are a one-line :class:`~hpo_tools.errors.ConfigError`. List options of a choice
  (``[[8], [16, 8]]``) travel through FLAML as JSON text and come back as lists.
* The low-cost point: each searched key's current value in ``base_config`` (read with
  :mod:`hpo_tools.pbtxt`, the paths ``hpo-tools get`` takes), as FLAML's
  ``low_cost_partial_config``; a key that cannot be read there (a ``${name}`` placeholder, a
  path selecting nothing or several different values) or whose value is not in the search space
  is left out with a warning. An explicit ``low_cost_partial_config`` class argument wins over
  ``base_config`` key by key.
* The cost of a trial (``cost: seconds``, the default): the ``cost_seconds`` key of its final
  result when the trial reports one, else the tuner's own clock from the moment it generated the
  parameters to the final result (NNI asks for parameters when a trial is about to start, so
  this is the trial's wall time plus NNI's start-up). ``cost: steps``: the ``steps`` key of the
  final result, else the highest ``step`` in the trial's own ``result.json`` (its trial
  directory found from the ``trial_job_id`` NNI passes with the result). Anything unreadable
  costs 1.0, with a warning.
* Trial ends follow :class:`hpo_tools.tuners.SafeTpeTuner`: NNI's ``trial_end`` id may be
  another trial's (microsoft/nni#5726), so a trial that ended without a result is found from
  the trials' own records and only then reported to FLAML as an error.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from nni.tuner import Tuner

from hpo_tools.errors import ConfigError, HpoError, did_you_mean

__all__ = ["CfoTuner", "BlendSearchTuner", "COST_KINDS", "base_config_point", "flaml_space"]

_logger = logging.getLogger(__name__)

COST_KINDS = ("seconds", "steps")
"""What a trial's cost is measured in (the ``cost`` class argument)."""

SUPPORTED_TYPES = ("choice", "randint", "uniform", "quniform", "loguniform", "qloguniform",
                   "normal", "qnormal")

_METRIC = "score"
_COST = "cost"
_SUGGEST_TRIES = 50
"""FLAML's ``suggest`` returns None now and then (a point it already has); asked again, it moves
on. None this many times in a row means the search is over (e.g. a small discrete space)."""

_INSTALL_HINT = "pip install 'hpo-tools[flaml]'"


class _Unreadable(Exception):
    """A search-space key whose current value cannot be read from the base config."""


# -- the search space ------------------------------------------------------------------------


_LIST_TOKEN = "json:"


def _token(option: Any) -> Any:
    """A choice option as FLAML sees it: a list (``[32, 16]``) as its JSON text with a prefix,
    since FLAML hashes configs and draws categories with numpy (which refuses ragged lists)."""
    if isinstance(option, (list, tuple)):
        return _LIST_TOKEN + json.dumps(_plain(option), separators=(",", ":"))
    return option


def _untoken(value: Any) -> Any:
    """The option behind a :func:`_token`."""
    if isinstance(value, str) and value.startswith(_LIST_TOKEN):
        return json.loads(value[len(_LIST_TOKEN):])
    return value


def _plain(value: Any) -> Any:
    """FLAML's value as NNI sends it: numpy scalars as Python's, tuples as lists."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value


def flaml_space(space: Mapping[str, Any], *, source: str = "search space") -> dict[str, Any]:
    """NNI's search space as FLAML domains (``flaml.tune.choice`` etc.).

    Args:
        space: the search space NNI passes to ``update_search_space``.
        source: what to call it in errors.

    Returns:
        ``{key: domain}``.

    Raises:
        ConfigError: an invalid space, or a type FLAML cannot search (``lognormal``,
            ``qlognormal``, a nested choice).
    """
    from hpo_tools.search_space import validate_search_space

    validate_search_space(dict(space), source=source)
    tune = _flaml_tune()
    domains: dict[str, Any] = {}
    for key, spec in space.items():
        kind, args = spec["_type"], spec["_value"]
        if kind not in SUPPORTED_TYPES:
            raise ConfigError(
                f"{source}: parameter {key!r}: _type {kind} is not supported by CFO/BlendSearch;"
                f" expected one of {', '.join(SUPPORTED_TYPES)}"
            )
        if kind == "choice":
            if any(isinstance(option, dict) for option in args):
                raise ConfigError(
                    f"{source}: parameter {key!r}: nested choices (options with _name) are not"
                    " supported by CFO/BlendSearch; flatten them into separate keys"
                )
            domains[key] = tune.choice([_token(option) for option in args])
        elif kind == "randint":
            domains[key] = tune.randint(int(args[0]), int(args[1]))
        elif kind == "normal":
            domains[key] = tune.randn(*args)
        elif kind == "qnormal":
            domains[key] = tune.qrandn(*args)
        else:  # uniform, quniform, loguniform, qloguniform: same names and arguments
            domains[key] = getattr(tune, kind)(*args)
    return domains


def _flaml_tune() -> Any:
    """``flaml.tune``, imported quietly (it warns that ``flaml.automl`` is not installed)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from flaml import tune
    except ImportError as err:
        raise ConfigError(
            f"the CFO/BlendSearch tuners need FLAML ({err}): {_INSTALL_HINT}"
        ) from err
    return tune


# -- the low-cost point ----------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(option: Any, value: Any) -> bool:
    """Whether a search-space option is the config's current value."""
    if isinstance(option, (list, tuple)):
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        return len(option) == len(values) and all(map(_same, option, values))
    if isinstance(value, (list, tuple)):  # several keys ("a;b") against "1e-6;5e-6"
        if not isinstance(option, str):
            return False
        parts = option.split(";")
        return len(parts) == len(value) and all(map(_same, parts, value))
    if isinstance(option, bool) or isinstance(value, bool):
        return str(option).lower() == str(value).lower()
    if isinstance(option, str) and _is_number(value):
        try:
            option = float(option)
        except ValueError:
            return False
    if _is_number(option) and _is_number(value):
        return math.isclose(float(option), float(value), rel_tol=1e-9, abs_tol=1e-15)
    return str(option) == str(value)


def _fit(value: Any, spec: Mapping[str, Any]) -> Any:
    """``value`` as a point of the dimension ``spec`` (FLAML's form), or raise ValueError."""
    kind, args = spec["_type"], spec["_value"]
    if kind == "choice":
        for option in args:
            if _same(option, value):
                return option
        raise ValueError(f"{_shown(value)} is not one of its choices {json.dumps(args)}")
    if not _is_number(value):
        raise ValueError(f"{_shown(value)} is not a number")
    if kind in ("normal", "qnormal"):
        return value
    low, high = args[0], args[1]
    if kind == "randint":
        if float(value) != int(value) or not low <= value < high:
            raise ValueError(f"{_shown(value)} is not an integer in [{low}, {high})")
        return int(value)
    if not low <= value <= high:
        raise ValueError(f"{_shown(value)} is outside [{low}, {high}]")
    return float(value)


def _shown(value: Any) -> str:
    return json.dumps(_plain(value)) if not isinstance(value, str) else repr(value)


def _current_value(document: Any, key: str) -> Any:
    """The value ``key`` selects in the config; raises :class:`_Unreadable`."""
    from hpo_tools.pbtxt import Message

    if key.startswith("${"):
        raise _Unreadable("a placeholder, not a config path")
    if ";" in key:
        return tuple(_current_value(document, part.strip()) for part in key.split(";"))
    try:
        values = document.get(key, strict=True)
    except HpoError as err:
        raise _Unreadable(str(err)) from err
    if not values:
        raise _Unreadable("it selects nothing")
    if any(isinstance(v, Message) for v in values):
        raise _Unreadable("it selects a message, not a value")
    if all(_same(values[0], v) for v in values[1:]):
        return values[0] if len(values) == 1 else values
    return values  # a repeated field's elements (or values that a list choice must match)


def base_config_point(config_path: str, space: Mapping[str, Any],
                      *, text: str | None = None) -> dict[str, Any]:
    """Each searched key's current value in a training config, as a point of ``space``.

    A key is left out, with a warning naming it and why, when the config cannot give a value
    for it (a ``${name}`` placeholder key, a path selecting nothing, a message or several
    different values) or when that value is not in the search space.

    Args:
        config_path: the config (local, ``oss://`` or ``hdfs://``), read unless ``text`` is given.
        space: NNI's search space.
        text: the config's text, when already read.

    Returns:
        ``{key: value}``, each value as the search space writes it (the choice's option).

    Raises:
        ConfigError: the config cannot be read or parsed (``StorageError`` for a remote path).
    """
    from hpo_tools import storage
    from hpo_tools.pbtxt import Document

    if text is None:
        text = storage.read_text(config_path)
    document = Document.parse(text, source=config_path)
    point: dict[str, Any] = {}
    for key, spec in space.items():
        try:
            value = _current_value(document, key)
        except _Unreadable as why:
            _logger.warning("base_config %s: %s left out of the low-cost point: %s",
                            config_path, key, why)
            continue
        # Several selected values match a list option as a whole, or all equal one value.
        candidates = [value]
        if isinstance(value, list):
            candidates.append(value[0] if all(_same(value[0], v) for v in value) else None)
        for candidate in candidates:
            if candidate is None:
                continue
            try:
                point[key] = _fit(candidate, spec)
                break
            except ValueError as why:
                reason = str(why)
        else:
            _logger.warning("base_config %s: %s left out of the low-cost point: its value %s",
                            config_path, key, reason)
    return point


def _trial_code_directory() -> Path | None:
    """``trialCodeDirectory`` of the experiment whose dispatcher runs this tuner.

    NNI starts its dispatcher as ``python -m nni --exp_params <base64 JSON of the experiment
    config>`` with ``E/log`` as the working directory; the config holds the absolute
    ``trialCodeDirectory``.
    """
    argv = sys.argv
    for index, arg in enumerate(argv):
        encoded = None
        if arg == "--exp_params" and index + 1 < len(argv):
            encoded = argv[index + 1]
        elif arg.startswith("--exp_params="):
            encoded = arg.split("=", 1)[1]
        if encoded is None:
            continue
        try:
            params = json.loads(base64.b64decode(encoded).decode("utf-8"))
        except ValueError:
            return None
        code_dir = params.get("trialCodeDirectory") if isinstance(params, dict) else None
        return Path(code_dir) if isinstance(code_dir, str) and code_dir else None
    return None


# -- the tuners ------------------------------------------------------------------------------


class _FlamlTuner(Tuner):
    """What CFO and BlendSearch share: an NNI tuner around a FLAML searcher.

    Args:
        optimize_mode: ``maximize`` (default) or ``minimize`` the trials' ``default`` metric.
        base_config: the training config whose values are the low-cost starting point;
            relative paths are under the experiment's ``trialCodeDirectory`` (else the working
            directory); ``oss://`` and ``hdfs://`` paths are read as the trial runner reads them.
        low_cost_partial_config: ``{key: value}``, FLAML's own argument; wins over
            ``base_config`` for the keys it names.
        cost: ``seconds`` (default) or ``steps``: what a trial's cost is (module docstring).
        seed: FLAML's random seed (FLAML's default: 20).
        experiment_dir: where the trials' own records are; default: NNI's experiment directory
            (the parent of ``NNI_LOG_DIRECTORY``, set in NNI's dispatcher).
        code_dir: the directory ``base_config`` is relative to; default: ``trialCodeDirectory``.
    """

    algorithm: ClassVar[str] = ""

    def __init__(
        self,
        optimize_mode: str = "maximize",
        base_config: str | None = None,
        low_cost_partial_config: Mapping[str, Any] | None = None,
        cost: str = "seconds",
        seed: int | None = None,
        experiment_dir: str | os.PathLike[str] | None = None,
        code_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        where = f"{self.algorithm} tuner classArgs"
        if optimize_mode not in ("maximize", "minimize"):
            hint = did_you_mean(str(optimize_mode), ("maximize", "minimize"))
            raise ConfigError(
                f"{where}: optimize_mode {optimize_mode!r}{hint}; expected maximize or minimize")
        if cost not in COST_KINDS:
            raise ConfigError(f"{where}: cost {cost!r}{did_you_mean(str(cost), COST_KINDS)};"
                              f" expected one of {', '.join(COST_KINDS)}")
        if low_cost_partial_config is not None and not isinstance(low_cost_partial_config,
                                                                  Mapping):
            raise ConfigError(f"{where}: low_cost_partial_config must be a mapping of"
                              f" search-space keys to values, got {low_cost_partial_config!r}")
        self.optimize_mode = optimize_mode
        self.cost = cost
        self.seed = seed
        self.base_config = self._resolve(base_config, code_dir) if base_config else None
        self.explicit_point = dict(low_cost_partial_config or {})
        if experiment_dir is None and os.environ.get("NNI_LOG_DIRECTORY"):
            experiment_dir = Path(os.environ["NNI_LOG_DIRECTORY"]).parent
        self.experiment_dir = Path(experiment_dir) if experiment_dir is not None else None
        self._searcher_class = self._load_searcher_class()
        self.searcher: Any = None
        self._keys: dict[str, str] = {}  # FLAML alias (p0, p1, ...) -> search-space key
        self.low_cost_point: dict[str, Any] = {}
        self._configs: dict[Any, dict[str, Any]] = {}  # open parameter id -> FLAML's config
        self._started: dict[Any, float] = {}  # open parameter id -> monotonic time generated
        self._flaml_ids: dict[Any, str] = {}  # open parameter id -> FLAML's trial id

    @staticmethod
    def _resolve(path: str, code_dir: str | os.PathLike[str] | None) -> str:
        from hpo_tools import storage

        if storage.is_remote(path) or os.path.isabs(path):
            return path
        base = Path(code_dir) if code_dir is not None else _trial_code_directory()
        return str((base or Path.cwd()) / path)

    def _load_searcher_class(self) -> Any:
        raise NotImplementedError

    # -- NNI's tuner interface --------------------------------------------------------------

    def update_search_space(self, search_space: dict[str, Any]) -> None:
        """Build the FLAML searcher for this space (a new space starts a new search).

        FLAML sees each key under a plain alias (``p0``, ``p1``, ...): it reads characters of
        config paths (``feature_configs[:].embedding_dim``) as its own hierarchy markers."""
        self._keys = {f"p{index}": key for index, key in enumerate(search_space)}
        alias = {key: name for name, key in self._keys.items()}
        domains = {alias[key]: domain for key, domain in flaml_space(search_space).items()}
        point = base_config_point(self.base_config, search_space) if self.base_config else {}
        for key, value in self.explicit_point.items():
            if key not in search_space:
                raise ConfigError(
                    f"{self.algorithm} tuner classArgs: low_cost_partial_config key {key!r} is"
                    f" not in the search space{did_you_mean(str(key), search_space)}")
            try:
                point[key] = _fit(value, search_space[key])
            except ValueError as why:
                raise ConfigError(f"{self.algorithm} tuner classArgs: low_cost_partial_config"
                                  f" {key!r}: {why}") from None
        self.low_cost_point = point
        _logger.info("%s: low-cost starting point %s (%d of %d keys)", self.algorithm,
                     json.dumps(point, sort_keys=True), len(point), len(search_space))
        kwargs: dict[str, Any] = {}
        if self.seed is not None:
            kwargs["seed"] = self.seed
        self.searcher = self._searcher_class(
            metric=_METRIC,
            mode="max" if self.optimize_mode == "maximize" else "min",
            space=domains,
            low_cost_partial_config={alias[k]: _token(v) for k, v in point.items()} or None,
            cost_attr=_COST,
            **kwargs,
        )
        self._configs.clear()
        self._started.clear()
        self._flaml_ids.clear()

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> dict[str, Any]:
        """FLAML's next point; ``nni.NoMoreTrialError`` when it has none left."""
        from nni import NoMoreTrialError

        if self.searcher is None:
            raise RuntimeError(f"{self.algorithm}: parameters asked before any search space")
        for attempt in range(_SUGGEST_TRIES):
            # A fresh FLAML trial id each time: FLAML may have completed the last one itself
            # (a point it has a result for).
            flaml_id = str(parameter_id) if attempt == 0 else f"{parameter_id}.{attempt}"
            config = self.searcher.suggest(flaml_id)
            if config is not None:
                break
        else:
            _logger.info("%s has no new point to try: no more trials", self.algorithm)
            raise NoMoreTrialError(f"{self.algorithm} has no new point to try")
        self._flaml_ids[parameter_id] = flaml_id
        self._configs[parameter_id] = dict(config)
        self._started[parameter_id] = time.monotonic()
        return {self._keys[name]: self._exact(self._keys[name], _untoken(_plain(value)))
                for name, value in config.items()}

    def _exact(self, key: str, value: Any) -> Any:
        """The low-cost point's own value for a value FLAML rounded on its way through a log
        scale (``0.003`` comes back as ``0.0030000000000000005``), so that the base config's
        trial runs the base config's values."""
        start = self.low_cost_point.get(key)
        if (_is_number(start) and _is_number(value) and value != start
                and math.isclose(value, start, rel_tol=1e-12)):
            return start
        return value

    def receive_trial_result(self, parameter_id: Any, parameters: Any, value: Any,
                             **kwargs: Any) -> None:
        """Give FLAML the trial's score and cost."""
        from nni.utils import extract_scalar_reward

        config = self._configs.pop(parameter_id, None)
        started = self._started.pop(parameter_id, None)
        if config is None:
            _logger.warning("final result for parameter id %s that is not open; ignored",
                            parameter_id)
            return
        score = float(extract_scalar_reward(value))
        trial_id = kwargs.get("trial_job_id")
        cost = self.trial_cost(value, trial_id, started)
        _logger.info("trial %s (parameter id %s): score %.6g, cost %.6g %s", trial_id,
                     parameter_id, score, cost, self.cost)
        self.searcher.on_trial_complete(
            self._flaml_ids.pop(parameter_id), {_METRIC: score, _COST: cost, "config": config})

    def trial_end(self, parameter_id: Any, success: bool, **kwargs: Any) -> None:
        # `parameter_id` may be another trial's (nni#5726): the records say which ended.
        if self.experiment_dir is None or not self._configs:
            return
        from hpo_tools.experiment.records import ExperimentFiles

        for run in ExperimentFiles(self.experiment_dir).trial_runs():
            if (run.status in ("failed", "cancelled") and not run.final
                    and run.parameter_id in self._configs):
                _logger.info("trial %s ended without a result (parameter id %s)",
                             run.trial_id, run.parameter_id)
                self._configs.pop(run.parameter_id)
                self._started.pop(run.parameter_id, None)
                self.searcher.on_trial_complete(self._flaml_ids.pop(run.parameter_id), None,
                                                error=True)

    # -- cost -------------------------------------------------------------------------------

    def trial_cost(self, value: Any, trial_id: str | None, started: float | None) -> float:
        """A finished trial's cost in ``self.cost`` units (module docstring: the order)."""
        key = "cost_seconds" if self.cost == "seconds" else "steps"
        if isinstance(value, Mapping) and _positive(value.get(key)):
            return float(value[key])
        if self.cost == "seconds":
            if started is not None:
                return max(time.monotonic() - started, 1e-3)
        else:
            steps = self._recorded_steps(trial_id)
            if steps is not None:
                return steps
        _logger.warning("trial %s: no %s measured; its cost counts as 1.0", trial_id, self.cost)
        return 1.0

    def _recorded_steps(self, trial_id: str | None) -> float | None:
        """The highest ``step`` in the trial's own ``result.json``, or None."""
        if self.experiment_dir is None or not trial_id:
            return None
        from hpo_tools.experiment.records import read_trial_run

        for pattern in (f"environments/*/trials/{trial_id}", f"trials/{trial_id}"):
            for trial_dir in self.experiment_dir.glob(pattern):
                run = read_trial_run(trial_dir)
                reports: Sequence[Any] = [*run.intermediate, run.final or {}]
                steps = [r.get("step") for r in reports if _positive(r.get("step"))]
                if steps:
                    return float(max(steps))
        return None

    def import_data(self, data: Any) -> None:
        _logger.warning("%s ignores imported data (%d points)", self.algorithm, len(data or []))


def _positive(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


class CfoTuner(_FlamlTuner):
    """FLAML's CFO (local search from the low-cost point) as an NNI tuner.

    Needs only ``flaml``. Arguments: see the module docstring and ``_FlamlTuner``.

    Example:
        >>> tuner = CfoTuner(optimize_mode="minimize", low_cost_partial_config={"x": 1})
        >>> tuner.update_search_space({"x": {"_type": "uniform", "_value": [0, 10]}})
        >>> tuner.generate_parameters(0)
        {'x': 1.0}
    """

    algorithm = "CFO"

    def _load_searcher_class(self) -> Any:
        _flaml_tune()
        from flaml.tune.searcher.blendsearch import CFO

        return CFO


class BlendSearchTuner(_FlamlTuner):
    """FLAML's BlendSearch (CFO's local search blended with Optuna's TPE) as an NNI tuner.

    Needs ``flaml`` and ``optuna`` (``pip install 'hpo-tools[flaml]'``). Arguments: as
    :class:`CfoTuner`.
    """

    algorithm = "BlendSearch"

    def _load_searcher_class(self) -> Any:
        _flaml_tune()
        try:
            import optuna  # noqa: F401  (FLAML asserts it is there only when searching)
        except ImportError as err:
            raise ConfigError(
                f"the BlendSearch tuner needs optuna ({err}): {_INSTALL_HINT}") from err
        from flaml.tune.searcher.blendsearch import BlendSearch

        return BlendSearch
